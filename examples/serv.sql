-- An example volunteer database in the shape of SunnyvaleSERV: people,
-- organisations and their leaders, roles, events with tasks, and classes.
-- The [[dynamic]] entries of lists.toml read it; build the database with
--   sqlite3 examples/serv.sqlite3 < examples/serv.sql
-- or, without the sqlite3 program,
--   python3 -c "import sqlite3; sqlite3.connect('examples/serv.sqlite3').executescript(open('examples/serv.sql').read())"

PRAGMA foreign_keys = ON;

BEGIN;

CREATE TABLE orgs (
    id   INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    full_name TEXT NOT NULL
);

-- A person without an email address still has roles and signups; the
-- lists skip them.  Credentials are NULL (or 0) when missing:
--   cardkey      number of the building access card
--   photo_id     1 when a photo ID badge has been issued
--   volreg       1 when registered as a city volunteer
--   bgcheck_doj  date the California DOJ background check cleared
--   bgcheck_fbi  date the FBI background check cleared
--   dsw_cert     date of Disaster Service Worker registration for CERT
--   dsw_comm     date of Disaster Service Worker registration for Communications
CREATE TABLE people (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL,
    email       TEXT,
    cardkey     TEXT,
    photo_id    INTEGER NOT NULL DEFAULT 0 CHECK (photo_id IN (0, 1)),
    volreg      INTEGER NOT NULL DEFAULT 0 CHECK (volreg IN (0, 1)),
    bgcheck_doj TEXT,
    bgcheck_fbi TEXT,
    dsw_cert    TEXT,
    dsw_comm    TEXT
);

CREATE TABLE org_leaders (
    org    INTEGER NOT NULL REFERENCES orgs (id),
    person INTEGER NOT NULL REFERENCES people (id),
    PRIMARY KEY (org, person)
);

CREATE TABLE roles (
    id   INTEGER PRIMARY KEY,
    org  INTEGER NOT NULL REFERENCES orgs (id),
    name TEXT NOT NULL
);

CREATE TABLE person_role (
    person INTEGER NOT NULL REFERENCES people (id),
    role   INTEGER NOT NULL REFERENCES roles (id),
    PRIMARY KEY (person, role)
);

CREATE TABLE events (
    id   INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    date TEXT NOT NULL
);

CREATE TABLE tasks (
    id    INTEGER PRIMARY KEY,
    event INTEGER NOT NULL REFERENCES events (id),
    org   INTEGER NOT NULL REFERENCES orgs (id),
    name  TEXT NOT NULL
);

-- One row per step a person has reached on a task: invited (asked to
-- help), signedup (said yes), signedin (showed up on the day).  A walk-in
-- signs up and signs in without an invitation.
CREATE TABLE task_people (
    task   INTEGER NOT NULL REFERENCES tasks (id),
    person INTEGER NOT NULL REFERENCES people (id),
    step   TEXT NOT NULL CHECK (step IN ('invited', 'signedup', 'signedin')),
    PRIMARY KEY (task, person, step)
);

CREATE TABLE classes (
    id     INTEGER PRIMARY KEY,
    org    INTEGER NOT NULL REFERENCES orgs (id),
    name   TEXT NOT NULL,
    starts TEXT NOT NULL,
    seats  INTEGER NOT NULL
);

CREATE TABLE class_people (
    class  INTEGER NOT NULL REFERENCES classes (id),
    person INTEGER NOT NULL REFERENCES people (id),
    status TEXT NOT NULL CHECK (status IN ('registered', 'waitlist')),
    PRIMARY KEY (class, person)
);

INSERT INTO orgs (id, name, full_name) VALUES
    (1, 'CERT', 'Community Emergency Response Team'),
    (2, 'SARES', 'Sunnyvale Amateur Radio Emergency Communications Service'),
    (3, 'Listos', 'Listos California preparedness classes'),
    (4, 'SNAP', 'Sunnyvale Neighborhoods Actively Prepare');

INSERT INTO people
    (id, name, email, cardkey, photo_id, volreg, bgcheck_doj, bgcheck_fbi, dsw_cert, dsw_comm)
