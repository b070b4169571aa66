"""The moderation pages at the Flask level: sessions, CSRF, sign-in limits, who may
see and decide what, and what a hostile held message shows."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from mailrecv.app import create_app
from mailrecv.moderation.web import CSP, SESSION_COOKIE
from routemail import passwords, run, sidecar, websessions
from routemail.config import load
from routemail.state import State
from tests.conftest import SECRET, Project
from tests.mailbox import outbox
from tests.test_preview import ACTIVE, HOSTILE_HTML

MODERATOR, CHAIR = "coordinator@example.org", "chair@example.org"
PASSWORD = "a long enough password"
VOLUNTEERS = "volunteers@lists.example.org"
PASSING = dict.fromkeys(("dkim", "dmarc", "spf", "spam", "virus"), "PASS")
HTTPS = "https://lists.example.org"
# What the pages themselves never hold (their own forms and style sheet aside).
PAGE_ACTIVE = re.compile(
    r"(?i)<\s*(script|img|iframe|object|svg|base|video)\b|\bon[a-z]+\s*=|javascript:|data:"
    r"|url\(|127\.0\.0\.1|\bstyle\s*="
)


class Clock:
    """A clock the test moves on."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@dataclass
class Site:
    app: Flask
    clock: Clock
    project: Project

    def client(self) -> FlaskClient:
        return self.app.test_client()


def make_account(data_dir: Path, email: str, password: str = PASSWORD) -> None:
    with State.open(data_dir) as state:
        state.put_pending_account(email)
        with state.transaction() as db:
            assert state.verify_account(db, email, passwords.hash_password(password))


def hold(project: Project, sender: str, subject: str, body: str, ctype: str = "text/plain") -> str:
    """A post from a non-member, received and routed: held for volunteers. Its id."""
    raw = (
        f"From: {sender}\r\nTo: {VOLUNTEERS}\r\nSubject: {subject}\r\n"
        f"Message-ID: <{subject.replace(' ', '-')}@example.net>\r\n"
        f"Content-Type: {ctype}; charset=utf-8\r\n\r\n{body}"
    ).encode()
    msg_id = project.spool.receive(raw, [VOLUNTEERS], PASSING).id
    run.run(load(project.config_path), project.spool)
    assert "volunteers" in project.spool.history(msg_id).held_lists
    return msg_id


@pytest.fixture
def site(project: Project) -> Iterator[Site]:
    """The app over the test lists.toml with a clock the test moves, and the moderator
    account of volunteers (also the list's owner: its first moderator)."""
    clock = Clock()
    app = create_app(
        {
            "config_path": project.config_path,
            "data_dir": project.data_dir,
            "secret": SECRET,
            "clock": clock,
            "on_receipt": "none",
        }
    )
    make_account(project.data_dir, MODERATOR)
    yield Site(app, clock, project)


def form_csrf(page: TestResponse) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page.get_data(as_text=True))
    assert found is not None, page.get_data(as_text=True)
    return found.group(1)


def sign_in(client: FlaskClient, who: str = MODERATOR, password: str = PASSWORD) -> TestResponse:
    page = client.get("/moderate/signin", base_url=HTTPS)
    return client.post(
        "/moderate/signin",
        base_url=HTTPS,
        data={"email": who, "password": password, "csrf": form_csrf(page), "next": "/moderate/"},
    )


def test_sign_in_sets_a_strict_session_cookie(site: Site) -> None:
    """The right password opens a session whose cookie no script, plain HTTP or other
    site's form can use; the lists page then answers."""
    client = site.client()
    answer = sign_in(client)
    assert answer.status_code == 303
    cookie = next(c for c in answer.headers.getlist("Set-Cookie") if c.startswith(SESSION_COOKIE))
    assert "HttpOnly" in cookie and "Secure" in cookie and "SameSite=Lax" in cookie
    assert "Path=/moderate" in cookie
    page = client.get("/moderate/lists", base_url=HTTPS)
    assert page.status_code == 200
    assert "volunteers" in page.get_data(as_text=True)


