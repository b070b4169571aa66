"""Dynamic-list resolvers: sqlite on the example database, a real program, a real HTTP server."""

from __future__ import annotations

import json
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import closing
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from routemail import config as configmod
from routemail.resolvers import NoSuchList, Resolved, ResolverError, resolve
from tests.conftest import ROOT, example_site

ALICE = "alice.nguyen@example.com"
BOB = "bob@example.net"  # stored as bob@Example.NET: domains compare case-insensitively
CAROL = "carol.singh@sares.example.org"
DMITRI = "dpetrov@example.com"
ELENA = "elena@listos.example.org"
FARID = "farid.haddad@example.com"
GRACE = "grace.kim@example.net"
HIRO = "hiro@example.com"
ISABEL = "isabel.rossi@example.com"
JAMAL = "jamal@example.org"
KATERYNA = "Kateryna.S@example.net"  # the local part stays as written
LIAM = "liam.oconnor@example.com"
MARIA = "maria.lopez@example.org"
NADIA = "nadia@example.org"
OSCAR = "oscar.f@example.com"
PRIYA = "priya.patel@example.com"
ROSA = "rosa.alvarez@example.net"
SAM = "sam.okafor@example.com"
TINA = "tina.wu@example.org"
UMAR = "umar@example.com"
VERA = "vera.j@example.net"
# Quentin Moreau (person 17) has no address: he holds role 1, is signed up for
# task 4 and registered for class 3, and must never appear.

ROLE_1 = {BOB, FARID, GRACE, HIRO, JAMAL, LIAM, NADIA, OSCAR, PRIYA, TINA}


