"""A moderator and a list owner at work in a real, headless Chromium, against the
receiver under gunicorn: sign in, approve, reject, look at a hostile message, change
members and settings.

With ROUTEMAIL_SCREENSHOTS set to a folder (docs/images for the documentation), each
page is saved there as a PNG:

    ROUTEMAIL_SCREENSHOTS=docs/images .venv/bin/pytest tests/test_moderation_browser.py
"""

from __future__ import annotations

import http.server
import io
import json
import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailxfer.post import post_message
from routemail import passwords
from routemail.config import load
from routemail.state import State
from tests.conftest import ROOT, SECRET, Project, Receiver, RunCli, running_receiver
from tests.mailbox import outbox, recipients
from tests.test_browser import CHROMIUM, CHROMIUM_ARGS

playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect

MODERATOR, PASSWORD = "coordinator@example.org", "a long enough password"
VOLUNTEERS = "volunteers@lists.example.org"
PASSING = dict.fromkeys(("dkim", "dmarc", "spf", "spam", "virus"), "PASS")
SHOTS = os.environ.get("ROUTEMAIL_SCREENSHOTS")
# Adds an image to the page from outside it (as a sanitiser's mistake would) and
# answers the directive of the Content-Security-Policy that refused it.
BLOCKED_IMAGE = """src => new Promise(resolve => {
  document.addEventListener("securitypolicyviolation", e => resolve(e.effectiveDirective));
  const image = new Image();
  image.src = src;
  document.body.append(image);
})"""


class Watched(http.server.ThreadingHTTPServer):
    """A local web server a hostile message points at: it must never be asked anything."""

    requests: list[str]


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.server.requests.append(self.path)  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.end_headers()

    do_POST = do_GET

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def watched() -> Iterator[Watched]:
    """The watched server on a free loopback port."""
    server = Watched(("127.0.0.1", 0), _Handler)
    server.requests = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def hostile_html(port: int) -> str:
    remote = f"http://127.0.0.1:{port}"
    return f"""<html><head><style>body {{ background: url({remote}/css.png) }}</style>
<link rel="stylesheet" href="{remote}/sheet.css"><script src="{remote}/remote.js"></script>
</head><body onload="document.title='pwned'">
<p>Dear moderator, please approve.</p>
<script>document.title = 'pwned'; new Image().src = '{remote}/beacon';</script>
<img src="{remote}/pixel.png" onerror="document.title='pwned'" alt="pixel">
<a href="javascript:document.title='pwned'" id="js">Click to approve</a>
<a href="data:text/html,<script>alert(1)</script>">data link</a>
<div style="background-image: url('{remote}/bg.png')">styled</div>
<iframe src="{remote}/frame"></iframe>
<form action="{remote}/form" method="post"><button>Go</button></form>
<a href="https://example.com/ok">a fine link</a>
</body></html>"""


def post(
    receiver: Receiver, sender: str, subject: str, body: str, ctype: str = "text/plain"
) -> str:
    local = re.sub(r"\W", "-", subject)
    raw = (
        f"From: {sender}\r\nTo: {VOLUNTEERS}\r\nSubject: {subject}\r\n"
        f"Message-ID: <{local}@example.net>\r\n"
        f"Content-Type: {ctype}; charset=utf-8\r\n\r\n{body}"
    ).encode()
    result = post_message(
        receiver.mailrecv_url, SECRET.encode(), io.BytesIO(raw), [VOLUNTEERS], PASSING
    )
    assert result.status == 200, result.body
    return str(json.loads(result.body)["id"])


def run(routemail_cli: RunCli) -> None:
    done = routemail_cli("run")
    assert done.returncode == 0, done.stderr


@pytest.fixture
def receiver(project: Project) -> Iterator[Receiver]:
    """gunicorn with the moderator account of volunteers (its owner too)."""
    with State.open(project.data_dir) as state:
        state.put_pending_account(MODERATOR)
        with state.transaction() as db:
            state.verify_account(db, MODERATOR, passwords.hash_password(PASSWORD))
    with running_receiver(project) as r:
        yield r


def shot(page: object, name: str) -> None:
    if SHOTS:
        folder = Path(SHOTS) if Path(SHOTS).is_absolute() else ROOT / SHOTS
        folder.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(folder / f"moderate-{name}.png"), full_page=True)  # type: ignore[attr-defined]


