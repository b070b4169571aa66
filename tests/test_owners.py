"""Owners' changes (routemail.owners): members, settings, lists; each a log line, the
file's comments and layout kept."""

from __future__ import annotations

import getpass
import json
import re
import shlex
import shutil
import tomllib
from pathlib import Path

import pytest

from routemail import config as configuration
from routemail import listedit, owners
from routemail.run import run
from routemail.state import State
from tests.conftest import EXAMPLES, Project, RunCli, example_site
from tests.mailbox import outbox

ADA = owners.Actor("ada@example.com", "api")
PASSING = dict.fromkeys(("dkim", "dmarc", "spf", "spam", "virus"), "PASS")


def config_of(project: Project) -> configuration.Config:
    return configuration.load(project.config_path)


def log_lines(project: Project) -> list[str]:
    text = "".join(p.read_text() for p in (project.data_dir / "maillist" / "log").iterdir())
    return [line.split(" ", 2)[2] for line in text.splitlines() if line.split(" ")[1] == "-"]


def mails_to(project: Project, to: str) -> list[str]:
    run(config_of(project), project.spool)
    found = []
    for d in outbox(project.data_dir):
        if d.recipient == to:
            body = d.message.get_body(("plain",))
            assert body is not None
            found.append(f"{d.subject}\n{body.get_content()}")
    return found


def test_added_members_get_a_welcome_with_a_link_to_leave(project: Project) -> None:
    result = owners.add_members(
        config_of(project), project.spool, "volunteers", ["zoe@Example.net", "Ann@EXAMPLE.com"], ADA
    )
    assert result == {"zoe@example.net": "added", "Ann@example.com": "already a member"}
    assert "zoe@example.net" in config_of(project).lists["volunteers"].members
    [welcome] = mails_to(project, "zoe@example.net")
    assert welcome.startswith("Welcome to volunteers")
    link = re.search(
        r"https://lists.example.org/unsubscribe/volunteers\?a=zoe@example.net&i=(\d+)&t=\S+",
        welcome,
    )
    assert link is not None
    with State.open(project.data_dir) as state:
        assert (
            int(link.group(1)) >= state.membership_changed_at("volunteers", "zoe@example.net") > 0
        )
    assert log_lines(project) == [
        "volunteers: added member zoe@example.net by ada@example.com (api)"
    ]


def test_invited_members_confirm_first(project: Project) -> None:
    result = owners.add_members(
        config_of(project), project.spool, "volunteers", ["zoe@example.net"], ADA, invite=True
    )
    assert result == {"zoe@example.net": "invited"}
    assert "zoe@example.net" not in config_of(project).lists["volunteers"].members
    [invitation] = mails_to(project, "zoe@example.net")
    assert "ada@example.com invites you to the list volunteers" in invitation
    assert re.search(
        r"https://lists.example.org/lists/volunteers/confirm\?address=zoe%40example.net&token=\S+",
        invitation,
    )
    assert log_lines(project) == ["volunteers: invited zoe@example.net by ada@example.com (api)"]


def test_removing_members_spares_the_administrator(project: Project) -> None:
    config = config_of(project)
    result = owners.remove_members(
        config, project.spool, "volunteers", ["BOB@example.net", "nobody@example.net"], ADA
    )
    assert result == {"BOB@example.net": "removed", "nobody@example.net": "not a member"}
    with pytest.raises(owners.OwnerError, match=r"coordinator@example\.org administers volunteers"):
        owners.remove_members(config, project.spool, "volunteers", ["Coordinator@example.org"], ADA)
    assert "coordinator@example.org" in config_of(project).lists["volunteers"].members
    assert log_lines(project) == [
        "volunteers: removed member BOB@example.net by ada@example.com (api)"
    ]