def test_every_page_forbids_remote_loads_framing_and_caching(site: Site) -> None:
    """Signed in or not, each page carries the strict headers."""
    client = site.client()
    pages = [client.get("/moderate/signin", base_url=HTTPS)]
    sign_in(client)
    pages += [client.get(p, base_url=HTTPS) for p in ("/moderate/lists", "/moderate/nowhere")]
    pages.append(client.put("/moderate/signin", base_url=HTTPS))  # 405, from the app
    assert [p.status_code for p in pages] == [200, 200, 404, 405]
    for page in pages:
        assert page.headers["Content-Security-Policy"] == CSP
        assert "default-src 'none'" in CSP and "frame-ancestors 'none'" in CSP
        assert "script-src" not in CSP  # default-src 'none': no script at all
        assert page.headers["X-Frame-Options"] == "DENY"
        assert page.headers["Cache-Control"] == "no-store"
        assert page.headers["Referrer-Policy"] == "no-referrer"


def test_wrong_password_and_unknown_account(site: Site) -> None:
    """A wrong password, an unknown address and an unverified account all get the same
    answer, and no session."""
    make_account(site.project.data_dir, "other@example.org")
    with State.open(site.project.data_dir) as state:
        state.put_pending_account("pending@example.org")
    for who, password in [
        (MODERATOR, "not the password"),
        ("nobody@example.org", PASSWORD),
        ("pending@example.org", ""),
    ]:
        client = site.client()
        answer = sign_in(client, who, password or "anything at all")
        assert answer.status_code == 401
        assert "Wrong address or password." in answer.get_data(as_text=True)
        assert not any(c.startswith(SESSION_COOKIE) for c in answer.headers.getlist("Set-Cookie"))
        assert client.get("/moderate/lists", base_url=HTTPS).status_code == 303


def test_sign_in_attempts_are_limited(site: Site) -> None:
    """After guess_limit wrong passwords from one client, even the right one is refused
    until the window passes."""
    client = site.client()
    limit = load(site.project.config_path).api.guess_limit
    for _ in range(limit):
        assert sign_in(client, password="wrong password!").status_code == 401
    refused = sign_in(client)
    assert refused.status_code == 429
    assert "Too many failed attempts" in refused.get_data(as_text=True)
    site.clock.now += load(site.project.config_path).api.window_seconds + 1
    assert sign_in(client).status_code == 303


def test_forms_without_the_csrf_token_are_refused(site: Site) -> None:
    """A form posted without its token, or with another session's, changes nothing."""
    msg_id = hold(site.project, "eve@outside.example", "Please approve", "hello")
    client = site.client()
    assert (
        client.post(
            "/moderate/signin", base_url=HTTPS, data={"email": MODERATOR, "password": PASSWORD}
        ).status_code
        == 403
    )
    sign_in(client)
    other = site.client()
    sign_in(other)
    other_csrf = form_csrf(other.get("/moderate/lists", base_url=HTTPS))
    path = f"/moderate/lists/volunteers/held/{msg_id}"
    for data in ({"action": "approve"}, {"action": "approve", "csrf": other_csrf}):
        answer = client.post(path, base_url=HTTPS, data=data)
        assert answer.status_code == 403
        assert "did not come from this site" in answer.get_data(as_text=True)
    assert "volunteers" in site.project.spool.history(msg_id).held_lists
    assert client.post("/moderate/signout", base_url=HTTPS).status_code == 403
    assert client.get("/moderate/lists", base_url=HTTPS).status_code == 200