VALUES
    (1,  'Alice Nguyen',        'alice.nguyen@example.com',      'C1001', 1, 1, '2019-03-02', '2019-03-20', '2019-04-01', NULL),
    (2,  'Bob Martinez',        'bob@Example.NET',               'C1002', 1, 1, '2020-01-10', '2020-01-28', '2020-02-01', '2021-05-05'),
    (3,  'Carol Singh',         'carol.singh@sares.example.org', NULL,    1, 1, '2018-06-01', '2018-06-15', NULL,         '2018-07-01'),
    (4,  'Dmitri Petrov',       'dpetrov@example.com',           'C1004', 0, 1, '2021-09-09', NULL,         '2021-10-01', NULL),
    (5,  'Elena Garcia',        'elena@Listos.Example.org',      NULL,    1, 1, '2022-02-02', '2022-02-20', NULL,         NULL),
    (6,  'Farid Haddad',        'farid.haddad@example.com',      'C1006', 1, 1, '2020-05-05', '2020-05-19', '2020-06-01', NULL),
    (7,  'Grace Kim',           'grace.kim@example.net',         NULL,    0, 0, NULL,         NULL,         NULL,         NULL),
    (8,  'Hiro Tanaka',         'hiro@example.com',              'C1008', 1, 1, '2019-11-11', '2019-11-30', '2019-12-01', '2020-01-15'),
    (9,  'Isabel Rossi',        'isabel.rossi@EXAMPLE.com',      NULL,    1, 0, '2023-01-05', '2023-01-22', NULL,         NULL),
    (10, 'Jamal Brooks',        'jamal@example.org',             'C1010', 0, 1, NULL,         NULL,         '2022-08-08', NULL),
    (11, 'Kateryna Shevchenko', 'Kateryna.S@example.net',        NULL,    1, 1, '2021-04-04', '2021-04-18', NULL,         '2021-05-01'),
    (12, 'Liam O''Connor',      'liam.oconnor@example.com',      'C1012', 1, 1, '2018-02-02', '2018-02-16', '2018-03-01', NULL),
    (13, 'Maria Lopez',         'maria.lopez@example.org',       NULL,    0, 1, NULL,         NULL,         NULL,         NULL),
    (14, 'Nadia Rahman',        'nadia@Example.Org',             NULL,    1, 1, '2020-10-10', NULL,         '2020-11-01', NULL),
    (15, 'Oscar Fernandes',     'oscar.f@example.com',           NULL,    0, 0, NULL,         '2022-03-03', NULL,         NULL),
    (16, 'Priya Patel',         'priya.patel@example.com',       'C1016', 1, 1, '2019-07-07', '2019-07-21', '2019-08-01', '2019-09-01'),
    (17, 'Quentin Moreau',      NULL,                            'C1017', 1, 1, '2020-08-08', '2020-08-22', '2020-09-01', NULL),
    (18, 'Rosa Alvarez',        'rosa.alvarez@example.net',      NULL,    0, 1, NULL,         NULL,         NULL,         NULL),
    (19, 'Sam Okafor',          'sam.okafor@example.com',        NULL,    1, 1, '2023-05-05', '2023-05-19', NULL,         '2023-06-01'),
    (20, 'Tina Wu',             'tina.wu@example.org',           'C1020', 1, 1, '2021-12-12', '2021-12-30', '2022-01-10', NULL),
    (21, 'Umar Siddiqui',       'umar@example.com',              NULL,    0, 0, NULL,         NULL,         NULL,         NULL),
    (22, 'Vera Johansson',      'vera.j@example.net',            NULL,    0, 0, NULL,         NULL,         NULL,         NULL);

INSERT INTO org_leaders (org, person) VALUES
    (1, 1), (1, 2),      -- CERT: Alice, Bob
    (2, 3),              -- SARES: Carol
    (3, 5),              -- Listos: Elena
    (4, 4), (4, 16);     -- SNAP: Dmitri, Priya

