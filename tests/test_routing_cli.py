"""The routing commands: `routemail lists`, `members`, `show`, `queue`, `approve` and `reject`."""

from __future__ import annotations

import base64
import getpass
import hashlib
import json
import re
import shlex
import sqlite3
from collections.abc import Iterator
from contextlib import closing

import pytest
from click.testing import CliRunner, Result

from routemail.cli import cli
from tests.conftest import BASE_CONFIG, Project
from tests.mailbox import moderation_requests, outbox, recipients

VOLUNTEERS = "volunteers@lists.example.org"
TIME = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"
PASSING = "dkim=PASS dmarc=PASS spf=PASS spam=PASS virus=PASS"
TEAM_PATTERN = "team-(?P<n>[0-9]+)"

# A dynamic family backed by a small database of our own: team-N is everyone in team N,
# with the team's captain as bcc recipient and moderator.
DYNAMIC = f"""
[delivery]
rate = 1000

[[dynamic]]
description = "Everyone in a team"
pattern = '{TEAM_PATTERN}'
resolver = "sqlite"
database = "teams.sqlite3"
posters = "moderators"
members = "SELECT email FROM team_member WHERE team = :n ORDER BY email"
bcc = "SELECT captain FROM team WHERE id = :n"
moderators = "SELECT captain FROM team WHERE id = :n"
"""

TEAMS_SQL = """
CREATE TABLE team (id INTEGER PRIMARY KEY, captain TEXT NOT NULL);
CREATE TABLE team_member (team INTEGER NOT NULL, email TEXT NOT NULL);
INSERT INTO team VALUES (1, 'cap@example.org');
INSERT INTO team_member VALUES (1, 'zoe@example.com'), (1, 'yan@example.net');
"""


@pytest.fixture
def site(project: Project) -> Project:
    """The base project plus a sqlite-backed [[dynamic]] family and a fast outbox."""
    project.write_config(BASE_CONFIG + DYNAMIC)
    with closing(sqlite3.connect(project.root / "teams.sqlite3")) as db:
        db.executescript(TEAMS_SQL)
    return project


def routemail(project: Project, *args: str) -> Result:
    """Run the routemail CLI in-process against the project, as a user would."""
    return CliRunner().invoke(
        cli,
        ["--config", str(project.config_path), "--data", str(project.data_dir), *args],
        catch_exceptions=False,
    )