def test_sessions_expire_when_idle_or_old_and_end_on_sign_out(site: Site) -> None:
    """An idle session ends; an active one ends at its maximum age; signing out ends it
    on the server, so the old cookie opens nothing."""
    client = site.client()
    sign_in(client)
    site.clock.now += websessions.IDLE_SECONDS + 1
    answer = client.get("/moderate/lists", base_url=HTTPS)
    assert answer.status_code == 303
    assert answer.headers["Location"].startswith("/moderate/signin?next=%2Fmoderate%2Flists")

    sign_in(client)
    for _ in range(int(websessions.MAX_SECONDS / websessions.IDLE_SECONDS) + 1):
        site.clock.now += websessions.IDLE_SECONDS - 60
        client.get("/moderate/lists", base_url=HTTPS)
    assert client.get("/moderate/lists", base_url=HTTPS).status_code == 303

    sign_in(client)
    cookie = client.get_cookie(SESSION_COOKIE, domain="lists.example.org", path="/moderate")
    assert cookie is not None
    page = client.get("/moderate/lists", base_url=HTTPS)
    assert (
        client.post("/moderate/signout", base_url=HTTPS, data={"csrf": form_csrf(page)}).status_code
        == 303
    )
    replay = site.client()
    replay.set_cookie(SESSION_COOKIE, cookie.value, path="/moderate", domain="lists.example.org")
    assert replay.get("/moderate/lists", base_url=HTTPS).status_code == 303


def test_new_password_ends_sessions(site: Site) -> None:
    """Changing the account's password signs out every session of it."""
    client = site.client()
    sign_in(client)
    with State.open(site.project.data_dir) as state, state.transaction() as db:
        assert state.set_password(db, MODERATOR, passwords.hash_password("another password"))
    assert client.get("/moderate/lists", base_url=HTTPS).status_code == 303


def test_another_lists_message_is_out_of_reach(site: Site) -> None:
    """The moderator of board sees neither volunteers' page nor its held message, and
    cannot decide on it; a made-up id is simply not found."""
    msg_id = hold(site.project, "eve@outside.example", "For volunteers only", "hello")
    make_account(site.project.data_dir, CHAIR)
    client = site.client()
    sign_in(client, CHAIR)
    page = client.get("/moderate/lists", base_url=HTTPS)
    assert "volunteers" not in page.get_data(as_text=True)
    csrf = form_csrf(page)
    assert client.get("/moderate/lists/volunteers", base_url=HTTPS).status_code == 403
    held_path = f"/moderate/lists/volunteers/held/{msg_id}"
    assert client.get(held_path, base_url=HTTPS).status_code == 403
    answer = client.post(held_path, base_url=HTTPS, data={"action": "approve", "csrf": csrf})
    assert answer.status_code == 403
    # Through the list chair moderates, the message is not there.
    assert client.get(f"/moderate/lists/board/held/{msg_id}", base_url=HTTPS).status_code == 404
    for bad in ("../../lists.toml", "x" * 22, "%2e%2e%2fetc"):
        assert client.get(f"/moderate/lists/board/held/{bad}", base_url=HTTPS).status_code == 404
    assert "volunteers" in site.project.spool.history(msg_id).held_lists


