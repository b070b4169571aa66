"""Dynamic lists end to end: examples/lists.toml and example database, inject, run, outbox."""

from __future__ import annotations

import re
import sqlite3
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from routemail import sidecar
from routemail.cli import cli
from tests.conftest import ROOT, Project, example_site
from tests.mailbox import moderation_requests, outbox, recipients

DOMAIN = "lists.example.org"
PASSING = "dkim=PASS dmarc=PASS spf=PASS spam=PASS virus=PASS"

# What each +/- criterion means, in the words of examples/serv.sql's comments on people.
Row = dict[str, Any]
CRITERIA: dict[str, Callable[[Row], bool]] = {
    "cardkey": lambda p: bool(p["cardkey"]),
    "bgcheck": lambda p: p["bgcheck_doj"] is not None and p["bgcheck_fbi"] is not None,
    "dswcert": lambda p: p["dsw_cert"] is not None,
    "dswcomm": lambda p: p["dsw_comm"] is not None,
    "photoid": lambda p: p["photo_id"] == 1,
    "volreg": lambda p: p["volreg"] == 1,
}


@pytest.fixture
def example(tmp_path: Path) -> Project:
    """A project running examples/lists.toml, its example database built from
    examples/serv.sql beside it, and a fast outbox."""
    text = (ROOT / "examples" / "lists.toml").read_text()
    # The outbox is paced like a real transport; at the shipped 14/s the larger lists
    # would only make the tests slow.
    fast, n = re.subn(r"(?m)^rate = 14\b", "rate = 1000", text)
    assert n == 1, "examples/lists.toml no longer sets [delivery] rate = 14"
    project = Project(tmp_path)
    example_site(tmp_path, fast)
    return project


@pytest.fixture
def db(example: Project) -> Iterator[sqlite3.Connection]:
    """The example database, read directly to work out who should get mail."""
    with closing(sqlite3.connect(example.root / "serv.sqlite3")) as conn:
        conn.row_factory = sqlite3.Row
        yield conn


def address(stored: str) -> str:
    """As routemail compares addresses: local part as written, domain lower-cased."""
    local, _, domain = stored.rpartition("@")
    return f"{local}@{domain.lower()}"


def emails(rows: Any) -> set[str]:
    """The addresses in the first column, skipping people without one."""
    return {address(r[0]) for r in rows if r[0]}


def leaders(db: sqlite3.Connection, orgs: set[int]) -> set[str]:
    found: set[str] = set()
    for org in orgs:
        found |= emails(
            db.execute(
                "SELECT email FROM people WHERE id IN (SELECT person FROM org_leaders"
                " WHERE org = ?)",
                (org,),
            )
        )
    return found


def task_list(db: sqlite3.Connection, kind: str, n: int, step: str) -> tuple[set[str], set[int]]:
    """People at this step of the task (or of any task of the event), and the orgs involved."""
    tasks = [
        (r["id"], r["org"])
        for r in db.execute("SELECT id, event, org FROM tasks")
        if (r["id"] if kind == "task" else r["event"]) == n
    ]
    people: set[str] = set()
    for task, _ in tasks:
        people |= emails(
            db.execute(
                "SELECT email FROM people WHERE id IN (SELECT person FROM task_people"
                " WHERE task = ? AND step = ?)",
                (task, step),
            )
        )
    return people, {org for _, org in tasks}


def class_list(db: sqlite3.Connection, n: int, status: str) -> tuple[set[str], set[int]]:
    people = emails(
        db.execute(
            "SELECT email FROM people WHERE id IN (SELECT person FROM class_people"
            " WHERE class = ? AND status = ?)",
            (n, status),
        )
    )
    return people, {r[0] for r in db.execute("SELECT org FROM classes WHERE id = ?", (n,))}


def role_list(db: sqlite3.Connection, role: int, filters: str) -> tuple[set[str], set[int]]:
    """Holders of the role who have every +criterion and lack every -criterion."""
    holders = [
        dict(r)
        for r in db.execute(
            "SELECT * FROM people WHERE id IN (SELECT person FROM person_role WHERE role = ?)",
            (role,),
        )
    ]
    for sign, name in re.findall(r"([-+])([A-Za-z]+)", filters):
        has = CRITERIA[name.lower()]
        holders = [p for p in holders if has(p) == (sign == "+")]
    people = {address(p["email"]) for p in holders if p["email"]}
    return people, {r[0] for r in db.execute("SELECT org FROM roles WHERE id = ?", (role,))}


