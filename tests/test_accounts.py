"""Accounts belong to whoever reads the address's mail, under gunicorn: the password is
chosen with the mailed token, reset by mailed token, and guessed at most guess_limit times
however many guesses arrive at once."""

from __future__ import annotations

import sqlite3
import time
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.conftest import BASE_CONFIG, Project, Receiver, running_receiver
from tests.test_api import ADMIN, PASSWORD, api, call, fetch, mailed_token, mails_to, new_list

__all__ = ["api"]  # the fixture, imported for use here

OWNER = "coordinator@example.org"  # first moderator, so administrator, of volunteers
ATTACKER_PASSWORD = "mallory chose this one"
OWNER_PASSWORD = "the owner's own secret"


def test_requester_cannot_choose_the_password(api: Receiver, project: Project) -> None:
    """Asking for an account for someone else's address with a password of one's own is
    refused; the owner chooses the password when verifying, and only theirs works, for
    the list they administer too."""
    hijack = call(api.url, "POST", "/accounts", {"email": OWNER, "password": ATTACKER_PASSWORD})
    assert hijack.status == 400 and "chosen when the account is verified" in hijack.body["error"]
    assert mails_to(project.data_dir, OWNER) == []
    assert call(api.url, "POST", "/accounts", {"email": OWNER}).status == 202
    [mail] = mails_to(project.data_dir, OWNER)
    _, token = mailed_token(mail)
    verify = {"email": OWNER, "token": token, "password": OWNER_PASSWORD}
    assert call(api.url, "POST", "/accounts/verify", verify).status == 200

    for password in (ATTACKER_PASSWORD, "", PASSWORD):
        attempt = call(api.url, "GET", "/lists/volunteers/members", auth=(OWNER, password))
        assert attempt.status == 401, password
    owner = call(api.url, "GET", "/lists/volunteers/members", auth=(OWNER, OWNER_PASSWORD))
    assert owner.status == 200 and OWNER in owner.body["members"]