def test_decisions_and_deciding_twice(site: Site) -> None:
    """Approve, reject with a reason and discard each write their line naming the
    moderator and the web; a second decision answers 409 with the first."""
    ids = [hold(site.project, "eve@outside.example", f"Post {n}", "hello") for n in range(3)]
    client = site.client()
    sign_in(client)
    csrf = form_csrf(client.get("/moderate/lists", base_url=HTTPS))
    base = "/moderate/lists/volunteers/held/"
    no_reason = client.post(base + ids[1], base_url=HTTPS, data={"action": "reject", "csrf": csrf})
    assert no_reason.status_code == 400
    for msg_id, data in zip(
        ids,
        [{"action": "approve"}, {"action": "reject", "reason": "Off topic"}, {"action": "discard"}],
        strict=True,
    ):
        answer = client.post(base + msg_id, base_url=HTTPS, data={**data, "csrf": csrf})
        assert answer.status_code == 303
        assert (
            answer.headers["Location"]
            == f"/moderate/lists/volunteers?decided={msg_id}.{data['action']}"
        )
    codes = [site.project.spool.history(i).events[-1] for i in ids]
    assert [e.code for e in codes] == [sidecar.APPROVED, sidecar.REJECTED, sidecar.DROPPED]
    assert all(MODERATOR in e.format() and " web" in e.format() for e in codes)
    assert "Off topic" in codes[1].format()
    again = client.post(base + ids[0], base_url=HTTPS, data={"action": "discard", "csrf": csrf})
    assert again.status_code == 409
    assert f"approved for volunteers by {MODERATOR} (web)" in again.get_data(as_text=True)
    page = client.get("/moderate/lists/volunteers?decided=" + ids[0] + ".approve", base_url=HTTPS)
    assert f"Message {ids[0]} approved." in page.get_data(as_text=True)
    assert "Nothing is held for volunteers." in page.get_data(as_text=True)


def test_hostile_message_renders_inert(site: Site) -> None:
    """A held HTML message's page holds no script, handler, remote URL or active link:
    the preview is sanitised and shown as text."""
    msg_id = hold(
        site.project,
        "Mallory <mallory@outside.example>",
        "<script>alert(1)</script>",
        HOSTILE_HTML,
        ctype="text/html",
    )
    client = site.client()
    sign_in(client)
    page = client.get(f"/moderate/lists/volunteers/held/{msg_id}", base_url=HTTPS)
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert PAGE_ACTIVE.search(html) is None, PAGE_ACTIVE.search(html)
    preview = re.search(r'<div class="html-preview">(.*?)</div>\n</details>', html, re.S)
    assert preview is not None
    assert ACTIVE.search(preview.group(1)) is None, preview.group(1)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html  # the subject, escaped
    assert "Dear moderator," in html
    assert '<a href="https://example.com/ok" rel="noopener noreferrer nofollow">' in html
    listing = client.get("/moderate/lists/volunteers", base_url=HTTPS).get_data(as_text=True)
    assert PAGE_ACTIVE.search(listing) is None


def test_next_never_leaves_the_site(site: Site) -> None:
    """After signing in, only a path of these pages is followed."""
    client = site.client()
    for target in ("https://evil.example/", "//evil.example/x", "/moderate/../api", "/elsewhere"):
        page = client.get("/moderate/signin", base_url=HTTPS)
        answer = client.post(
            "/moderate/signin",
            base_url=HTTPS,
            data={
                "email": MODERATOR,
                "password": PASSWORD,
                "csrf": form_csrf(page),
                "next": target,
            },
        )
        assert answer.headers["Location"] == "/moderate/"