def test_settings_change_in_place_and_are_logged(project: Project) -> None:
    project.write_config(
        project.config_path.read_text().replace(
            "[lists.board]", "# The board decides.\n[lists.board]"
        )
    )
    before = project.config_path.read_text()
    changed = owners.update_settings(
        config_of(project),
        project.spool,
        "volunteers",
        {"footer": "Bye from {list}", "posters": "anyone", "description": "", "header": "Hello"},
        owners.Actor("root", "shell"),
    )
    assert changed == ["footer", "posters", "description", "header"]
    text = project.config_path.read_text()
    assert "# The board decides.\n[lists.board]" in text
    volunteers = config_of(project).lists["volunteers"]
    assert (volunteers.footer, volunteers.posters, volunteers.description, volunteers.header) == (
        "Bye from {list}",
        "anyone",
        "",
        "Hello",
    )
    # The new keys sit with the list's own, not under the comment introducing board.
    assert text.index('header = "Hello"') < text.index("# The board decides.")
    assert "volunteers: set footer = 'Bye from {list}' by root (shell)" in log_lines(project)
    # posters and header added, description removed; nothing else moved
    assert len(text.splitlines()) == len(before.splitlines()) + 1
    assert (
        owners.update_settings(
            config_of(project), project.spool, "volunteers", {"header": "Hello"}, ADA
        )
        == []
    )


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"posters": "everyone"}, "posters: expected"),
        ({"moderators": "ann@example.com"}, "moderators: expected a list"),
        ({"moderators": ["ann@example.com", "not an address"]}, "is not a plain address"),
        ({"description": "two\nlines"}, "line breaks"),
        ({"subject_prefix": "[x]\u2028Bcc: x@y"}, "line breaks"),
        ({"footer": "x" * 4001}, "longer than 4000"),
        ({"footer": "{nonsense}"}, "invalid"),
        ({"members": ["x@example.com"]}, "not a setting"),
        ({"moderators": ["ann@example.com"]}, "coordinator@example.org administers the list"),
    ],
)
def test_bad_settings_change_nothing(
    project: Project, changes: dict[str, object], error: str
) -> None:
    before = project.config_path.read_text()
    with pytest.raises((owners.OwnerError, listedit.ListEditError), match=error):
        owners.update_settings(
            config_of(project),
            project.spool,
            "volunteers",
            changes,
            ADA,
            keep_moderator="coordinator@example.org",
        )
    assert project.config_path.read_text() == before


def test_reordering_moderators_hands_nothing_over(project: Project) -> None:
    """On a list written by hand the first moderator administers it; reordering the
    moderators keeps that administrator."""
    config = config_of(project)
    owners.update_settings(
        config,
        project.spool,
        "volunteers",
        {"moderators": ["ann@example.com", "coordinator@example.org"]},
        ADA,
    )
    mlist = config_of(project).lists["volunteers"]
    assert owners.administrator(config, project.spool, mlist) == "coordinator@example.org"


def test_a_created_list_gets_its_own_place_and_deleting_it_restores_the_file(
    tmp_path: Path,
) -> None:
    """In the example file a new list goes after board, a blank line on either side, and
    the comment introducing the dynamic lists stays with them; deleting it gives back the
    file byte for byte."""
    project = Project(tmp_path)
    example_site(tmp_path)
    original = project.config_path.read_text()
    actor = owners.Actor("root", "shell")
    owners.create_list(
        config_of(project), project.spool, "club", "ada@example.com", actor, "Our club"
    )
    text = project.config_path.read_text()
    board_end = 'subject_prefix = "[board]"\n'
    assert (
        board_end + '\n[lists.club]\ndescription = "Our club"\nmoderators = ["ada@example.com"]\n'
        'posters = "members"\nmembers = ["ada@example.com"]\n\n# Dynamic lists:'
    ) in text
    assert tomllib.loads(text)["dynamic"] == tomllib.loads(original)["dynamic"]
    with pytest.raises(listedit.ListExists):
        owners.create_list(config_of(project), project.spool, "CLUB", "eve@example.com", actor)
    owners.delete_list(config_of(project), project.spool, "club", actor)
    assert project.config_path.read_text() == original
    assert log_lines(project) == [
        "club: created the list, administered by ada@example.com by root (shell)",
        "club: deleted the list by root (shell)",
    ]
    with pytest.raises(listedit.NoSuchList):
        owners.delete_list(config_of(project), project.spool, "club", actor)


@pytest.mark.parametrize(
    ("name", "error"),
    [
        ("reject+x", "reserved"),
        ("x-owner", "reserved"),
        ("a..b", "local part"),
        ("admin", "used by the site"),
    ],
)
def test_list_names_that_cannot_be_lists(project: Project, name: str, error: str) -> None:
    with pytest.raises(listedit.ListEditError, match=error):
        owners.create_list(config_of(project), project.spool, name, "ada@example.com", ADA)