def msg_id(message_id: str) -> str:
    """The queue id of docs/spool-format.md: base64url of the Message-ID's MD5, no padding."""
    digest = hashlib.md5(message_id.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def inject(
    project: Project,
    sender: str,
    message_id: str,
    subject: str = "Shift swap",
    to: str = VOLUNTEERS,
) -> str:
    """Queue a message with `routemail inject` and return the id it printed."""
    path = project.root / f"{msg_id(message_id)}.eml"
    path.write_bytes(
        f"From: {sender}\nTo: {to}\nSubject: {subject}\nMessage-ID: {message_id}\n\n"
        "Can anyone take my Saturday shift?\n".encode()
    )
    result = routemail(project, "inject", str(path), "--to", to, "--verdicts", PASSING)
    assert result.exit_code == 0, result.output
    assert result.stdout == msg_id(message_id) + "\n"
    return msg_id(message_id)


def run(project: Project) -> None:
    result = routemail(project, "run")
    assert result.exit_code == 0, result.output


@pytest.fixture
def held_and_done(site: Project) -> Iterator[tuple[str, str]]:
    """A non-member's post (held) and a member's post (delivered), after one run."""
    held = inject(site, "Eve Outsider <eve@outside.example>", "<held-1@outside.example>", "Hello")
    done = inject(site, "Ann Author <ann@example.com>", "<done-1@example.com>", "Rota")
    run(site)
    yield held, done


def lines(result: Result) -> list[str]:
    return [line.rstrip() for line in result.stdout.splitlines()]


# -- lists --------------------------------------------------------------------


def test_lists_shows_named_lists_and_dynamic_patterns(site: Project) -> None:
    """`lists` prints one line per named list (address, member count, posters,
    description) and one per dynamic pattern with its resolver."""
    result = routemail(site, "lists")
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    assert lines(result) == [
        "volunteers@lists.example.org                 3 members  posters: members     "
        "All volunteers",
        "board@lists.example.org                      2 members  posters: moderators",
        "team-(?P<n>[0-9]+)                        dynamic (sqlite)  Everyone in a team",
    ]


def test_lists_json(site: Project) -> None:
    """`lists --json` gives each named list's address, counts, moderators and posters,
    and each dynamic pattern with its resolver and description."""
    result = routemail(site, "lists", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "lists": [
            {
                "name": "volunteers",
                "address": VOLUNTEERS,
                "description": "All volunteers",
                "members": 3,
                "moderators": ["coordinator@example.org"],
                "posters": "members",
            },
            {
                "name": "board",
                "address": "board@lists.example.org",
                "description": "",
                "members": 2,
                "moderators": ["chair@example.org"],
                "posters": "moderators",
            },
        ],
        "dynamic": [
            {"pattern": TEAM_PATTERN, "resolver": "sqlite", "description": "Everyone in a team"}
        ],
    }


def test_lists_with_a_list_of_posters(project: Project) -> None:
    """A list whose posters are named addresses shows "listed addresses" in the table and
    the addresses in JSON."""
    project.write_config(
        BASE_CONFIG + '\n[lists.news]\nposters = ["editor@example.org"]\nmembers = []\n'
    )
    table = routemail(project, "lists")
    assert table.exit_code == 0, table.output
    assert lines(table)[-1] == (
        "news@lists.example.org                       0 members  posters: listed addresses"
    )
    news = json.loads(routemail(project, "lists", "--json").stdout)["lists"][-1]
    assert (news["name"], news["posters"]) == ("news", ["editor@example.org"])


# -- members ------------------------------------------------------------------


def test_members_of_a_named_list_by_address(site: Project) -> None:
    """`members ADDRESS` prints the list's address, then its members, bcc recipients and
    moderators, each with a count."""
    result = routemail(site, "members", VOLUNTEERS)
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        "volunteers@lists.example.org\n"
        "members (3):\n"
        "  ann@example.com\n"
        "  bob@example.net\n"
        "  coordinator@example.org\n"
        "bcc (0):\n"
        "moderators (1):\n"
        "  coordinator@example.org\n"
    )


@pytest.mark.parametrize("given", ["board", "Board", "Chair <BOARD@Lists.Example.ORG>"])
def test_members_by_bare_name_or_any_spelling_json(site: Project, given: str) -> None:
    """A bare list name works as well as an address; list names and the domain compare
    case-insensitively and a display name is ignored."""
    result = routemail(site, "members", given, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "list": "board",
        "dynamic": False,
        "members": ["chair@example.org", "ann@example.com"],
        "bcc": [],
        "moderators": ["chair@example.org"],
    }


def test_members_of_a_dynamic_list(site: Project) -> None:
    """A name matching a [[dynamic]] pattern is resolved: members, bcc and moderators
    come from the resolver and the list is marked dynamic."""
    result = routemail(site, "members", "team-1@lists.example.org")
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        "team-1@lists.example.org (dynamic)\n"
        "members (2):\n"
        "  yan@example.net\n"
        "  zoe@example.com\n"
        "bcc (1):\n"
        "  cap@example.org\n"
        "moderators (1):\n"
        "  cap@example.org\n"
    )
    as_json = json.loads(routemail(site, "members", "team-1", "--json").stdout)
    assert as_json == {
        "list": "team-1",
        "dynamic": True,
        "members": ["yan@example.net", "zoe@example.com"],
        "bcc": ["cap@example.org"],
        "moderators": ["cap@example.org"],
    }
    # docs/configuration.md: a query that finds nobody is a list with no members.
    empty = routemail(site, "members", "team-2")
    assert (empty.exit_code, empty.stdout) == (
        0,
        "team-2@lists.example.org (dynamic)\nmembers (0):\nbcc (0):\nmoderators (0):\n",
    )


