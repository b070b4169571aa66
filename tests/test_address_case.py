"""Addresses are one address whatever their case: membership, posting rights, one
copy across lists, resumed runs, suppression, unsubscribe and `routemail check`.
Mail goes to the spelling written in the list."""

from __future__ import annotations

import json
from pathlib import Path

from routemail import config as configuration
from routemail import listedit, sidecar
from routemail.config import Bounces
from routemail.state import MIGRATIONS, State
from routemail.suppression import Suppression
from tests.conftest import BASE_CONFIG, Project, Receiver
from tests.mailbox import outbox, recipients
from tests.test_api import ADMIN, PASSWORD, api, call, new_list, subscribed
from tests.test_routing_cli import PASSING, msg_id, routemail, run

# The base project's [site] and [receiver], and two lists of our own.
SITE = (
    BASE_CONFIG.split("[lists.")[0]
    + """\
[delivery]
rate = 1000

[lists.choir]
moderators = ["coordinator@example.org"]
members = ["Bob@Example.com", "ann@example.com"]

[lists.band]
moderators = ["coordinator@example.org"]
posters = "anyone"
members = ["bob@example.com", "cy@example.net"]
"""
)

CHOIR = "choir@lists.example.org"
BAND = "band@lists.example.org"

__all__ = ["api"]  # the fixture, imported for use here


def queue(project: Project, sender: str, message_id: str, *to: str) -> str:
    path = project.root / "post.eml"
    path.write_bytes(
        f"From: {sender}\nTo: {', '.join(to)}\nSubject: Rehearsal\nMessage-ID: {message_id}\n\n"
        "Thursday at eight.\n".encode()
    )
    args = [a for t in to for a in ("--to", t)]
    result = routemail(project, "inject", str(path), *args, "--verdicts", PASSING, "--no-run")
    assert result.exit_code == 0, result.output
    return msg_id(message_id)


def test_one_copy_to_an_address_on_two_lists_in_two_spellings(project: Project) -> None:
    """Bob@Example.com on choir and bob@example.com on band: a post to both lists
    reaches him once, at the spelling of the list that delivered first (the
    domain of an address is kept lower-cased, as ever)."""
    project.write_config(SITE)
    queue(project, "ann@example.com", "<both-1@example.com>", CHOIR, BAND)
    run(project)
    got = recipients(project.data_dir)
    assert got["Bob@example.com"] == 1
    assert got["bob@example.com"] == 0
    assert got == {"Bob@example.com": 1, "ann@example.com": 1, "cy@example.net": 1}


def test_a_resumed_run_does_not_resend_to_another_spelling(project: Project) -> None:
    """A sidecar written before this rule says S bob@example.com; the list says
    Bob@Example.com: he already has his copy."""
    project.write_config(SITE)
    qid = queue(project, "ann@example.com", "<resume-1@example.com>", CHOIR)
    data = project.data_dir / "maillist" / "QUEUE" / f"{qid}.data"
    with data.open("a") as f:
        f.write(sidecar.event(sidecar.SENT, "bob@example.com").format())
    run(project)
    assert recipients(project.data_dir) == {"ann@example.com": 1}


def test_a_member_posting_in_another_case_is_delivered_not_held(project: Project) -> None:
    """choir is members-only; BOB@EXAMPLE.COM is its member Bob@Example.com."""
    project.write_config(SITE)
    qid = queue(project, "Bob <BOB@EXAMPLE.COM>", "<member-1@example.com>", CHOIR)
    run(project)
    assert project.spool.history(qid).held_lists == set()
    assert recipients(project.data_dir) == {"Bob@example.com": 1, "ann@example.com": 1}
    assert not [d for d in outbox(project.data_dir) if "Moderation" in d.subject]


def test_suppression_in_another_case_stops_delivery(project: Project) -> None:
    project.write_config(SITE)
    added = routemail(project, "suppression", "add", "BOB@EXAMPLE.COM")
    assert added.exit_code == 0, added.output
    qid = queue(project, "cy@example.net", "<supp-1@example.net>", BAND)
    run(project)
    assert recipients(project.data_dir) == {"cy@example.net": 1}
    assert project.spool.history(qid).has(sidecar.SKIPPED, "bob@example.com")
    # Added again in another spelling, the entry stands alone; a third spelling removes it.
    assert routemail(project, "suppression", "add", "bob@example.com").exit_code == 0
    assert [e["address"] for e in suppressed(project)] == ["BOB@example.com"]
    removed = routemail(project, "suppression", "remove", "Bob@example.COM")
    assert removed.exit_code == 0, removed.output
    assert suppressed(project) == []


def suppressed(project: Project) -> list[dict[str, str]]:
    listed = json.loads(routemail(project, "suppression", "list", "--json").stdout)
    assert isinstance(listed, list)
    return listed


def test_unsubscribe_by_mail_in_another_case_removes_the_member(project: Project) -> None:
    project.write_config(SITE)
    queue(
        project, "bob@EXAMPLE.com", "<leave-1@example.com>", "choir-unsubscribe@lists.example.org"
    )
    run(project)
    members = configuration.load(project.config_path).lists["choir"].members
    assert members == ("ann@example.com",)