def test_a_file_without_lists_gets_the_first_one_before_the_dynamic_rules(tmp_path: Path) -> None:
    project = Project(tmp_path)
    example_site(tmp_path)
    text = project.config_path.read_text()
    start, end = text.index("[lists.volunteers]"), text.index("# Dynamic lists:")
    project.write_config(text[:start] + text[end:])
    shutil.copy(EXAMPLES / "lookup-command", tmp_path / "lookup-command")
    owners.create_list(config_of(project), project.spool, "club", "ada@example.com", ADA)
    new = project.config_path.read_text()
    assert new.index("[lists.club]") < new.index("# Dynamic lists:") < new.index("[[dynamic]]")
    assert "\n\n[lists.club]\n" in new


# -- from the shell --------------------------------------------------------------


def test_lists_and_members_from_the_shell(project: Project, routemail_cli: RunCli) -> None:
    """`routemail lists create|delete` and `routemail members add|remove`, as the user
    running them; bad input is one line saying what is wrong."""
    created = routemail_cli(
        "lists", "create", "club", "--admin", "Ada@Example.com", "--description", "Our club"
    )
    assert created.returncode == 0, created.stderr
    assert created.stdout == "created club@lists.example.org, administered by Ada@example.com\n"
    assert "club" in routemail_cli("lists", "--json").stdout
    added = routemail_cli("members", "add", "club", "zoe@example.net", "ada@example.com", "--json")
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout) == {
        "list": "club",
        "members": {"zoe@example.net": "added", "ada@example.com": "already a member"},
    }
    assert [d.subject for d in outbox(project.data_dir) if d.recipient == "zoe@example.net"] == [
        "Welcome to club"
    ]
    removed = routemail_cli("members", "remove", "club", "zoe@example.net")
    assert removed.stdout == "zoe@example.net: removed\n"
    assert routemail_cli("members", "club@lists.example.org", "--json").returncode == 0
    for args, error in (
        (("lists", "create", "club", "--admin", "ada@example.com"), "already exists"),
        (("lists", "create", "x-owner", "--admin", "ada@example.com"), "reserved"),
        (("lists", "create", "new", "--admin", "not an address"), "not a plain address"),
        (("members", "add", "nosuch", "zoe@example.net"), "no list named 'nosuch'"),
        (("members", "add", "club", "zoe@@example.net"), "not a plain address"),
        (("members", "remove", "club", "ada@example.com"), "administers club"),
        (("lists", "delete", "nosuch"), "no list named 'nosuch'"),
    ):
        failed = routemail_cli(*args)
        assert failed.returncode != 0 and error in failed.stderr, (args, failed.stderr)
        assert "Traceback" not in failed.stderr
    assert routemail_cli("lists", "delete", "club").stdout == "deleted club\n"
    user = getpass.getuser()
    assert (
        f"club: created the list, administered by Ada@example.com by shell:{user} (shell)"
        in log_lines(project)
    )
    assert f"club: deleted the list by shell:{user} (shell)" in log_lines(project)


def test_held_from_the_shell(project: Project, routemail_cli: RunCli) -> None:
    """`routemail held` lists what waits, with commands that work when pasted;
    `routemail reject ID LIST --reason` tells the author."""
    raw = (
        b"From: eve@outside.example\nTo: volunteers@lists.example.org\nSubject: Hi\n"
        b"Message-ID: <held-98@outside.example>\n\nHi\n"
    )
    msg_id = project.spool.receive(raw, ["volunteers@lists.example.org"], PASSING).id
    assert msg_id.startswith("-")  # ids starting with '-' must keep working
    assert routemail_cli("run").returncode == 0
    shown = routemail_cli("held")
    assert shown.returncode == 0, shown.stderr
    assert f"{msg_id}  volunteers  from eve@outside.example" in shown.stdout
    [item] = json.loads(routemail_cli("held", "volunteers", "--json").stdout)["held"]
    assert (item["id"], item["list"], item["subject"]) == (msg_id, "volunteers", "Hi")
    assert routemail_cli("held", "board").stdout == "nothing is held for board\n"
    printed = re.search(r"reject:  (routemail reject .*)", shown.stdout)
    assert printed is not None
    words = [w if w != "WHY" else "Not for this list" for w in shlex.split(printed.group(1))]
    rejected = routemail_cli(*words[1:])
    assert rejected.returncode == 0, rejected.stderr
    notices = [d.message for d in outbox(project.data_dir) if "rejected" in d.subject]
    [notice] = notices
    body = notice.get_body(("plain",))
    assert body is not None and "Not for this list" in body.get_content()
    assert routemail_cli("held").stdout == "nothing is held\n"