def test_owner_finds_adds_and_removes_members(site: Site) -> None:
    """The owner searches the members, adds two (each welcomed) and removes one; each
    change is in lists.toml and in the log, made by the owner through the web."""
    client = site.client()
    sign_in(client)
    page = client.get("/moderate/lists/volunteers/members?q=EXAMPLE.NET", base_url=HTTPS)
    text = page.get_data(as_text=True)
    assert "bob@example.net" in text and "ann@example.com" not in text
    csrf = form_csrf(page)
    added = client.post(
        "/moderate/lists/volunteers/members",
        base_url=HTTPS,
        data={"addresses": "zoe@example.com\r\nyan@example.com, bob@example.net", "csrf": csrf},
    )
    assert added.status_code == 200
    note = added.get_data(as_text=True)
    assert (
        "zoe@example.com: added; yan@example.com: added; bob@example.net: already a member" in note
    )
    removed = client.post(
        "/moderate/lists/volunteers/members/remove",
        base_url=HTTPS,
        data={"address": "bob@example.net", "csrf": csrf},
    )
    assert removed.status_code == 200
    assert "bob@example.net: removed" in removed.get_data(as_text=True)
    members = load(site.project.config_path).lists["volunteers"].members
    assert members == (
        "ann@example.com",
        "coordinator@example.org",
        "zoe@example.com",
        "yan@example.com",
    )
    log = "".join(p.read_text() for p in (site.project.spool.root / "log").iterdir())
    assert f"volunteers: added member zoe@example.com by {MODERATOR} (web)" in log
    assert f"volunteers: removed member bob@example.net by {MODERATOR} (web)" in log
    invited = client.post(
        "/moderate/lists/volunteers/members",
        base_url=HTTPS,
        data={"addresses": "kim@example.net", "invite": "1", "csrf": csrf},
    )
    assert "kim@example.net: invited" in invited.get_data(as_text=True)
    assert "kim@example.net" not in load(site.project.config_path).lists["volunteers"].members
    log = "".join(p.read_text() for p in (site.project.spool.root / "log").iterdir())
    assert f"volunteers: invited kim@example.net by {MODERATOR} (web)" in log
    bad = client.post(
        "/moderate/lists/volunteers/members",
        base_url=HTTPS,
        data={"addresses": "not an address", "csrf": csrf},
    )
    assert bad.status_code == 400
    assert "is not a plain address" in bad.get_data(as_text=True)
    owner_self = client.post(
        "/moderate/lists/volunteers/members/remove",
        base_url=HTTPS,
        data={"address": MODERATOR, "csrf": csrf},
    )
    assert owner_self.status_code == 400


def test_owner_changes_settings(site: Site) -> None:
    """The settings form changes what it shows, through the locked lists.toml edit; a
    mistake shows the form again with what to fix, and changes nothing."""
    client = site.client()
    sign_in(client)
    page = client.get("/moderate/lists/volunteers/settings", base_url=HTTPS)
    assert "[volunteers]" in page.get_data(as_text=True)
    csrf = form_csrf(page)
    form = {
        "csrf": csrf,
        "description": "Everyone who helps",
        "subject_prefix": "[vol]",
        "header": "",
        "footer": "Sent to {recipient}.\r\nLeave: {unsubscribe_url}",
        "posters": "addresses",
        "posters_addresses": "ann@example.com",
        "moderators": f"{MODERATOR}\r\nhelper@example.org",
    }
    saved = client.post("/moderate/lists/volunteers/settings", base_url=HTTPS, data=form)
    assert saved.status_code == 303
    note = client.get(saved.headers["Location"], base_url=HTTPS).get_data(as_text=True)
    assert "Saved: description, subject_prefix, footer, posters, moderators." in note
    forged = "/moderate/lists/volunteers/settings?saved=Your+password+expired"
    assert "expired" not in client.get(forged, base_url=HTTPS).get_data(as_text=True)
    mlist = load(site.project.config_path).lists["volunteers"]
    assert mlist.description == "Everyone who helps"
    assert mlist.subject_prefix == "[vol]"
    assert mlist.footer == "Sent to {recipient}.\nLeave: {unsubscribe_url}"
    assert mlist.posters == ("ann@example.com",)
    assert mlist.moderators == (MODERATOR, "helper@example.org")
    log = "".join(p.read_text() for p in (site.project.spool.root / "log").iterdir())
    assert f"volunteers: set description = 'Everyone who helps' by {MODERATOR} (web)" in log

    before = site.project.config_path.read_text()
    for key, value, why in [
        ("subject_prefix", "[x]\r\nBcc: all@example.org", "line breaks"),
        ("moderators", "helper@example.org", f"{MODERATOR} administers the list"),
        ("posters", "everyone", "posters: expected"),
    ]:
        answer = client.post(
            "/moderate/lists/volunteers/settings", base_url=HTTPS, data={**form, key: value}
        )
        assert answer.status_code == 400
        assert why in answer.get_data(as_text=True)
    assert site.project.config_path.read_text() == before