@pytest.mark.parametrize("given", ["x", "x@lists.example.org", "teams-1"])
def test_members_of_an_unknown_list(site: Project, given: str) -> None:
    """A name that is no named list and matches no dynamic pattern is one line pointing
    to `routemail lists`, exit status 1."""
    result = routemail(site, "members", given)
    assert result.exit_code == 1
    assert result.stdout == ""
    name = given.partition("@")[0]
    assert result.stderr == f"Error: no list '{name}': see `routemail lists`\n"


def test_members_on_another_domain(site: Project) -> None:
    """An address on another domain is refused with one line naming the site's domain."""
    result = routemail(site, "members", "volunteers@example.com")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == "Error: volunteers@example.com is not on lists.example.org\n"


# -- show ---------------------------------------------------------------------


def test_show_held_message(site: Project, held_and_done: tuple[str, str]) -> None:
    """`show` of a held message gives its headers, state held, and the timeline in
    order: received, verdicts, held for moderation (and why), the author told."""
    held, _ = held_and_done
    result = routemail(site, "show", held)
    assert result.exit_code == 0, result.output
    out = result.stdout.splitlines()
    assert out[:7] == [
        f"id:      {held}",
        "state:   held",
        "from:    Eve Outsider <eve@outside.example>",
        f"to:      {VOLUNTEERS}",
        "subject: Hello",
        "message-id: <held-1@outside.example>",
        "",
    ]
    timeline = out[7:]
    assert len(timeline) == 4
    assert re.fullmatch(f"{TIME}  received for {VOLUNTEERS}", timeline[0])
    assert timeline[1] == " " * 20 + "  " + PASSING
    assert re.fullmatch(
        f"{TIME}  held for moderation on volunteers; request sent to its moderators"
        r" \(sender eve@outside\.example is not a member of volunteers\)",
        timeline[2],
    )
    assert re.fullmatch(
        f"{TIME}  the author \\(eve@outside\\.example\\) was told it was held on volunteers",
        timeline[3],
    )
    assert [r.recipient for r in moderation_requests(site.data_dir)] == ["coordinator@example.org"]


def test_show_delivered_message_by_prefix(site: Project, held_and_done: tuple[str, str]) -> None:
    """`show` of a delivered message, by a unique prefix of its id, gives state done and
    one sent line per member in list order, then the list's delivered line."""
    held, done = held_and_done
    prefix = next(done[:n] for n in range(1, 23) if not held.startswith(done[:n]))
    result = routemail(site, "show", prefix)
    assert result.exit_code == 0, result.output
    out = result.stdout.splitlines()
    assert out[:2] == [f"id:      {done}", "state:   done"]
    assert "subject: Rota" in out
    start = out.index("") + 1
    end = out.index("", start)
    timeline = [re.sub(f"^{TIME}  ", "", line) for line in out[start:end]]
    # Then one line per recipient: status, when, and the outbox file it went to.
    files = {e.fields[0]: e.fields[1] for e in site.spool.history(done).events if e.code == "S"}
    assert [re.sub(TIME, "T", line) for line in out[end + 1 :]] == [
        "recipients:",
        *(f"  {who:23}  sent        T  {files[who]}" for who in files),
    ]
    assert list(files) == ["ann@example.com", "bob@example.net", "coordinator@example.org"]
    assert timeline == [
        f"received for {VOLUNTEERS}",
        " " * 22 + PASSING,
        "sent to ann@example.com",
        "sent to bob@example.net",
        "sent to coordinator@example.org",
        "done with every recipient of volunteers",
    ]
    assert recipients(site.data_dir, "Rota") == {
        "ann@example.com": 1,
        "bob@example.net": 1,
        "coordinator@example.org": 1,
    }