def test_check_names_two_members_that_differ_only_in_case(project: Project) -> None:
    text = SITE.replace('"cy@example.net"]', '"cy@example.net",\n  "Cy@Example.NET"]')
    project.write_config(text)
    result = routemail(project, "check", "--json")
    assert result.exit_code == 2, result.output
    [problem] = json.loads(result.stdout)["problems"]
    lines = text.splitlines()
    first = 1 + next(i for i, line in enumerate(lines) if '"cy@example.net"' in line)
    second = 1 + next(i for i, line in enumerate(lines) if "Cy@Example.NET" in line)
    assert problem["line"] == second
    assert problem["key"] == "lists.band.members"
    assert (
        f"cy@example.net (line {first}) and Cy@example.net (line {second})" in (problem["message"])
    )
    # Routing does not depend on check: the list still loads, and mails cy once.
    band = configuration.load(project.config_path).lists["band"]
    assert band.members[-2:] == ("cy@example.net", "Cy@example.net")
    queue(project, "cy@example.net", "<twins-1@example.net>", BAND)
    run(project)
    assert recipients(project.data_dir) == {"bob@example.com": 1, "cy@example.net": 1}


# -- the API, under gunicorn --------------------------------------------------------


def test_api_accounts_and_guesses_ignore_case(api: Receiver, project: Project) -> None:
    """An administrator signs in in any spelling; wrong guesses in many spellings of
    one address share that address's one allowance."""
    new_list(api.url, project)
    local, domain = ADMIN.split("@")
    shouted = f"{local.upper()}@{domain}"
    assert call(api.url, "GET", "/lists/club/members", auth=(shouted, PASSWORD)).status == 200
    owner = "coordinator@example.org"
    spellings = [
        "".join(c.upper() if n >> i & 1 else c for i, c in enumerate(owner)) for n in range(12)
    ]
    statuses = [
        call(api.url, "GET", "/lists/volunteers/members", auth=(s, "wrong")).status
        for s in spellings
    ]
    assert statuses == [401] * 10 + [429] * 2


def test_api_members_ignore_case(api: Receiver, project: Project) -> None:
    """Asking again in another spelling is asking again; removing in a third spelling
    removes the member as written; the administrator stays in any spelling."""
    new_list(api.url, project)
    auth = (ADMIN, PASSWORD)
    subscribed(api.url, project, "club", "Zoe@example.net")
    again = call(api.url, "POST", "/lists/club/subscriptions", {"address": "zoe@example.NET"})
    assert again.status == 429  # one allowance of confirmation mail per address
    members = call(api.url, "GET", "/lists/club/members", auth=auth).body["members"]
    assert members == [ADMIN, "Zoe@example.net"]
    shouted = ADMIN.upper().split("@")[0] + "@example.com"
    assert call(api.url, "DELETE", f"/lists/club/members/{shouted}", auth=auth).status == 409
    done = call(api.url, "DELETE", "/lists/club/members/ZOE@example.net", auth=auth)
    assert done.status == 200, done.body
    assert call(api.url, "GET", "/lists/club/members", auth=auth).body["members"] == [ADMIN]


def test_lists_toml_edits_ignore_case(project: Project) -> None:
    """Adding a member in another spelling adds nothing; removing removes the entry as
    it was written."""
    project.write_config(SITE)
    assert listedit.add_member(project.config_path, "choir", "bob@example.com") is False
    assert listedit.remove_member(project.config_path, "choir", "BOB@example.com") is True
    assert configuration.load(project.config_path).lists["choir"].members == ("ann@example.com",)


def test_existing_state_is_migrated_and_case_free_lookups_use_an_index(tmp_path: Path) -> None:
    """A state database of before (version 3, a row in capitals) gains the NOCASE
    indexes; the suppression check finds the row through one, not by a scan."""
    state = State.open(tmp_path)
    for index in NOCASE_INDEXES:
        state.db.execute(f"DROP INDEX {index}")
    state.db.execute("PRAGMA user_version = 3")
    with state.transaction() as db:
        db.execute(
            "INSERT INTO suppressions (address, list, reason, detail, created) "
            "VALUES ('BOB@EXAMPLE.COM', '', 'bounce', '', 0)"
        )
    state.close()
    state = State.open(tmp_path)
    assert state.version == len(MIGRATIONS)
    assert Suppression(state, Bounces()).reason("bob@example.com", "band") == "bounce (all lists)"
    plan = " ".join(
        str(row[-1])
        for row in state.db.execute(
            "EXPLAIN QUERY PLAN SELECT reason FROM suppressions "
            "WHERE address = ? COLLATE NOCASE AND list IN ('', ?)",
            ("bob@example.com", "band"),
        )
    )
    assert "suppressions_address_nocase" in plan, plan
    state.close()


NOCASE_INDEXES = (
    "suppressions_address_nocase",
    "bounce_scores_address_nocase",
    "accounts_email_nocase",
    "tokens_owner_nocase",
    "membership_changes_nocase",
)