def build_database(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with closing(sqlite3.connect(path)) as db:
        db.executescript((ROOT / "examples" / "serv.sql").read_text())


@pytest.fixture
def example(tmp_path: Path) -> configmod.Config:
    """examples/lists.toml with the example database built from examples/serv.sql."""
    return configmod.load(example_site(tmp_path))


def lookup(config: configmod.Config, name: str) -> Resolved:
    """Resolve name by the first [[dynamic]] pattern matching all of it, as list names arrive."""
    name = name.lower()
    for rule in config.dynamic:
        if m := rule.pattern.fullmatch(name):
            return resolve(rule.resolver, rule.options, m.groupdict(), config.base_dir)
    raise AssertionError(f"no pattern matches {name}")


def matches(config: configmod.Config, name: str) -> bool:
    return any(rule.pattern.fullmatch(name.lower()) for rule in config.dynamic)


def write_config(tmp_path: Path, dynamic: str) -> configmod.Config:
    path = tmp_path / "lists.toml"
    path.write_text(
        '[site]\ndomain = "lists.example.org"\nadmin = "admin@example.org"\n\n' + dynamic
    )
    return configmod.load(path)


# -- the three SunnyvaleSERV families from the example database -------------


@pytest.mark.parametrize(
    ("name", "members", "bcc"),
    [
        (
            "event-1-invited",
            {ISABEL, MARIA, ELENA, DMITRI, ROSA, CAROL, SAM, KATERYNA},
            {ELENA, DMITRI, PRIYA, CAROL},
        ),
        (
            "event-1-signedup",
            {ISABEL, MARIA, UMAR, ROSA, CAROL, SAM},
            {ELENA, DMITRI, PRIYA, CAROL},
        ),
        ("event-1-signedin", {ISABEL, UMAR, MARIA, ROSA, CAROL}, {ELENA, DMITRI, PRIYA, CAROL}),
        (
            "event-2-signedup",
            {FARID, GRACE, JAMAL, LIAM, TINA, BOB, HIRO, SAM},
            {ALICE, BOB, CAROL},
        ),
        ("event-3-invited", {CAROL, HIRO, KATERYNA, PRIYA}, {CAROL}),
        ("task-4-invited", {FARID, GRACE, JAMAL, LIAM, NADIA, TINA}, {ALICE, BOB}),
        ("task-4-signedup", {FARID, GRACE, JAMAL, LIAM, TINA}, {ALICE, BOB}),
        ("task-5-signedin", {HIRO, SAM}, {CAROL}),
        ("Task-5-SignedIn", {HIRO, SAM}, {CAROL}),
    ],
)
def test_event_and_task_lists(
    example: configmod.Config, name: str, members: set[str], bcc: set[str]
) -> None:
    """(event|task)-N-step reaches everyone at that step; the task orgs' leaders get bcc."""
    got = lookup(example, name)
    assert set(got.members) == members
    assert len(got.members) == len(members)
    assert set(got.bcc) == bcc
    assert set(got.moderators) == bcc


@pytest.mark.parametrize(
    ("name", "members", "bcc"),
    [
        ("class-1-registered", {GRACE, OSCAR, UMAR}, {ALICE, BOB}),
        ("class-1-waitlist", {VERA, MARIA}, {ALICE, BOB}),
        ("class-2-registered", {KATERYNA}, {CAROL}),
        ("class-2-waitlist", {UMAR}, {CAROL}),
        ("class-3-registered", {VERA, UMAR}, {ELENA}),
        ("class-3-waitlist", set(), {ELENA}),
    ],
)
def test_class_lists(
    example: configmod.Config, name: str, members: set[str], bcc: set[str]
) -> None:
    """class-N-status reaches the registered or waitlisted; the class org's leaders get bcc."""
    got = lookup(example, name)
    assert set(got.members) == members
    assert len(got.members) == len(members)
    assert set(got.bcc) == bcc
    assert set(got.moderators) == bcc


@pytest.mark.parametrize(
    ("name", "members"),
    [
        ("role-1", ROLE_1),
        ("role-1+cardkey", {BOB, FARID, HIRO, JAMAL, LIAM, PRIYA, TINA}),
        ("role-1-cardkey", {GRACE, NADIA, OSCAR}),
        # DOJ alone (Nadia) or FBI alone (Oscar) is not a background check.
        ("role-1+bgcheck", {BOB, FARID, HIRO, LIAM, PRIYA, TINA}),
        ("role-1-bgcheck", {GRACE, JAMAL, NADIA, OSCAR}),
        ("role-1+dswCERT", ROLE_1 - {GRACE, OSCAR}),
        ("role-1+dswComm", {BOB, HIRO, PRIYA}),
        ("role-1-dswcomm", ROLE_1 - {BOB, HIRO, PRIYA}),
        ("role-1+photoID", ROLE_1 - {GRACE, JAMAL, OSCAR}),
        ("role-1+volreg", ROLE_1 - {GRACE, OSCAR}),
        ("role-1+cardkey-bgcheck", {JAMAL}),
        ("role-1+bgcheck+dswComm", {BOB, HIRO, PRIYA}),
        ("role-1-volreg-photoID", {GRACE, OSCAR}),
        ("role-1+cardkey-cardkey", set()),
        ("ROLE-1+CARDKEY", {BOB, FARID, HIRO, JAMAL, LIAM, PRIYA, TINA}),
    ],
)
def test_role_lists_and_filters(example: configmod.Config, name: str, members: set[str]) -> None:
    """role-N holders narrowed by +criterion (has it) and -criterion (lacks it), in any case."""
    got = lookup(example, name)
    assert set(got.members) == members
    assert len(got.members) == len(members)
    assert set(got.bcc) == {ALICE, BOB}


@pytest.mark.parametrize(
    ("name", "members", "bcc"),
    [
        ("role-3", {BOB, CAROL, HIRO, KATERYNA, PRIYA, SAM}, {CAROL}),
        ("role-3+dswcomm+cardkey", {BOB, HIRO, PRIYA}, {CAROL}),
        ("role-5", {ELENA, ISABEL, MARIA}, {ELENA}),
        ("role-6-volreg", set(), {DMITRI, PRIYA}),
        ("role-6", {MARIA, ROSA}, {DMITRI, PRIYA}),
    ],
)
def test_role_bcc_is_the_roles_organisation(
    example: configmod.Config, name: str, members: set[str], bcc: set[str]
) -> None:
    """Each role's list bcc's the leaders of the organisation the role belongs to."""
    got = lookup(example, name)
    assert set(got.members) == members
    assert set(got.bcc) == bcc


def test_mixed_case_groups_reach_the_same_people(example: configmod.Config) -> None:
    """Groups as written (not lower-cased) select the same rows as their lower-case form."""
    rule = example.dynamic[0]
    mixed = resolve(
        rule.resolver,
        rule.options,
        {"kind": "Event", "id": "1", "step": "SignedIn"},
        example.base_dir,
    )
    assert mixed == lookup(example, "event-1-signedin")
    role = example.dynamic[2]
    got = resolve(
        role.resolver, role.options, {"role": "1", "filters": "+CardKey-BGCHECK"}, example.base_dir
    )
    assert got.members == (JAMAL,)


def test_unknown_criterion_is_no_such_list(example: configmod.Config) -> None:
    """A criterion that is not in the config's filters table means there is no such list."""
    with pytest.raises(NoSuchList, match="unknown criterion 'admin'"):
        lookup(example, "role-1+cardkey+admin")


@pytest.mark.parametrize(
    "name", ["task-99-invited", "event-99-signedup", "class-99-waitlist", "role-99"]
)
def test_exists_query_tells_an_unknown_id_from_an_empty_list(
    example: configmod.Config, name: str
) -> None:
    """An id the database does not have is no list at all, not a list with no members."""
    with pytest.raises(NoSuchList, match="exists query"):
        lookup(example, name)


def test_names_outside_the_families_do_not_match(example: configmod.Config) -> None:
    """Anchored patterns: SQL-looking or malformed names reach no resolver at all."""
    for name in (
        "role-1 or 1=1",
        "role-1;drop table people",
        "role-1+cardkey)or(1=1",
        "role-x",
        "event-1-attended",
        "task-1",
        "class-1-registered-extra",
        "role-1+",
        "xrole-1",
    ):
        assert not matches(example, name), name


def test_missing_database_is_temporary(example: configmod.Config) -> None:
    """A database file that is not there is a ResolverError, so the message stays queued."""
    (example.base_dir / "serv.sqlite3").unlink()
    with pytest.raises(ResolverError, match=r"database .*serv\.sqlite3 does not exist"):
        lookup(example, "role-1")
    # Nor is an empty database left behind by trying.
    assert not (example.base_dir / "serv.sqlite3").exists()


def test_unreadable_database_is_temporary(example: configmod.Config) -> None:
    """A file that is not a SQLite database is a ResolverError naming the file."""
    (example.base_dir / "serv.sqlite3").write_bytes(b"not a database\n" * 100)
    with pytest.raises(ResolverError, match=r"sqlite query on .*serv\.sqlite3 failed"):
        lookup(example, "class-1-registered")


def test_list_name_values_are_bound_never_spliced(tmp_path: Path) -> None:
    """With a permissive pattern, SQL in the name is a parameter value: it matches nobody."""
    build_database(tmp_path / "serv.sqlite3")
    config = write_config(
        tmp_path,
        "[[dynamic]]\n"
        "pattern = 'person-(?P<name>.+)'\n"
        'resolver = "sqlite"\n'
        'database = "serv.sqlite3"\n'
        'members = "SELECT email FROM people WHERE lower(name) = lower(:name)"\n',
    )
    assert lookup(config, "person-alice nguyen").members == (ALICE,)
    for attack in (
        "x' or '1'='1",
        "x'; drop table people; --",
        "' union select email from people --",
    ):
        assert lookup(config, f"person-{attack}").members == ()
    with closing(sqlite3.connect(tmp_path / "serv.sqlite3")) as db:
        assert db.execute("SELECT count(*) FROM people").fetchone() == (22,)


def test_criteria_text_never_reaches_sql(tmp_path: Path) -> None:
    """With a permissive filters group, anything but +name/-name is no list at all."""
    build_database(tmp_path / "serv.sqlite3")
    config = write_config(
        tmp_path,
        "[[dynamic]]\n"
        "pattern = 'r-(?P<role>[0-9]+)(?P<filters>.*)'\n"
        'resolver = "sqlite"\n'
        'database = "serv.sqlite3"\n'
        'members = """SELECT p.email FROM people p JOIN person_role pr ON pr.person = p.id\n'
        'WHERE pr.role = :role AND {filters}"""\n'
        "[dynamic.filters]\n"
        'cardkey = "p.cardkey IS NOT NULL"\n',
    )
    assert set(lookup(config, "r-2+cardkey").members) == {LIAM, PRIYA}
    for junk in ("+cardkey) or (1=1", "+cardkey or 1=1", " ", "+cardkey;", "--", "+"):
        with pytest.raises(NoSuchList):
            lookup(config, f"r-2{junk}")


def test_queries_cannot_write(tmp_path: Path) -> None:
    """The database is opened read-only: a query that writes fails and changes nothing."""
    build_database(tmp_path / "serv.sqlite3")
    config = write_config(
        tmp_path,
        "[[dynamic]]\n"
        "pattern = 'gone-(?P<id>[0-9]+)'\n"
        'resolver = "sqlite"\n'
        'database = "serv.sqlite3"\n'
        'members = "DELETE FROM people WHERE id = :id RETURNING email"\n',
    )
    with pytest.raises(ResolverError, match="readonly"):
        lookup(config, "gone-1")
    with closing(sqlite3.connect(tmp_path / "serv.sqlite3")) as db:
        assert db.execute("SELECT count(*) FROM people").fetchone() == (22,)


# -- command ----------------------------------------------------------------


def script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


def command_config(tmp_path: Path, argv: str, timeout: float = 10) -> configmod.Config:
    return write_config(
        tmp_path,
        "[[dynamic]]\n"
        "pattern = 'team-(?P<team>.+)'\n"
        'resolver = "command"\n'
        f"command = {argv}\n"
        f"timeout = {timeout}\n",
    )


def test_command_output_members_bcc_and_moderators(tmp_path: Path) -> None:
    """One address a line; bcc: and moderator: lines; the groups arrive as arguments."""
    script(
        tmp_path / "team",
        'echo "ann@Example.COM"\n'
        'echo "Bob Brown <bob@example.net>"\n'
        'echo ""\n'
        'echo "not an address"\n'
        'echo "ann@example.com"\n'
        'echo "bcc: lead-$1@example.org"\n'
        'echo "Moderator:chair@example.org"\n',
    )
    config = command_config(tmp_path, '["./team", "{team}"]')
    assert lookup(config, "team-rescue") == Resolved(
        ("ann@example.com", "bob@example.net"), ("lead-rescue@example.org",), ("chair@example.org",)
    )


def test_command_gets_the_value_as_one_argument(tmp_path: Path) -> None:
    """No shell: a value full of shell syntax is one argument, executed by nobody."""
    script(tmp_path / "args", 'printf "%s\\n" "$#" "$1" > args.out\necho x@example.com\n')
    config = command_config(tmp_path, '["./args", "{team}"]')
    value = "a; touch pwned $(touch pwned2) `touch pwned3`"
    assert lookup(config, f"team-{value}").members == ("x@example.com",)
    assert (tmp_path / "args.out").read_text() == f"1\n{value}\n"
    assert not list(tmp_path.glob("pwned*"))


def test_command_failure_is_temporary(tmp_path: Path) -> None:
    """A non-zero exit is a ResolverError quoting the program's last error line."""
    script(tmp_path / "fail", 'echo "ann@example.com"\necho "directory is locked" >&2\nexit 3\n')
    config = command_config(tmp_path, '["./fail"]')
    with pytest.raises(ResolverError, match=r"\./fail exited with status 3: directory is locked"):
        lookup(config, "team-x")


def test_command_missing_program_is_temporary(tmp_path: Path) -> None:
    """A program that does not exist is a ResolverError naming it."""
    config = command_config(tmp_path, '["./nowhere", "{team}"]')
    with pytest.raises(ResolverError, match=r"cannot run \./nowhere"):
        lookup(config, "team-x")


def test_command_timeout_kills_everything_it_started(tmp_path: Path) -> None:
    """A program over its timeout is a ResolverError, and its own children die with it."""
    script(tmp_path / "slow", "sleep 60 &\necho $! > child.pid\nwait\necho ann@example.com\n")
    config = command_config(tmp_path, '["./slow"]', timeout=0.5)
    with pytest.raises(ResolverError, match=r"\./slow took longer than 0\.5s"):
        lookup(config, "team-x")
    child = int((tmp_path / "child.pid").read_text())
    assert wait_gone(child), f"process {child} outlived the timeout"


def wait_gone(pid: int) -> bool:
    """Whether pid is gone (or a zombie awaiting its new parent) within a few seconds."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state == "Z":
            return True
        time.sleep(0.05)
    return False


def test_example_lookup_command(example: configmod.Config) -> None:
    """The shipped examples/lookup-command serves org-NAME through the command resolver."""
    got = lookup(example, "org-sares")
    assert set(got.members) == {BOB, CAROL, HIRO, KATERYNA, PRIYA, SAM}
    assert got.bcc == (CAROL,)
    assert got.moderators == (CAROL,)
    assert lookup(example, "org-nothing") == Resolved(())


# -- http -------------------------------------------------------------------


class Directory(BaseHTTPRequestHandler):
    """A small people directory: answers by path, records what it was asked."""

    seen: list[str]
    release: threading.Event

    def do_GET(self) -> None:
        self.seen.append(self.path)
        if self.path.startswith("/slow"):
            self.release.wait(30)
            return
        routes: dict[str, tuple[int, str, bytes]] = {
            "/teams/rescue": (
                200,
                "application/json",
                json.dumps(["ann@Example.com", "bob@example.net", 7, "junk"]).encode(),
            ),
            "/teams/radio": (
                200,
                "application/json",
                json.dumps(
                    {
                        "members": ["hiro@example.com", "sam@example.com"],
                        "bcc": ["carol@example.org"],
                        "moderators": ["carol@example.org"],
                    }
                ).encode(),
            ),
            "/teams/broken": (500, "text/plain", b"internal error\n"),
            "/teams/html": (200, "text/html", b"<html>Service Unavailable</html>"),
            "/teams/shape": (200, "application/json", b'{"members": "ann@example.com"}'),
        }
        status, ctype, body = routes.get(self.path, (404, "text/plain", b"no such team\n"))
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def directory_server() -> Iterator[tuple[str, list[str]]]:
    """A real HTTP server on a loopback port; yields its base URL and the paths requested."""
    release = threading.Event()
    seen: list[str] = []
    handler = type("Handler", (Directory,), {"seen": seen, "release": release})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        release.set()
        server.shutdown()
        server.server_close()
        thread.join()


def http_config(tmp_path: Path, base: str, timeout: float = 5) -> configmod.Config:
    return write_config(
        tmp_path,
        "[[dynamic]]\n"
        "pattern = 'team-(?P<team>.+)'\n"
        'resolver = "http"\n'
        f'url = "{base}/teams/{{team}}"\n'
        f"timeout = {timeout}\n"
        "\n[[dynamic]]\n"
        "pattern = 'slow-(?P<n>[0-9]+)'\n"
        'resolver = "http"\n'
        f'url = "{base}/slow/{{n}}"\n'
        "timeout = 0.5\n",
    )


def test_http_json_list(tmp_path: Path, directory_server: tuple[str, list[str]]) -> None:
    """A JSON list of addresses is the members; junk entries are skipped."""
    base, _ = directory_server
    got = lookup(http_config(tmp_path, base), "team-rescue")
    assert got == Resolved(("ann@example.com", "bob@example.net"))


def test_http_json_object(tmp_path: Path, directory_server: tuple[str, list[str]]) -> None:
    """A JSON object gives members, bcc and moderators."""
    base, _ = directory_server
    got = lookup(http_config(tmp_path, base), "team-radio")
    assert got == Resolved(
        ("hiro@example.com", "sam@example.com"), ("carol@example.org",), ("carol@example.org",)
    )


def test_http_values_are_url_quoted(
    tmp_path: Path, directory_server: tuple[str, list[str]]
) -> None:
    """A value with / ? # and spaces stays one path segment of the template."""
    base, seen = directory_server
    with pytest.raises(NoSuchList):
        lookup(http_config(tmp_path, base), "team-../admin?x=1#y z")
    assert seen == ["/teams/..%2Fadmin%3Fx%3D1%23y%20z"]


@pytest.mark.parametrize(
    ("name", "error", "message"),
    [
        ("team-broken", ResolverError, r"/teams/broken answered 500"),
        ("team-nobody", NoSuchList, r"/teams/nobody answered 404"),
        ("team-html", ResolverError, r"/teams/html: Expecting value"),
        ("team-shape", ResolverError, r"expected a JSON list of addresses"),
        ("slow-1", ResolverError, r"/slow/1: .*timed out"),
    ],
)
def test_http_failures(
    tmp_path: Path,
    directory_server: tuple[str, list[str]],
    name: str,
    error: type[Exception],
    message: str,
) -> None:
    """Server errors, non-JSON, a wrong shape and a slow server are temporary; 404 is no list."""
    base, _ = directory_server
    with pytest.raises(error, match=message):
        lookup(http_config(tmp_path, base), name)


def test_http_server_down_is_temporary(tmp_path: Path) -> None:
    """Nobody listening is a ResolverError, not a crash."""
    with closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ResolverError, match="Connection refused"):
        lookup(http_config(tmp_path, f"http://127.0.0.1:{port}"), "team-rescue")