def test_show_json(site: Project, held_and_done: tuple[str, str]) -> None:
    """`show --json` gives id, state, the header summary and every sidecar event."""
    held, done = held_and_done
    held_json = json.loads(routemail(site, "show", held, "--json").stdout)
    assert held_json["id"] == held
    assert held_json["state"] == "held"
    assert held_json["headers"] == {
        "from": "Eve Outsider <eve@outside.example>",
        "to": VOLUNTEERS,
        "subject": "Hello",
        "message-id": "<held-1@outside.example>",
    }
    assert [(e["code"], e["fields"]) for e in held_json["events"]] == [
        ("R", [VOLUNTEERS]),
        ("V", ["PASS"] * 5),
        (
            "M",
            [
                "volunteers",
                *["sender", "eve@outside.example", "is", "not", "a", "member", "of", "volunteers"],
            ],
        ),
        ("T", ["volunteers", "held", "eve@outside.example"]),
    ]
    assert held_json["events"][1]["time"] is None
    assert all(isinstance(e["time"], str) for i, e in enumerate(held_json["events"]) if i != 1)
    done_json = json.loads(routemail(site, "show", done, "--json").stdout)
    assert done_json["state"] == "done"
    assert [e["code"] for e in done_json["events"]] == ["R", "V", "S", "S", "S", "L"]


@pytest.mark.parametrize("given", ["../planted", "../../lists.toml", "a/b", "x" * 23, "é"])
def test_show_refuses_what_is_no_queue_id(site: Project, given: str) -> None:
    """An argument with a path in it (or too long, or not base64url) is refused with one
    line, even where a file of that name exists: no id names anything outside QUEUE/."""
    (site.spool.root / "planted.data").write_text("S 2026-11-23T19:52:13Z eve@example.com\n")
    for command in (["show", given], ["show", "--json", given], ["reject", given, "volunteers"]):
        result = routemail(site, *command)
        assert result.exit_code == 1, result.output
        assert result.stderr.startswith(f"Error: {given[:40]!r} is not a queue id"), result.stderr
        assert "eve@example.com" not in result.output


def test_show_ambiguous_prefix(site: Project) -> None:
    """A prefix shared by two entries is refused with one line asking for more of the id."""
    first = inject(site, "ann@example.com", "<amb-0@example.com>")
    second_mid = next(
        m for m in (f"<amb-{n}@example.com>" for n in range(1, 10_000)) if msg_id(m)[0] == first[0]
    )
    inject(site, "ann@example.com", second_mid)
    result = routemail(site, "show", first[0])
    assert result.exit_code == 1
    assert result.stderr == f"Error: '{first[0]}' matches 2 entries; give more of the id\n"


# -- queue --------------------------------------------------------------------


def test_queue_state_held(site: Project, held_and_done: tuple[str, str]) -> None:
    """`queue --state held` lists only held entries; `--state done` only delivered ones."""
    held, done = held_and_done
    table = routemail(site, "queue", "--state", "held")
    assert table.exit_code == 0, table.output
    out = table.stdout.splitlines()
    assert out[0].split() == ["ID", "STATE", "RECEIVED", "SENT", "DESTINATIONS"]
    assert len(out) == 2
    assert re.fullmatch(f"{held}  held       {TIME}      0  {VOLUNTEERS}", out[1])
    as_json = json.loads(routemail(site, "queue", "--state", "done", "--json").stdout)
    rows = [(r["id"], r["state"], r["sent"], r["held"]) for r in as_json]
    assert (done, "done", 3, []) in rows
    assert len(rows) == 2  # and the notice telling eve her post is held
    held_json = json.loads(routemail(site, "queue", "--state", "held", "--json").stdout)
    assert [(r["id"], r["held"]) for r in held_json] == [(held, ["volunteers"])]
    assert routemail(site, "queue", "--state", "pending").stdout == "queue is empty\n"


# -- approve and reject -------------------------------------------------------


@pytest.mark.parametrize("command", ["approve", "reject"])
def test_approve_reject_unknown_id(site: Project, command: str) -> None:
    """Approving or rejecting an id that is not queued is one line pointing to
    `routemail queue`, exit status 1."""
    result = routemail(site, command, "nope", "volunteers")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == "Error: no queue entry 'nope': see `routemail queue`\n"