def expected(db: sqlite3.Connection, listname: str) -> tuple[set[str], set[str]]:
    """(members, leaders of the organisations involved) for a list name, from the data."""
    if m := re.fullmatch(r"(event|task)-(\d+)-(invited|signedup|signedin)", listname):
        people, orgs = task_list(db, m[1], int(m[2]), m[3])
    elif m := re.fullmatch(r"class-(\d+)-(registered|waitlist)", listname):
        people, orgs = class_list(db, int(m[1]), m[2])
    elif m := re.fullmatch(r"role-(\d+)((?:[-+][A-Za-z]+)*)", listname):
        people, orgs = role_list(db, int(m[1]), m[2])
    else:
        raise AssertionError(f"not an example family: {listname}")
    return people, leaders(db, orgs)


def routemail(project: Project, *args: str) -> Result:
    """Run the routemail CLI in-process against the project."""
    result = CliRunner().invoke(
        cli,
        ["--config", str(project.config_path), "--data", str(project.data_dir), *args],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    return result


def inject(project: Project, sender: str, subject: str, *lists: str) -> str:
    """Queue a post from sender to the lists, every SES verdict PASS; its queue id."""
    to = [f"{name}@{DOMAIN}" for name in lists]
    path = project.root / f"{len(list(project.root.glob('*.eml')))}.eml"
    path.write_bytes(
        (
            f"From: {sender}\nTo: {', '.join(to)}\nSubject: {subject}\n"
            f"Message-ID: <{subject.replace(' ', '.')}@example.org>\n\n"
            "Please read the attached briefing before Saturday.\n"
        ).encode()
    )
    args = [a for addr in to for a in ("--to", addr)]
    command = ("inject", "--no-run", str(path), *args, "--verdicts", PASSING)  # runs come later
    return routemail(project, *command).stdout.strip()


def once(addresses: set[str]) -> Counter[str]:
    return Counter(dict.fromkeys(addresses, 1))


LISTS = [
    "task-4-signedin",
    "task-1-invited",
    "task-6-signedup",
    "event-1-invited",
    "event-2-signedup",
    "event-3-signedin",
    "class-1-registered",
    "class-1-waitlist",
    "class-2-waitlist",
    "class-3-registered",
    "role-1",
    "role-1+dswCERT",
    "role-1-cardkey",
    "role-1+photoID+volreg-bgcheck",
    "role-3+bgcheck-dswCERT",
    "role-3+dswComm-cardkey",
    "role-5-volreg",
]


@pytest.mark.parametrize("listname", LISTS)
def test_leader_post_reaches_list_and_leaders_once(
    example: Project, db: sqlite3.Connection, listname: str
) -> None:
    """A post from a leader of the organisation involved reaches every person on the
    dynamic list with an address, and every leader as bcc, exactly one copy each."""
    members, bcc = expected(db, listname)
    assert members - bcc, f"{listname}: a useful case has members who are not leaders"
    if m := re.fullmatch(r"role-(\d+)[-+].*", listname):
        # The filters must keep some holders of the role and drop others.
        assert members < expected(db, f"role-{m[1]}")[0], listname
    poster = sorted(bcc)[0]
    subject = f"Briefing for {listname}"
    msg_id = inject(example, f"Team Leader <{poster}>", subject, listname)
    routemail(example, "run")
    assert recipients(example.data_dir, subject) == once(members | bcc)
    assert moderation_requests(example.data_dir) == []
    history = example.spool.history(msg_id)
    assert history.has(sidecar.LIST_SENT, listname.lower())
    assert sidecar.summary_state(history, example.spool.is_pending(msg_id)) == "done"


@pytest.mark.parametrize(
    ("listname", "sender"),
    [
        ("task-4-signedin", "grace.kim@example.net"),  # on the list, not a CERT leader
        ("event-1-invited", "isabel.rossi@example.com"),
        ("class-1-registered", "oscar.f@example.com"),
        ("role-1+dswCERT", "farid.haddad@example.com"),
        ("role-3", "alice.nguyen@example.com"),  # a leader, but of CERT, not SARES
    ],
)
def test_non_leader_post_is_held_for_the_leaders(
    example: Project, db: sqlite3.Connection, listname: str, sender: str
) -> None:
    """A post from someone who does not lead the organisation involved is held: nobody on
    the list gets it, each leader gets one moderation request; `approve` then delivers it
    to the whole list once."""
    members, bcc = expected(db, listname)
    assert sender not in bcc
    subject = f"Question about {listname}"
    msg_id = inject(example, sender, subject, listname)
    routemail(example, "run")
    assert recipients(example.data_dir, subject) == Counter()
    requests = moderation_requests(example.data_dir)
    assert Counter(r.recipient for r in requests) == once(bcc)
    assert {r.subject for r in requests} == {f"Moderation needed for {listname.lower()}: {subject}"}
    history = example.spool.history(msg_id)
    assert history.has(sidecar.MODERATION, listname.lower())
    assert sidecar.summary_state(history, example.spool.is_pending(msg_id)) == "held"
    routemail(example, "approve", msg_id, listname)
    assert recipients(example.data_dir, subject) == once(members | bcc)


def test_two_overlapping_lists_send_one_copy_each(example: Project, db: sqlite3.Connection) -> None:
    """A post to two dynamic lists whose recipients overlap reaches every address once."""
    role, role_leaders = expected(db, "role-3")
    task, task_leaders = expected(db, "task-6-signedin")
    overlap = (role | role_leaders) & (task | task_leaders)
    # Kateryna's address has capitals in its local part: kept as written, and still once.
    assert "Kateryna.S@example.net" in overlap and len(overlap) >= 3
    poster = sorted(role_leaders & task_leaders)[0]
    inject(example, poster, "Net schedule", "role-3", "task-6-signedin")
    routemail(example, "run")
    assert recipients(example.data_dir, "Net schedule") == once(
        role | role_leaders | task | task_leaders
    )


def test_overlap_delivered_in_separate_runs_sends_one_copy_each(
    example: Project, db: sqlite3.Connection
) -> None:
    """When the two lists of a held post are approved one at a time (two runs), an address
    on both still gets one copy, whatever the case of its local part."""
    role, role_leaders = expected(db, "role-3")
    task, task_leaders = expected(db, "task-6-signedin")
    msg_id = inject(example, "eve@outside.example", "Relayed notice", "role-3", "task-6-signedin")
    routemail(example, "run")
    routemail(example, "approve", msg_id, "role-3")
    routemail(example, "approve", msg_id, "task-6-signedin")
    assert recipients(example.data_dir, "Relayed notice") == once(
        role | role_leaders | task | task_leaders
    )


@pytest.mark.parametrize(
    "listname", ["role-99", "role-99+cardkey", "event-99-invited", "class-99-waitlist"]
)
def test_a_name_the_database_does_not_know_goes_to_the_admin(
    example: Project, db: sqlite3.Connection, listname: str
) -> None:
    """The exists queries in lists.toml tell a typo from an empty list: mail to a role,
    event or class the database does not have is forwarded to the admin, like any
    unknown address, instead of reaching nobody."""
    assert expected(db, listname) == (set(), set())
    subject = f"Hello {listname}"
    msg_id = inject(example, "alice.nguyen@example.com", subject, listname)
    routemail(example, "run")
    assert recipients(example.data_dir, subject) == Counter()
    forwards = [d for d in outbox(example.data_dir) if listname.lower() in d.subject]
    assert [d.recipient for d in forwards] == ["admin@example.org"]
    assert example.spool.history(msg_id).has(sidecar.UNKNOWN, f"{listname}@{DOMAIN}")


def test_a_known_role_whose_filters_keep_nobody_is_an_empty_list(
    example: Project, db: sqlite3.Connection
) -> None:
    """The role exists, the criteria just exclude everyone: a list with no members."""
    listname = "role-1+cardkey-cardkey"
    members, leaders = expected(db, listname)
    assert members == set() and leaders
    msg_id = inject(example, sorted(leaders)[0], "Nobody", listname)
    routemail(example, "run")
    history = example.spool.history(msg_id)
    assert not history.has(sidecar.UNKNOWN, f"{listname}@{DOMAIN}")
    assert history.has(sidecar.LIST_SENT, listname)