def test_verification_page_asks_the_owner_for_the_password(api: Receiver, project: Project) -> None:
    """The mailed link shows a password form; a POST from another site, or with a short
    password, changes nothing; the owner's POST verifies with the password typed."""
    call(api.url, "POST", "/accounts", {"email": ADMIN})
    link, token = mailed_token(mails_to(project.data_dir, ADMIN)[-1])
    page = api.url + link.removeprefix("https://lists.example.org")
    status, html = fetch(page)
    assert status == 200 and 'type="password"' in html and 'autocomplete="new-password"' in html

    def post(password: str, site: str = "same-origin") -> tuple[int, str]:
        form = {"address": ADMIN, "token": token, "password": password}
        request = urllib.request.Request(
            f"{api.url}/accounts/verify",
            data=urllib.parse.urlencode(form).encode(),
            headers={"Sec-Fetch-Site": site},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as err:
            with err:
                return err.code, err.read().decode()

    status, html = post(OWNER_PASSWORD, site="cross-site")
    assert status == 403 and "only works from its own page" in html
    status, html = post("short")
    assert status == 400 and "at least 10 characters" in html and 'type="password"' in html
    assert call(api.url, "POST", "/lists", {"name": "club"}, (ADMIN, OWNER_PASSWORD)).status == 401
    status, html = post(OWNER_PASSWORD)
    assert status == 200 and "is verified" in html
    assert call(api.url, "POST", "/lists", {"name": "club"}, (ADMIN, OWNER_PASSWORD)).status == 201


def test_password_reset_by_mailed_token(api: Receiver, project: Project) -> None:
    """A reset mails a single-use token to the account's address; with it a new
    password replaces the old one, and earlier reset tokens stop working."""
    new_list(api.url, project)
    assert call(api.url, "POST", "/accounts/password-reset", {"email": ADMIN}).status == 202
    link, first = mailed_token(mails_to(project.data_dir, ADMIN)[-1])
    assert link.startswith("https://lists.example.org/accounts/reset?")
    with sqlite3.connect(project.data_dir / "state.sqlite3") as db:
        db.execute("DELETE FROM last_mail")  # let a second reset go out now
    db.close()
    assert call(api.url, "POST", "/accounts/password-reset", {"email": ADMIN}).status == 202
    _, second = mailed_token(mails_to(project.data_dir, ADMIN)[-1])
    assert first != second

    confirm = {"email": ADMIN, "token": "not-the-token", "password": "a brand new password"}
    path = "/accounts/password-reset/confirm"
    assert call(api.url, "POST", path, confirm).status == 403
    done = call(api.url, "POST", path, dict(confirm, token=second))
    assert (done.status, done.body) == (200, {"email": ADMIN, "status": "verified"})
    assert call(api.url, "POST", path, dict(confirm, token=second)).status == 403
    assert call(api.url, "POST", path, dict(confirm, token=first, password="x" * 12)).status == 403
    assert call(api.url, "GET", "/lists/club/members", auth=(ADMIN, PASSWORD)).status == 401
    mine = call(api.url, "GET", "/lists/club/members", auth=(ADMIN, "a brand new password"))
    assert mine.status == 200


def test_reset_answer_tells_nobody_who_has_an_account(api: Receiver, project: Project) -> None:
    """A reset for an address with no account (or only a pending one) answers exactly as
    for an account, the second request within the interval included, and mails nothing."""
    new_list(api.url, project)
    call(api.url, "POST", "/accounts", {"email": "pending@example.net"})
    answers = {}
    for who in (ADMIN, "nobody@example.net", "pending@example.net"):
        first = call(api.url, "POST", "/accounts/password-reset", {"email": who})
        second = call(api.url, "POST", "/accounts/password-reset", {"email": who})
        answers[who] = (
            first.status,
            {k: v.replace(who, "X") for k, v in first.body.items()},
            second.status,
            second.body["error"].replace(who, "X"),
        )
    assert answers[ADMIN] == answers["nobody@example.net"] == answers["pending@example.net"]
    assert answers[ADMIN][0] == 202 and answers[ADMIN][2] == 429
    assert mails_to(project.data_dir, "nobody@example.net") == []
    assert len(mails_to(project.data_dir, "pending@example.net")) == 1  # the verification


def test_reset_token_expires(project: Project) -> None:
    """A reset token past its lifetime (api.token_hours, at most an hour) changes nothing."""
    project.write_config(BASE_CONFIG + "\n[api]\ntoken_hours = 0.0005\n")
    with running_receiver(project) as r:
        new_list(r.url, project)
        call(r.url, "POST", "/accounts/password-reset", {"email": ADMIN})
        _, token = mailed_token(mails_to(project.data_dir, ADMIN)[-1])
        time.sleep(2.5)  # token_hours = 0.0005 is 1.8 s
        confirm = {"email": ADMIN, "token": token, "password": "a brand new password"}
        assert call(r.url, "POST", "/accounts/password-reset/confirm", confirm).status == 403
        assert call(r.url, "GET", "/lists/club/members", auth=(ADMIN, PASSWORD)).status == 200


@pytest.mark.parametrize("workers", [2])
def test_concurrent_wrong_passwords_are_checked_at_most_guess_limit_times(
    api: Receiver, project: Project
) -> None:
    """40 wrong passwords at once, across gunicorn's workers and threads: exactly
    guess_limit (10) are checked and answered 401; every other one is refused 429."""

    def guess(n: int) -> int:
        auth = (OWNER, f"guess {n}")
        return call(api.url, "GET", "/lists/volunteers/members", auth=auth).status

    with ThreadPoolExecutor(max_workers=40) as pool:
        statuses = list(pool.map(guess, range(40)))
    assert statuses.count(401) == 10, statuses
    assert statuses.count(429) == 30, statuses


def test_right_password_does_not_count_as_a_guess(api: Receiver, project: Project) -> None:
    """Many calls with the right password never approach the guessing limit."""
    new_list(api.url, project)
    for _ in range(25):
        assert call(api.url, "GET", "/lists/club/members", auth=(ADMIN, PASSWORD)).status == 200


def test_unsubscribe_answer_is_the_same_for_members_and_others(
    api: Receiver, project: Project
) -> None:
    """Asking twice to unsubscribe a member, and a stranger, answers alike: 202, then
    429 with the same words; only the member gets a mail."""
    seen = []
    for who in ("bob@example.net", "stranger@example.net"):
        first = call(api.url, "POST", "/lists/volunteers/unsubscriptions", {"address": who})
        second = call(api.url, "POST", "/lists/volunteers/unsubscriptions", {"address": who})
        seen.append(
            (
                first.status,
                first.body["status"],
                second.status,
                second.body["error"].replace(who, "X"),
                "Retry-After" in second.headers,
            )
        )
    assert seen[0] == seen[1]
    assert seen[0][:3] == (202, "pending", 429)
    assert len(mails_to(project.data_dir, "bob@example.net")) == 1
    assert mails_to(project.data_dir, "stranger@example.net") == []