@pytest.mark.parametrize("command", ["approve", "reject"])
def test_approve_reject_not_held(
    site: Project, held_and_done: tuple[str, str], command: str
) -> None:
    """A delivered message, or a held one named with a list it is not held for, cannot be
    approved or rejected: one line pointing to `routemail show`, nothing changes."""
    held, done = held_and_done
    for entry, listname in ((done, "volunteers"), (held, "board"), (held, "nosuchlist")):
        before = site.spool.sidecar_path(entry).read_bytes()
        result = routemail(site, command, entry, listname)
        assert result.exit_code == 1
        assert result.stdout == ""
        assert result.stderr == (
            f"Error: {entry} is not held for {listname}; "
            f"`routemail show {entry}` shows its history\n"
        )
        assert site.spool.sidecar_path(entry).read_bytes() == before
    assert recipients(site.data_dir, "Hello") == {}


def test_approve_delivers_and_second_approval_is_refused(
    site: Project, held_and_done: tuple[str, str]
) -> None:
    """`approve ID LIST` prints who approved it, delivers it in the same command, and a
    second approval of the same message is refused."""
    held, _ = held_and_done
    who = f"shell:{getpass.getuser()}"
    result = routemail(site, "approve", held[:8], "Volunteers")
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{held}: approved for volunteers by {who}\n"
    assert recipients(site.data_dir, "Hello") == {
        "ann@example.com": 1,
        "bob@example.net": 1,
        "coordinator@example.org": 1,
    }
    shown = routemail(site, "show", held).stdout
    assert "state:   done\n" in shown
    assert re.search(f"{TIME}  approved for volunteers by {re.escape(who)} \\(shell\\)\n", shown)
    again = routemail(site, "approve", held, "volunteers")
    assert again.exit_code == 1
    assert again.stderr.startswith(
        f"Error: {held} was approved for volunteers by {who} (shell) at "
    )


def test_reject_ends_the_hold(site: Project, held_and_done: tuple[str, str]) -> None:
    """`reject ID LIST` records the rejection; a later run delivers nothing, and the
    entry no longer counts as held."""
    held, _ = held_and_done
    result = routemail(site, "reject", held, "volunteers")
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{held}: rejected for volunteers by shell:{getpass.getuser()}\n"
    run(site)
    assert recipients(site.data_dir, "Hello") == {}
    assert routemail(site, "queue", "--state", "held").stdout == "queue is empty\n"
    assert routemail(site, "approve", held, "volunteers").exit_code == 1


# -- ids that start with '-' -----------------------------------------------------

# Message-IDs whose queue ids start with '-' (about one id in 64 does).
DASH_HELD = "<held-98@outside.example>"  # -G1OnL7SoEebAUHdsOorYQ
DASH_LOST = "<held-300@outside.example>"  # -ZxOfHyz8zJq8NXFQzRYog


def paste(project: Project, printed: str) -> Result:
    """Run a command line routemail printed, as a person pasting it into a shell would."""
    words = shlex.split(printed)
    assert words[0] == "routemail"
    return routemail(project, *words[1:])


def printed_command(text: str, verb: str) -> str:
    found = re.search(rf"routemail {verb} [^\r\n`)]+", text)
    assert found, text
    return found.group(0)


def test_commands_printed_for_an_id_starting_with_dash_work_when_pasted(site: Project) -> None:
    """The moderation request's shell command, and the `show` command named by a refusal,
    work pasted as printed for a queue id that starts with '-'."""
    held = inject(site, "Eve Outsider <eve@outside.example>", DASH_HELD, "Dashing")
    assert held.startswith("-")
    run(site)
    [request] = moderation_requests(site.data_dir)
    body = request.message.get_body(("plain",))
    assert body is not None
    approve = printed_command(body.get_content(), "approve")
    assert approve == f"routemail approve -- {held} volunteers"

    refused = routemail(site, "reject", "--", held, "board")
    assert refused.exit_code == 1
    shown = paste(site, printed_command(refused.stderr, "show"))
    assert shown.exit_code == 0, shown.output
    assert f"id:      {held}\n" in shown.stdout

    approved = paste(site, approve)
    assert approved.exit_code == 0, approved.output
    assert approved.stdout.startswith(f"{held}: approved for volunteers by ")
    assert recipients(site.data_dir, "Dashing") == {
        "ann@example.com": 1,
        "bob@example.net": 1,
        "coordinator@example.org": 1,
    }