INSERT INTO roles (id, org, name) VALUES
    (1, 1, 'CERT Deployment Team'),
    (2, 1, 'CERT Team Lead'),
    (3, 2, 'SARES Member'),
    (4, 2, 'SARES Net Control'),
    (5, 3, 'Listos Instructor'),
    (6, 4, 'SNAP Neighborhood Coordinator');

INSERT INTO person_role (person, role) VALUES
    (2, 1), (6, 1), (7, 1), (8, 1), (10, 1), (12, 1), (14, 1), (15, 1), (16, 1), (17, 1), (20, 1),
    (12, 2), (16, 2),
    (2, 3), (3, 3), (8, 3), (11, 3), (16, 3), (19, 3),
    (8, 4), (19, 4),
    (5, 5), (9, 5), (13, 5),
    (13, 6), (18, 6);

INSERT INTO events (id, name, date) VALUES
    (1, 'Emergency Preparedness Fair', '2025-10-04'),
    (2, 'CERT and SARES Disaster Drill', '2025-11-15'),
    (3, 'ARRL Field Day', '2025-06-28');

INSERT INTO tasks (id, event, org, name) VALUES
    (1, 1, 3, 'Listos information booth'),
    (2, 1, 4, 'SNAP neighbourhood table'),
    (3, 1, 2, 'Radio demonstration'),
    (4, 2, 1, 'Search and rescue'),
    (5, 2, 2, 'Drill communications'),
    (6, 3, 2, 'Field Day operating');

INSERT INTO task_people (task, person, step) VALUES
    (1, 9, 'invited'), (1, 9, 'signedup'), (1, 9, 'signedin'),
    (1, 13, 'invited'), (1, 13, 'signedup'),
    (1, 5, 'invited'),
    (1, 21, 'signedup'), (1, 21, 'signedin'),
    (2, 13, 'invited'), (2, 13, 'signedup'), (2, 13, 'signedin'),
    (2, 18, 'invited'), (2, 18, 'signedup'), (2, 18, 'signedin'),
    (2, 4, 'invited'),
    (3, 3, 'invited'), (3, 3, 'signedup'), (3, 3, 'signedin'),
    (3, 19, 'invited'), (3, 19, 'signedup'),
    (3, 11, 'invited'),
    (4, 6, 'invited'), (4, 6, 'signedup'), (4, 6, 'signedin'),
    (4, 7, 'invited'), (4, 7, 'signedup'), (4, 7, 'signedin'),
    (4, 10, 'invited'), (4, 10, 'signedup'),
    (4, 12, 'invited'), (4, 12, 'signedup'), (4, 12, 'signedin'),
    (4, 14, 'invited'),
    (4, 17, 'invited'), (4, 17, 'signedup'), (4, 17, 'signedin'),
    (4, 20, 'invited'), (4, 20, 'signedup'), (4, 20, 'signedin'),
    (5, 2, 'invited'), (5, 2, 'signedup'),
    (5, 8, 'invited'), (5, 8, 'signedup'), (5, 8, 'signedin'),
    (5, 19, 'invited'), (5, 19, 'signedup'), (5, 19, 'signedin'),
    (6, 3, 'invited'), (6, 3, 'signedup'), (6, 3, 'signedin'),
    (6, 8, 'invited'), (6, 8, 'signedup'), (6, 8, 'signedin'),
    (6, 11, 'invited'), (6, 11, 'signedup'), (6, 11, 'signedin'),
    (6, 16, 'invited');

INSERT INTO classes (id, org, name, starts, seats) VALUES
    (1, 1, 'CERT Basic Training', '2025-09-09', 3),
    (2, 2, 'Introduction to Emergency Radio', '2025-10-21', 1),
    (3, 3, 'Listos: Prepare Your Home', '2025-08-16', 20);

INSERT INTO class_people (class, person, status) VALUES
    (1, 7, 'registered'), (1, 15, 'registered'), (1, 21, 'registered'),
    (1, 22, 'waitlist'), (1, 13, 'waitlist'),
    (2, 11, 'registered'), (2, 21, 'waitlist'),
    (3, 22, 'registered'), (3, 21, 'registered'), (3, 17, 'registered');

COMMIT;
