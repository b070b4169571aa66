"""One-click unsubscribe links (RFC 8058) under gunicorn: a link stops working once the
member leaves and joins again, and the administrator is told they stay subscribed."""

from __future__ import annotations

import re
import time
import urllib.error
import urllib.parse
import urllib.request

from tests.conftest import Receiver, RunCli
from tests.mailbox import outbox
from tests.test_api import call, mailed_token, mails_to
from tests.test_feedback import VOLUNTEERS, member_post, members_in_file, post_mail, run

ONE_CLICK = urllib.parse.urlencode({"List-Unsubscribe": "One-Click"}).encode()


def link_for(receiver: Receiver, subject: str, recipient: str) -> str:
    """The one-click URL of recipient's copy of the post with subject, on this receiver."""
    copy = next(
        c
        for c in outbox(receiver.project.data_dir)
        if c.recipient == recipient and subject in c.subject
    )
    https = re.search(r"<(https://[^>]+)>", str(copy.message["List-Unsubscribe"]))
    assert https is not None
    parts = urllib.parse.urlsplit(https.group(1))
    return f"{receiver.url}{parts.path}?{parts.query}"


def one_click(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=ONE_CLICK), timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as err:
        with err:
            return err.code, err.read().decode()


def resubscribe(receiver: Receiver, who: str) -> None:
    path = "/lists/volunteers/subscriptions"
    assert call(receiver.url, "POST", path, {"address": who}).status == 202
    _, token = mailed_token(mails_to(receiver.project.data_dir, who)[-1])
    confirm = call(receiver.url, "POST", path + "/confirm", {"address": who, "token": token})
    assert confirm.status == 200, confirm.body


def test_old_link_does_not_unsubscribe_a_resubscribed_member(
    receiver: Receiver, routemail_cli: RunCli
) -> None:
    """bob leaves with the link in post 1's copy and subscribes again: that link (and the
    one in any copy sent before) no longer removes him; the link in a newer copy does."""
    project = receiver.project
    post_mail(receiver, member_post(1), VOLUNTEERS)
    run(routemail_cli)
    old = link_for(receiver, "Post 1", "bob@example.net")
    assert one_click(old)[0] == 200
    assert "bob@example.net" not in members_in_file(project, "volunteers")

    resubscribe(receiver, "bob@example.net")
    status, html = one_click(old)
    assert status == 400 and "newer message" in html
    assert "bob@example.net" in members_in_file(project, "volunteers")

    # A link carries its copy's time in whole seconds; a newer copy is one made after
    # the second in which bob joined again.
    time.sleep(1.1)
    post_mail(receiver, member_post(2), VOLUNTEERS)
    run(routemail_cli)
    new = link_for(receiver, "Post 2", "bob@example.net")
    assert new != old
    assert one_click(new)[0] == 200
    assert "bob@example.net" not in members_in_file(project, "volunteers")


def test_administrator_is_told_they_stay_subscribed(
    receiver: Receiver, routemail_cli: RunCli
) -> None:
    """The list's administrator (its first moderator) pressing the one-click link is
    answered 409 "Still subscribed", and stays on the list."""
    post_mail(receiver, member_post(3), VOLUNTEERS)
    run(routemail_cli)
    status, html = one_click(link_for(receiver, "Post 3", "coordinator@example.org"))
    assert status == 409
    assert "<h1>Still subscribed</h1>" in html and "Unsubscribed" not in html
    assert "stays subscribed" in html
    assert "coordinator@example.org" in members_in_file(receiver.project, "volunteers")
