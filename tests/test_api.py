"""The list HTTP API against the real app under gunicorn: each numbered flow of issue #6."""

from __future__ import annotations

import base64
import email
import email.policy
import json
import re
import sqlite3
import time
import tomllib
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from routemail import state
from routemail.spool import Spool
from tests.conftest import BASE_CONFIG, Project, Receiver, RunCli, running_receiver, start_receiver

ADMIN, PASSWORD = "ada@example.com", "correct horse battery"
COMMENTED_CONFIG = "# Our lists. Keep this comment.\n" + BASE_CONFIG.replace(
    "[lists.board]", "# The board decides.\n[lists.board]"
)


@dataclass
class Answer:
    status: int
    body: Any
    headers: dict[str, str]


def call(
    base: str,
    method: str,
    path: str,
    data: Any = None,
    auth: tuple[str, str] | None = None,
    raw: bytes | None = None,
    client: str | None = None,
) -> Answer:
    """One request to the API; the JSON answer, whatever the status. client: the
    address a trusted proxy reports (X-Forwarded-For)."""
    headers = {"Content-Type": "application/json"}
    if client:
        headers["X-Forwarded-For"] = client
    if auth:
        headers["Authorization"] = "Basic " + base64.b64encode(":".join(auth).encode()).decode()
    payload = raw if raw is not None else (json.dumps(data).encode() if data is not None else None)
    req = urllib.request.Request(
        base + "/api/v1" + path, data=payload, headers=headers, method=method
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return Answer(resp.status, json.loads(resp.read()), dict(resp.headers))
    except urllib.error.HTTPError as err:
        with err:
            text = err.read()
            assert err.headers["Content-Type"] == "application/json", text
            return Answer(err.code, json.loads(text), dict(err.headers))


def mails(data_dir: Path) -> list[EmailMessage]:
    """Every message in the outbox, oldest first."""
    new = data_dir / "maillist" / "outbox" / "new"
    found = []
    for path in sorted(new.iterdir()) if new.exists() else []:
        msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        found.append(msg)
    return found


def mails_to(data_dir: Path, address: str) -> list[EmailMessage]:
    return [m for m in mails(data_dir) if m["Delivered-To"] == address]


def mailed_token(msg: EmailMessage) -> tuple[str, str]:
    """(link, token) from a confirmation mail."""
    part = msg.get_body(("plain",))
    assert part is not None
    text = part.get_content()
    url = re.search(r"https://\S+", text)
    assert url is not None, text
    token = re.search(r"token=([A-Za-z0-9_-]+)", url.group(0))
    assert token is not None
    assert token.group(1) in text.replace(url.group(0), "")  # also given on its own
    return url.group(0), token.group(1)


def members(project: Project, name: str) -> list[str]:
    data = tomllib.loads(project.config_path.read_text())
    return list(data["lists"][name].get("members", []))


def verified_account(base: str, project: Project, who: str = ADMIN) -> None:
    assert call(base, "POST", "/accounts", {"email": who}).status == 202
    _, token = mailed_token(mails_to(project.data_dir, who)[-1])
    assert (
        call(
            base, "POST", "/accounts/verify", {"email": who, "token": token, "password": PASSWORD}
        ).status
        == 200
    )


def new_list(base: str, project: Project, name: str = "club", who: str = ADMIN) -> None:
    verified_account(base, project, who)
    answer = call(
        base, "POST", "/lists", {"name": name, "description": "Our club"}, (who, PASSWORD)
    )
    assert answer.status == 201, answer.body


def subscribed(base: str, project: Project, name: str, who: str) -> None:
    assert call(base, "POST", f"/lists/{name}/subscriptions", {"address": who}).status == 202
    _, token = mailed_token(mails_to(project.data_dir, who)[-1])
    answer = call(
        base, "POST", f"/lists/{name}/subscriptions/confirm", {"address": who, "token": token}
    )
    assert answer.status == 200, answer.body


@pytest.fixture
def api(project: Project, workers: int) -> Iterator[Receiver]:
    """gunicorn with the API, over a lists.toml that has comments to keep."""
    project.write_config(COMMENTED_CONFIG)
    with running_receiver(project, workers=workers) as r:
        yield r


# -- 1, 2: moderator accounts ------------------------------------------------


def test_account_is_verified_with_the_mailed_token(api: Receiver, project: Project) -> None:
    """Creating an account mails a 192-bit token; only that token, once, verifies it."""
    answer = call(api.url, "POST", "/accounts", {"email": ADMIN})
    assert (answer.status, answer.body) == (202, {"email": ADMIN, "status": "pending"})
    [mail] = mails_to(project.data_dir, ADMIN)
    assert mail["From"].addresses[0].domain == "lists.example.org"
    assert mail["Auto-Submitted"] == "auto-generated"
    assert mail["Message-ID"] and mail["Date"]
    link, token = mailed_token(mail)
    assert link.startswith("https://lists.example.org/accounts/verify?")
    assert len(base64.urlsafe_b64decode(token + "==")) * 8 >= 128

    verify = {"email": ADMIN, "token": token, "password": PASSWORD}
    other = token[:-1] + ("B" if token.endswith("A") else "A")
    wrong = call(api.url, "POST", "/accounts/verify", dict(verify, token=other))
    assert wrong.status == 403
    ok = call(api.url, "POST", "/accounts/verify", verify)
    assert (ok.status, ok.body) == (200, {"email": ADMIN, "status": "verified"})
    again = call(api.url, "POST", "/accounts/verify", verify)
    assert again.status == 403

    with sqlite3.connect(project.data_dir / "state.sqlite3") as db:
        stored = db.execute("SELECT password_hash FROM accounts").fetchone()[0]
        version = db.execute("PRAGMA user_version").fetchone()[0]
        mode = db.execute("PRAGMA journal_mode").fetchone()[0]
    db.close()
    assert stored.startswith("scrypt$") and PASSWORD not in stored
    assert version == len(state.MIGRATIONS) and mode == "wal"
    exists = call(api.url, "POST", "/accounts", {"email": ADMIN})
    assert exists.status == 409 and "password-reset" in exists.body["error"]


def test_rerequesting_an_account_is_rate_limited(api: Receiver, project: Project) -> None:
    """Asking again re-sends at most once per interval."""
    assert call(api.url, "POST", "/accounts", {"email": ADMIN}).status == 202
    again = call(api.url, "POST", "/accounts", {"email": ADMIN})
    assert again.status == 429 and int(again.headers["Retry-After"]) > 0
    assert len(mails_to(project.data_dir, ADMIN)) == 1


# -- 3, 4: lists ---------------------------------------------------------------


def test_verified_account_creates_a_list(api: Receiver, project: Project) -> None:
    """A verified account's list lands in lists.toml, comments kept, with it as administrator."""
    new_list(api.url, project)
    text = project.config_path.read_text()
    assert text.startswith("# Our lists. Keep this comment.\n")
    assert "# The board decides.\n[lists.board]" in text
    club = tomllib.loads(text)["lists"]["club"]
    assert club["moderators"] == [ADMIN] and club["members"] == [ADMIN]

    info = call(api.url, "GET", "/lists/club")
    assert (info.status, info.body) == (
        200,
        {
            "name": "club",
            "address": "club@lists.example.org",
            "description": "Our club",
            "posters": "members",
            "member_count": 1,
        },
    )
    again = call(api.url, "POST", "/lists", {"name": "club"}, (ADMIN, PASSWORD))
    assert again.status == 409
    taken = call(api.url, "POST", "/lists", {"name": "Volunteers"}, (ADMIN, PASSWORD))
    assert taken.status == 409


def test_member_list_is_for_the_administrator_only(api: Receiver, project: Project) -> None:
    """Anyone sees list info; only the administrator's credentials show the members."""
    new_list(api.url, project)
    verified_account(api.url, project, "eve@example.net")
    assert call(api.url, "GET", "/lists/club/members").status == 401
    assert call(api.url, "GET", "/lists/club/members", auth=(ADMIN, "wrong password")).status == 401
    other = call(api.url, "GET", "/lists/club/members", auth=("eve@example.net", PASSWORD))
    assert other.status == 403
    mine = call(api.url, "GET", "/lists/club/members", auth=(ADMIN, PASSWORD))
    assert mine.body == {"list": "club", "members": [ADMIN]}


def test_unverified_account_cannot_create_a_list(api: Receiver, project: Project) -> None:
    """A pending account has no password: no credentials work until it is verified."""
    call(api.url, "POST", "/accounts", {"email": ADMIN})
    for password in (PASSWORD, ""):
        answer = call(api.url, "POST", "/lists", {"name": "club"}, (ADMIN, password))
        assert answer.status == 401, answer.body
    assert "club" not in project.config_path.read_text()


# -- 5, 6, 7: subscriptions ----------------------------------------------------


def test_subscription_is_confirmed_by_token(api: Receiver, project: Project) -> None:
    """Subscribing mails a token; confirming it adds the address to lists.toml."""
    new_list(api.url, project)
    answer = call(api.url, "POST", "/lists/club/subscriptions", {"address": "zoe@example.net"})
    assert (answer.status, answer.body["status"]) == (202, "pending")
    assert members(project, "club") == [ADMIN]
    link, token = mailed_token(mails_to(project.data_dir, "zoe@example.net")[-1])
    assert link.startswith("https://lists.example.org/lists/club/confirm?")
    confirm = {"address": "zoe@example.net", "token": token}
    ok = call(api.url, "POST", "/lists/club/subscriptions/confirm", confirm)
    assert ok.body == {"list": "club", "address": "zoe@example.net", "status": "member"}
    assert members(project, "club") == [ADMIN, "zoe@example.net"]
    assert call(api.url, "POST", "/lists/club/subscriptions/confirm", confirm).status == 403
    assert call(api.url, "GET", "/lists/club").body["member_count"] == 2


def test_subscription_bombing_sends_one_mail(api: Receiver, project: Project) -> None:
    """Asking to subscribe a victim many times mails them once per interval."""
    new_list(api.url, project)
    answers = [
        call(api.url, "POST", "/lists/club/subscriptions", {"address": "victim@example.net"})
        for _ in range(5)
    ]
    assert [a.status for a in answers] == [202, 429, 429, 429, 429]
    other_list = call(
        api.url, "POST", "/lists/volunteers/subscriptions", {"address": "victim@example.net"}
    )
    assert other_list.status == 429
    assert len(mails_to(project.data_dir, "victim@example.net")) == 1


def test_unsubscribe_by_mailed_token(api: Receiver, project: Project) -> None:
    """A member leaves with the token mailed to them; the administrator never can."""
    new_list(api.url, project)
    subscribed(api.url, project, "club", "zoe@example.net")
    answer = call(api.url, "POST", "/lists/club/unsubscriptions", {"address": "zoe@example.net"})
    assert answer.status == 202
    link, token = mailed_token(mails_to(project.data_dir, "zoe@example.net")[-1])
    assert link.startswith("https://lists.example.org/lists/club/unsubscribe?")
    done = call(
        api.url,
        "POST",
        "/lists/club/unsubscriptions/confirm",
        {"address": "zoe@example.net", "token": token},
    )
    assert done.body["status"] == "removed"
    assert members(project, "club") == [ADMIN]

    refused = call(api.url, "POST", "/lists/club/unsubscriptions", {"address": ADMIN})
    assert refused.status == 409
    assert (
        call(api.url, "DELETE", f"/lists/club/members/{ADMIN}", auth=(ADMIN, PASSWORD)).status
        == 409
    )
    assert members(project, "club") == [ADMIN]


def test_administrator_removes_a_member(api: Receiver, project: Project) -> None:
    """The administrator's credentials remove a member at once; nobody else's do."""
    new_list(api.url, project)
    subscribed(api.url, project, "club", "zoe@example.net")
    assert call(api.url, "DELETE", "/lists/club/members/zoe@example.net").status == 401
    done = call(api.url, "DELETE", "/lists/club/members/zoe@example.net", auth=(ADMIN, PASSWORD))
    assert done.status == 200
    assert members(project, "club") == [ADMIN]
    gone = call(api.url, "DELETE", "/lists/club/members/zoe@example.net", auth=(ADMIN, PASSWORD))
    assert gone.status == 404


# -- 8: posting ----------------------------------------------------------------


def test_post_confirmed_by_the_author_reaches_every_member(
    api: Receiver, project: Project, routemail_cli: RunCli
) -> None:
    """A post waits for the author's mailed token, then goes through the spool to all members."""
    new_list(api.url, project)
    subscribed(api.url, project, "club", "zoe@example.net")
    post = {"from": "zoe@example.net", "subject": "Picnic", "body": "Saturday at noon.\n"}
    pending = call(api.url, "POST", "/lists/club/messages", post)
    assert (pending.status, pending.body["status"]) == (202, "pending")
    assert not list(Spool(project.data_dir / "maillist").queue.glob("*.data"))
    _, token = mailed_token(mails_to(project.data_dir, "zoe@example.net")[-1])
    confirm = {"address": "zoe@example.net", "token": token}
    queued = call(api.url, "POST", "/lists/club/messages/confirm", confirm)
    assert (queued.status, queued.body["status"]) == (202, "queued")
    assert call(api.url, "POST", "/lists/club/messages/confirm", confirm).status == 403

    sidecar = (project.data_dir / "maillist" / "QUEUE" / (queued.body["id"] + ".data")).read_text()
    assert re.search(r"^R \S+ club@lists.example.org$", sidecar, re.M)
    result = routemail_cli("run")
    assert result.returncode == 0, result.stderr
    copies = [m for m in mails(project.data_dir) if "club-bounces@" in str(m["Return-Path"])]
    assert sorted(m["Delivered-To"] for m in copies) == [ADMIN, "zoe@example.net"]


def test_administrator_posts_with_credentials_only_as_themselves(
    api: Receiver, project: Project
) -> None:
    """The administrator's password queues a post at once, but never in another's name."""
    new_list(api.url, project)
    post = {"from": ADMIN, "subject": "News", "body": "Hello"}
    queued = call(api.url, "POST", "/lists/club/messages", post, (ADMIN, PASSWORD))
    assert (queued.status, queued.body["status"]) == (202, "queued")
    raw = (project.data_dir / "maillist" / "QUEUE" / queued.body["id"]).read_bytes()
    assert b"From: ada@example.com" in raw and b"To: club@lists.example.org" in raw
    forged = dict(post, **{"from": "ann@example.com"})
    assert call(api.url, "POST", "/lists/club/messages", forged, (ADMIN, PASSWORD)).status == 403
    stranger = call(api.url, "POST", "/lists/club/messages", post, ("eve@example.net", PASSWORD))
    assert stranger.status == 401


# -- bad input and abuse -------------------------------------------------------

INJECTION = "a@b.c\r\nBcc: x@y"


@pytest.mark.parametrize(
    ("method", "path", "data", "status"),
    [
        ("POST", "/accounts", {"email": INJECTION}, 400),
        ("POST", "/accounts", {"email": "ann@example.com", "password": PASSWORD}, 400),
        (
            "POST",
            "/accounts/verify",
            {"email": "a@b.example", "token": "t", "password": "short"},
            400,
        ),
        ("POST", "/accounts/verify", {"email": "a@b.example", "token": "t"}, 400),
        ("POST", "/accounts/password-reset", {"email": INJECTION}, 400),
        (
            "POST",
            "/accounts/password-reset/confirm",
            {"email": "a@b.example", "token": "t", "password": ["x"]},
            400,
        ),
        ("POST", "/accounts", ["not", "an", "object"], 400),
        ("POST", "/accounts/verify", {"email": "ann@example.com"}, 400),
        ("POST", "/lists/club/subscriptions", {"address": INJECTION}, 400),
        ("POST", "/lists/volunteers/subscriptions", {"address": INJECTION}, 400),
        ("POST", "/lists/volunteers/subscriptions", {"address": "ann@"}, 400),
        ("POST", "/lists/nosuch/subscriptions", {"address": "ann@example.com"}, 404),
        ("POST", "/lists/bad%21/subscriptions", {"address": "ann@example.com"}, 400),
        ("POST", "/lists/-x-/subscriptions", {"address": "ann@example.com"}, 400),
        ("GET", "/lists/a%20b", None, 400),
        ("GET", "/lists/nosuch", None, 404),
        ("POST", "/lists/volunteers/unsubscriptions/confirm", {"address": "ann@example.com"}, 400),
        (
            "POST",
            "/lists/volunteers/messages",
            {"from": "ann@example.com", "subject": "Hi\r\nBcc: x@y", "body": "x"},
            400,
        ),
        (
            "POST",
            "/lists/volunteers/messages",
            {"from": INJECTION, "subject": "a", "body": "x"},
            400,
        ),
        ("DELETE", "/lists/volunteers/members/not-an-address", None, 400),
        ("POST", "/lists/volunteers/subscriptions", "x" * 300_000, 413),
        ("PUT", "/lists/volunteers", {}, 405),
    ],
)
def test_bad_input_gets_a_json_error(
    api: Receiver, method: str, path: str, data: Any, status: int
) -> None:
    """Malformed or hostile input is answered with a JSON error and the right status."""
    answer = call(api.url, method, path, data)
    assert answer.status == status, answer.body
    assert isinstance(answer.body["error"], str) and answer.body["error"]


def test_list_names_are_checked(api: Receiver, project: Project) -> None:
    """Unsafe or reserved list names are refused before lists.toml is touched."""
    verified_account(api.url, project)
    before = project.config_path.read_text()
    for name in (
        "../etc",
        "Club Room",
        "club\nx",
        "-club",
        "club-owner",
        "a..b",
        "a" * 65,
        "",
        "x-bounces+y",  # mail to it is a bounce for list x: it could never receive a post
        "club-owner+news",
    ):
        answer = call(api.url, "POST", "/lists", {"name": name}, (ADMIN, PASSWORD))
        assert answer.status == 400, (name, answer.body)
    assert project.config_path.read_text() == before


def test_token_guessing_is_rate_limited(api: Receiver, project: Project) -> None:
    """After guess_limit wrong tokens even the right one is refused until the window ends."""
    call(api.url, "POST", "/accounts", {"email": ADMIN})
    _, token = mailed_token(mails_to(project.data_dir, ADMIN)[-1])
    statuses = [
        call(
            api.url,
            "POST",
            "/accounts/verify",
            {"email": ADMIN, "token": f"guess{i}", "password": PASSWORD},
        ).status
        for i in range(11)
    ]
    assert statuses == [403] * 10 + [429]
    verify = {"email": ADMIN, "token": token, "password": PASSWORD}
    right = call(api.url, "POST", "/accounts/verify", verify)
    assert right.status == 429 and int(right.headers["Retry-After"]) > 0


def test_guessing_is_limited_per_client_across_addresses(api: Receiver, project: Project) -> None:
    """One client spreading guesses over many addresses is stopped as well."""
    statuses = [
        call(
            api.url,
            "POST",
            "/accounts/verify",
            {"email": f"x{i}@example.com", "token": "guess", "password": PASSWORD},
        ).status
        for i in range(11)
    ]
    assert statuses == [403] * 10 + [429]


def test_one_client_cannot_lock_an_owner_out(project: Project) -> None:
    """Guesses from one client stop that client only; the owner, from elsewhere, gets in.
    Spread over many clients, guesses at one address stop at GUESS_SPREAD x guess_limit."""
    from routemail.ratelimits import GUESS_SPREAD

    project.write_config(BASE_CONFIG.replace("[receiver]\n", "[receiver]\ntrusted_proxies = 1\n"))
    with running_receiver(project) as api:
        call(api.url, "POST", "/accounts", {"email": ADMIN})
        _, token = mailed_token(mails_to(project.data_dir, ADMIN)[-1])

        def guess(n: int, client: str) -> int:
            body = {"email": ADMIN, "token": f"guess{n}", "password": PASSWORD}
            return call(api.url, "POST", "/accounts/verify", body, client=client).status

        assert [guess(n, "198.51.100.1") for n in range(11)] == [403] * 10 + [429]
        owner = call(
            api.url,
            "POST",
            "/accounts/verify",
            {"email": ADMIN, "token": token, "password": PASSWORD},
            client="203.0.113.9",
        )
        assert (owner.status, owner.body) == (200, {"email": ADMIN, "status": "verified"})

        call(api.url, "POST", "/accounts", {"email": "bea@example.org"})
        spread = [
            call(
                api.url,
                "POST",
                "/accounts/verify",
                {"email": "bea@example.org", "token": f"guess{n}", "password": PASSWORD},
                client=f"198.51.100.{10 + n // 10}",
            ).status
            for n in range(10 * GUESS_SPREAD + 1)
        ]
        assert spread == [403] * (10 * GUESS_SPREAD) + [429]


def test_tokens_and_pending_accounts_expire(project: Project) -> None:
    """A token past api.token_hours no longer works, and an unverified account is forgotten."""
    project.write_config(BASE_CONFIG + "\n[api]\ntoken_hours = 0.0005\naccount_hours = 0.0005\n")
    r = start_receiver(project)
    try:
        call(r.url, "POST", "/accounts", {"email": ADMIN})
        _, token = mailed_token(mails_to(project.data_dir, ADMIN)[-1])
        time.sleep(2.5)  # token_hours = 0.0005 is 1.8 s
        verify = {"email": ADMIN, "token": token, "password": PASSWORD}
        late = call(r.url, "POST", "/accounts/verify", verify)
        assert late.status == 403
        with sqlite3.connect(project.data_dir / "state.sqlite3") as db:
            assert db.execute("SELECT count(*) FROM accounts").fetchone()[0] == 0
            assert db.execute("SELECT count(*) FROM tokens").fetchone()[0] == 0
        db.close()
    finally:
        r.stop()


def test_tokens_are_stored_hashed(api: Receiver, project: Project) -> None:
    """The database holds only SHA-256 digests of mailed tokens."""
    new_list(api.url, project)
    call(api.url, "POST", "/lists/club/subscriptions", {"address": "zoe@example.net"})
    _, token = mailed_token(mails_to(project.data_dir, "zoe@example.net")[-1])
    with sqlite3.connect(project.data_dir / "state.sqlite3") as db:
        rows = db.execute(
            "SELECT hash, email, list FROM tokens WHERE purpose = 'subscribe'"
        ).fetchall()
    db.close()
    assert rows == [(state.token_hash(token), "zoe@example.net", "club")]
    for path in project.data_dir.glob("state.sqlite3*"):
        assert token.encode() not in path.read_bytes()


# -- 5: pages for people -------------------------------------------------------


def fetch(url: str, data: bytes | None = None) -> tuple[int, str]:
    """A page, as a browser would get it: status and HTML."""
    req = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            assert resp.headers["Content-Type"].startswith("text/html")
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        with err:
            assert err.headers["Content-Type"].startswith("text/html")
            return err.code, err.read().decode()


def test_unsubscribe_page_needs_its_button(api: Receiver, project: Project) -> None:
    """GET shows the page and changes nothing; the form's POST unsubscribes."""
    new_list(api.url, project)
    subscribed(api.url, project, "club", "zoe@example.net")
    call(api.url, "POST", "/lists/club/unsubscriptions", {"address": "zoe@example.net"})
    link, token = mailed_token(mails_to(project.data_dir, "zoe@example.net")[-1])
    page_url = api.url + link.removeprefix("https://lists.example.org")
    for _ in range(3):
        status, html = fetch(page_url)
        assert status == 200 and '<button type="submit">Unsubscribe</button>' in html
        assert 'name="viewport"' in html
    assert members(project, "club") == [ADMIN, "zoe@example.net"]
    form = urllib.parse.urlencode({"address": "zoe@example.net", "token": token}).encode()
    status, html = fetch(f"{api.url}/lists/club/unsubscribe", form)
    assert status == 200 and "has been removed from club" in html
    assert members(project, "club") == [ADMIN]
    status, html = fetch(f"{api.url}/lists/club/unsubscribe", form)
    assert status == 403 and "wrong or expired token" in html


@pytest.mark.parametrize("workers", [2])
def test_concurrent_confirmations_are_all_kept(api: Receiver, project: Project) -> None:
    """Confirmations racing through several gunicorn workers all end up in lists.toml."""
    new_list(api.url, project)
    people = [f"p{i}@example.org" for i in range(12)]
    confirms = []
    for who in people:
        assert call(api.url, "POST", "/lists/club/subscriptions", {"address": who}).status == 202
        _, token = mailed_token(mails_to(project.data_dir, who)[-1])
        confirms.append({"address": who, "token": token})
    with ThreadPoolExecutor(max_workers=6) as pool:
        answers = list(
            pool.map(
                lambda c: call(api.url, "POST", "/lists/club/subscriptions/confirm", c), confirms
            )
        )
    assert [a.status for a in answers] == [200] * len(people)
    assert sorted(members(project, "club")) == sorted([ADMIN, *people])


@pytest.mark.parametrize(
    "payload",
    [b"[" * 100_000 + b"]" * 100_000, b'{"address": ' * 20_000 + b"1" + b"}" * 20_000],
)
def test_deeply_nested_json_is_a_400(api: Receiver, payload: bytes) -> None:
    """JSON nested deeper than the parser's recursion limit answers 400, not 503."""
    answer = call(api.url, "POST", "/lists/volunteers/subscriptions", raw=payload)
    assert answer.status == 400, answer.body
    assert "Traceback" not in api.log_path.read_text()