def test_admin_forward_names_a_show_command_that_works(site: Project) -> None:
    """Mail to no list goes to the admin with the `show` command for its entry; pasted,
    it works for an id that starts with '-'."""
    lost = inject(
        site, "Eve Outsider <eve@outside.example>", DASH_LOST, "Lost", "nolist@lists.example.org"
    )
    run(site)
    [forward] = [d for d in outbox(site.data_dir) if "matched no list" in str(d.message)]
    body = forward.message.get_body(("plain",))
    assert body is not None
    shown = paste(site, printed_command(body.get_content(), "show"))
    assert shown.exit_code == 0, shown.output
    assert f"id:      {lost}\n" in shown.stdout


@pytest.mark.parametrize("command", [("show",), ("approve", "volunteers"), ("reject", "x")])
def test_an_id_starting_with_dash_typed_as_an_option_says_what_works(
    site: Project, command: tuple[str, ...]
) -> None:
    """Typed without '--', such an id is refused with the form that works, not a bare
    'No such option'."""
    verb, *rest = command
    result = routemail(site, verb, "-G1OnL7SoEebAUHdsOorYQ", *rest)
    assert result.exit_code == 2
    assert (
        f"a queue id that starts with '-' goes after '--': routemail {verb} -- ID" in result.stderr
    )


# -- mail with over-long encoded lines --------------------------------------------


def test_a_one_line_base64_attachment_is_delivered_rewrapped(site: Project) -> None:
    """A post with a base64 attachment on one 24,340-character line is delivered to every
    member, not held, and no line of any copy exceeds 998 octets."""
    from tests.test_copy import attachment_bytes, long_line_message

    path = site.root / "long-lines.eml"
    path.write_bytes(long_line_message(b"\n"))
    queued = routemail(site, "inject", str(path), "--to", VOLUNTEERS, "--verdicts", PASSING)
    assert queued.exit_code == 0, queued.output
    run(site)
    copies = [d for d in outbox(site.data_dir) if "Rota attached" in d.subject]
    assert sorted(d.recipient for d in copies) == [
        "ann@example.com",
        "bob@example.net",
        "coordinator@example.org",
    ]
    for d in copies:
        assert max(len(line) for line in d.path.read_bytes().splitlines()) <= 998
        [pdf] = [p for p in d.message.walk() if p.get_content_type() == "application/pdf"]
        assert pdf.get_payload(decode=True) == attachment_bytes(18_255)


# -- a To header of thousands of addresses -----------------------------------------


@pytest.mark.parametrize(
    "shape",
    [
        "Volunteer {i} <v{i}@example.org>",
        "v{i}@example.org",
        '"Volunteer, No. {i}" <v{i}@example.org>',
        "v{i}@example.org (volunteer {i})",
    ],
    ids=["named", "bare", "quoted", "commented"],
)
def test_a_to_header_of_thousands_of_addresses_is_delivered(site: Project, shape: str) -> None:
    """A post whose To names the list among 2,710 other addresses is parsed without
    running out of recursion and delivered to every member, not held."""
    others = ", ".join(shape.format(i=i) for i in range(2710))
    path = site.root / "crowd.eml"
    path.write_bytes(
        (
            "From: Ann Author <ann@example.com>\n"
            f"To: {others}, {VOLUNTEERS}\n"
            f"Cc: {others}\n"
            "Subject: Everyone\n"
            "Message-ID: <crowd@example.com>\n"
            "\n"
            "Thank you all.\n"
        ).encode()
    )
    queued = routemail(site, "inject", str(path), "--to", VOLUNTEERS, "--verdicts", PASSING)
    assert queued.exit_code == 0, queued.output
    run(site)
    assert recipients(site.data_dir, "Everyone") == {
        "ann@example.com": 1,
        "bob@example.net": 1,
        "coordinator@example.org": 1,
    }
