"""Text from the API never becomes a header or a body line: the posting flow under
gunicorn, `routemail run` after it, and what lands in the outbox."""

from __future__ import annotations

import email
import email.policy
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Project, Receiver, RunCli, running_receiver
from tests.test_api import COMMENTED_CONFIG, call, mailed_token, mails_to

# The subject from the report: an RFC 2047 word that decodes to CR LF, a Bcc field
# and a body line.
ATTACK = "=?l1?q?x=0D=0ABcc:_v@ex.net=0D=0A=0D=0AGo:_evil.example?="
AUTHOR = "ann@example.com"  # a member of volunteers in the test lists.toml


@pytest.fixture
def api(project: Project) -> Iterator[Receiver]:
    """gunicorn with the API over the test lists.toml."""
    project.write_config(COMMENTED_CONFIG)
    with running_receiver(project) as r:
        yield r


def outbox_files(data_dir: Path) -> list[bytes]:
    new = data_dir / "maillist" / "outbox" / "new"
    return [p.read_bytes() for p in sorted(new.iterdir())] if new.exists() else []


def header_block(raw: bytes) -> list[bytes]:
    return re.split(rb"\r?\n\r?\n", raw, maxsplit=1)[0].splitlines()


def assert_no_injection(raw: bytes) -> email.message.EmailMessage:
    """raw has no Bcc field and no 'Go:' line, before or after a re-serialisation by
    the email package (which decodes encoded words), and its header lines are clean."""
    for line in header_block(raw):
        assert not line.lower().startswith(b"bcc"), line
        assert re.fullmatch(rb"[\x20-\x7e\t]*", line), line
        assert len(line) <= 998
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, email.message.EmailMessage)
    assert "Bcc" not in msg
    again = msg.as_bytes()
    assert not re.search(rb"^(Bcc|Go):", again, re.M | re.I), again[:2000]
    return msg


def test_encoded_word_subject_is_shown_literally_in_confirmation_and_copies(
    api: Receiver, project: Project, routemail_cli: RunCli
) -> None:
    """The reported subject through POST /lists/volunteers/messages: the confirmation
    mail, the queued post and every member's copy carry it as typed, in one Subject
    field, with no Bcc field and no attacker line in the body."""
    post = {"from": AUTHOR, "subject": ATTACK, "body": "Hello all.\n"}
    pending = call(api.url, "POST", "/lists/volunteers/messages", post)
    assert pending.status == 202, pending.body

    (confirmation,) = [
        r for r in outbox_files(project.data_dir) if b"Delivered-To: " + AUTHOR.encode() in r
    ]
    msg = assert_no_injection(confirmation)
    assert str(msg["Subject"]) == f"Confirm your message to volunteers: {ATTACK[:60]}"
    body = msg.get_body(("plain",))
    assert body is not None
    lines = body.get_content().splitlines()
    assert f"  {ATTACK}" in lines
    assert not any(line.startswith("Go:") for line in lines)

    _, token = mailed_token(mails_to(project.data_dir, AUTHOR)[-1])
    queued = call(
        api.url, "POST", "/lists/volunteers/messages/confirm", {"address": AUTHOR, "token": token}
    )
    assert queued.status == 202, queued.body
    spooled = (project.data_dir / "maillist" / "QUEUE" / queued.body["id"]).read_bytes()
    assert str(assert_no_injection(spooled)["Subject"]) == ATTACK

    before = len(outbox_files(project.data_dir))
    result = routemail_cli("run")
    assert result.returncode == 0, result.stderr
    copies = outbox_files(project.data_dir)[before:]
    assert len(copies) == 3  # ann, bob and the coordinator
    for raw in copies:
        assert str(assert_no_injection(raw)["Subject"]) == f"[volunteers] {ATTACK}"


@pytest.mark.parametrize(
    "subject", ["Picnic\u2028Bcc: v@ex.net", "Picnic\x85Bcc: v@ex.net", "Picnic\u2029", "a\x1bb"]
)
def test_line_separator_in_subject_is_refused_with_a_clear_answer(
    api: Receiver, project: Project, subject: str
) -> None:
    """U+2028, U+2029, NEL and ESC in a subject get 400 naming the field (it was 503
    with a traceback), and nothing is mailed or queued."""
    answer = call(
        api.url,
        "POST",
        "/lists/volunteers/messages",
        {"from": AUTHOR, "subject": subject, "body": "x"},
    )
    assert answer.status == 400
    assert answer.body["error"] == "subject: line breaks and control characters are not allowed"
    assert outbox_files(project.data_dir) == []
    assert "Traceback" not in api.log_path.read_text()