def test_only_the_owner_reaches_the_owner_pages(site: Site) -> None:
    """Another list's moderator, even one who moderates this list too, gets 403 from the
    members and settings pages and their forms."""
    make_account(site.project.data_dir, CHAIR)
    client = site.client()
    sign_in(client, CHAIR)
    csrf = form_csrf(client.get("/moderate/lists", base_url=HTTPS))
    for method, path, data in [
        ("GET", "/moderate/lists/volunteers/members", None),
        ("GET", "/moderate/lists/volunteers/settings", None),
        ("POST", "/moderate/lists/volunteers/members", {"addresses": "eve@x.example"}),
        ("POST", "/moderate/lists/volunteers/members/remove", {"address": "ann@example.com"}),
        ("POST", "/moderate/lists/volunteers/settings", {"description": "mine now"}),
    ]:
        answer = client.open(
            path, method=method, base_url=HTTPS, data={**(data or {}), "csrf": csrf}
        )
        assert answer.status_code == 403, path
    assert client.get("/moderate/lists/nolist/settings", base_url=HTTPS).status_code == 404
    assert load(site.project.config_path).lists["volunteers"].description == "All volunteers"


def test_password_reset_by_mailed_link(site: Site) -> None:
    """The reset form answers alike for every address, mails a verified account a link,
    and the password chosen through that link is the one that signs in."""
    client = site.client()
    answers = []
    for who in ("nobody@example.org", MODERATOR):
        page = client.get("/moderate/reset", base_url=HTTPS)
        answer = client.post(
            "/moderate/reset", base_url=HTTPS, data={"email": who, "csrf": form_csrf(page)}
        )
        assert answer.status_code == 200
        answers.append(answer.get_data(as_text=True).replace(who, "WHO"))
    assert answers[0] == answers[1]
    mails = outbox(site.project.data_dir)
    assert [m.recipient for m in mails] == [MODERATOR]
    text = mails[0].message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    link = re.search(r"https://lists\.example\.org(/accounts/reset\?\S+)", text)
    assert link is not None
    page = client.get(link.group(1), base_url=HTTPS)
    assert "Choose a new password" in page.get_data(as_text=True)
    query = dict(re.findall(r'name="(address|token)" value="([^"]+)"', page.get_data(as_text=True)))
    chosen = client.post(
        "/accounts/reset", base_url=HTTPS, data={**query, "password": "a brand new password"}
    )
    assert chosen.status_code == 200
    assert sign_in(client).status_code == 401
    assert sign_in(client, password="a brand new password").status_code == 303
    refused = client.post("/moderate/reset", base_url=HTTPS, data={"email": MODERATOR})
    assert refused.status_code == 403


def test_broken_lists_toml_is_a_page_not_a_traceback(site: Site) -> None:
    """With lists.toml broken by hand, the pages say to come back later."""
    client = site.client()
    sign_in(client)
    site.project.write_config("[lists.volunteers\nbroken")
    for path in ("/moderate/signin", "/moderate/lists"):
        answer = client.get(path, base_url=HTTPS)
        assert answer.status_code == 503
        assert "The list configuration is invalid; try again later." in answer.get_data(
            as_text=True
        )
        assert answer.headers["Content-Security-Policy"] == CSP


def test_administrator_moderates_without_being_a_moderator(site: Site) -> None:
    """The account that administers a list decides on its mail even when lists.toml,
    edited by hand, no longer names it among the moderators (as in the API)."""
    with State.open(site.project.data_dir) as state, state.transaction() as db:
        state.set_administrator(db, "board", MODERATOR)
    client = site.client()
    sign_in(client)
    assert "board" in client.get("/moderate/lists", base_url=HTTPS).get_data(as_text=True)
    assert client.get("/moderate/lists/board", base_url=HTTPS).status_code == 200
    assert client.get("/moderate/lists/board/settings", base_url=HTTPS).status_code == 200