def test_moderator_and_owner_in_chromium(
    receiver: Receiver, routemail_cli: RunCli, watched: Watched
) -> None:
    """Sign in, approve one post and reject another from the browser; the next run
    delivers the first to every member and tells the second's author why. A hostile
    post shows nothing active and loads nothing. The owner adds a member and changes
    the footer."""
    project = receiver.project
    port = watched.server_address[1]
    approved = post(receiver, "Eve <eve@outside.example>", "Lost and found", "I found a scarf.\n")
    rejected = post(receiver, "Sam <sam@outside.example>", "Buy cheap watches", "Great deals!\n")
    hostile = post(
        receiver, "Mallory <mallory@outside.example>", "Urgent", hostile_html(port), "text/html"
    )
    run(routemail_cli)

    with playwright_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 800, "height": 600})
            dialogs: list[str] = []
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.goto(f"{receiver.url}/moderate/lists")
            assert page.url.startswith(f"{receiver.url}/moderate/signin")
            shot(page, "signin")
            page.get_by_label("Email address").fill(MODERATOR)
            page.get_by_label("Password").fill(PASSWORD)
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url(f"{receiver.url}/moderate/lists")
            row = page.get_by_role("row", name=re.compile("volunteers"))
            assert row.get_by_role("cell").nth(2).inner_text() == "3"
            shot(page, "lists")

            page.get_by_role("link", name="volunteers").click()
            expect(page.get_by_role("link", name="Lost and found")).to_be_visible()
            shot(page, "held")
            page.get_by_role("link", name="Lost and found").click()
            assert "I found a scarf." in page.inner_text("pre.body")
            shot(page, "message")
            page.get_by_role("button", name="Approve and send to the list").click()
            expect(page.locator("main")).to_contain_text(f"Message {approved} approved.")

            page.get_by_role("link", name="Buy cheap watches").click()
            page.get_by_label("Reason, sent to the author").fill("No advertising, please.")
            page.get_by_role("button", name="Reject and tell the author").click()
            expect(page.locator("main")).to_contain_text(f"Message {rejected} rejected.")

            page.get_by_role("link", name="Urgent").click()
            preview = page.locator(".html-preview")
            page.locator("details summary").click()
            assert "Dear moderator, please approve." in preview.inner_text()
            assert preview.locator("script, img, iframe, form, style, link").count() == 0
            assert preview.locator("[href^='javascript'], [href^='data'], [style]").count() == 0
            preview.get_by_text("Click to approve").click()  # a link without a target now
            assert page.evaluate("document.scripts.length") == 0
            shot(page, "hostile")
            # Were the sanitiser to let an image through, the page's policy stops it.
            violated = page.evaluate(BLOCKED_IMAGE, f"http://127.0.0.1:{port}/slipped.png")
            assert violated == "img-src"
            page.wait_for_load_state("networkidle")
            assert page.title() != "pwned" and dialogs == []

            page.goto(f"{receiver.url}/moderate/lists/volunteers/members")
            page.get_by_label("Addresses, one a line").fill("zoe@example.com")
            page.get_by_role("button", name="Add").click()
            expect(page.locator("main")).to_contain_text("zoe@example.com: added")
            page.get_by_label("Find members").fill("zoe")
            page.get_by_role("button", name="Search").click()
            expect(page.get_by_role("heading", name="Members matching")).to_be_visible()
            shot(page, "members")
            page.get_by_role("link", name="Settings").click()
            page.wait_for_url(f"{receiver.url}/moderate/lists/volunteers/settings")
            page.get_by_label("Footer added to each copy").fill("Sent to {recipient} by {list}.")
            shot(page, "settings")
            page.get_by_role("button", name="Save settings").click()
            expect(page.locator("main")).to_contain_text("Saved: footer.")

            page.get_by_role("button", name="Sign out").click()
            page.wait_for_url(f"{receiver.url}/moderate/signin")
            page.goto(f"{receiver.url}/moderate/lists")
            assert page.url.startswith(f"{receiver.url}/moderate/signin")
            page.get_by_role("link", name="Forgot your password?").click()
            page.wait_for_url(f"{receiver.url}/moderate/reset")
            shot(page, "reset")
        finally:
            browser.close()
    assert watched.requests == []
    assert load(project.config_path).lists["volunteers"].footer == "Sent to {recipient} by {list}."

    run(routemail_cli)
    assert recipients(project.data_dir, "Lost and found") == {
        "ann@example.com": 1,
        "bob@example.net": 1,
        "coordinator@example.org": 1,
        "zoe@example.com": 1,
    }
    assert recipients(project.data_dir, "cheap watches") == {}
    notices = [
        d
        for d in outbox(project.data_dir)
        if d.recipient == "sam@outside.example" and "rejected" in d.subject
    ]
    assert len(notices) == 1
    assert "No advertising, please." in notices[0].message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "volunteers" in project.spool.history(hostile).held_lists
