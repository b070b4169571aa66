"""Fuzz target: the receiver's request handling, under gunicorn on loopback. Whatever a
client sends, the answer is one of the contract's, in JSON, never a traceback; only a
signed post is stored, and stored byte for byte."""

from __future__ import annotations

import hashlib
import http.client
import json
import time
from dataclasses import dataclass

from hypothesis import given
from hypothesis import strategies as st

from mailrecv.receive import UNDECLARED_LIMIT
from mailxfer import signing
from tests.conftest import SECRET, Receiver
from tests.fuzzing import budget, messages

ANSWERS = {200, 400, 401, 405, 413}  # the spool is writable and the secret set: no 503
GOOD_RECIPIENTS = "volunteers@lists.example.org,board@lists.example.org"
GOOD_VERDICTS = "dkim=PASS dmarc=PASS spf=PASS spam=PASS virus=PASS"
# Header text a client may send: printable Latin-1 (gunicorn itself refuses controls).
header_text = st.one_of(
    st.text(
        alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
        max_size=300,
    ),
    st.sampled_from(
        ["(" * 3000 + "a@example.org", "a@b," * 900, "dkim=PASS " * 300, "-1", "9" * 40]
    ),
)


@dataclass(frozen=True)
class Post:
    method: str
    headers: dict[str, str]
    body: bytes
    signed: bool
    well_formed: bool  # signed, with metadata and a body the receiver must accept


@st.composite
def posts(draw: st.DrawFn) -> Post:
    """Half of them honest (signed, with good metadata: they must be stored), the other
    half with anything in any field."""
    honest = draw(st.booleans())
    now = str(int(time.time()))
    mail = messages().map(lambda m: m[0])
    if honest:
        method, body, recipients, verdicts, timestamp = (
            "POST",
            draw(mail),
            GOOD_RECIPIENTS,
            GOOD_VERDICTS,
            now,
        )
    else:
        method = draw(st.sampled_from(["POST"] * 8 + ["GET", "PUT"]))
        body = draw(mail | st.binary(max_size=500))
        recipients = draw(st.just(GOOD_RECIPIENTS) | header_text)
        verdicts = draw(st.just(GOOD_VERDICTS) | header_text)
        timestamp = draw(st.just(now) | header_text | st.sampled_from(["0", now + "999"]))
    digest = hashlib.sha256(body).hexdigest()
    signature = signing.signature(SECRET.encode(), timestamp, recipients, verdicts, digest)
    signed = honest or draw(st.booleans())
    if not signed:
        signature = draw(st.one_of(st.just(""), st.just(signature[::-1]), header_text))
    headers = {
        signing.TIMESTAMP: timestamp,
        signing.RECIPIENTS: recipients,
        signing.VERDICTS: verdicts,
        signing.SIGNATURE: signature,
        "Content-Type": "message/rfc822",
    }
    if draw(st.booleans()):
        headers[signing.BODY_SHA256] = digest if honest else draw(st.just(digest) | header_text)
    dropped = [] if honest else draw(st.lists(st.sampled_from(sorted(headers)), max_size=2))
    headers = {k: v for k, v in headers.items() if k not in dropped}
    well_formed = (
        method == "POST"
        and signed
        and not dropped
        and (recipients, verdicts, timestamp) == (GOOD_RECIPIENTS, GOOD_VERDICTS, now)
        and headers.get(signing.BODY_SHA256, digest) == digest
        and (signing.BODY_SHA256 in headers or len(body) <= UNDECLARED_LIMIT)
        and body.startswith(b"From:")
    )
    return Post(method, headers, body, signed and signing.SIGNATURE not in dropped, well_formed)


def send(receiver: Receiver, post: Post) -> tuple[int, str, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", receiver.port, timeout=60)
    try:
        conn.request(post.method, "/mailrecv", body=post.body, headers=post.headers)
        response = conn.getresponse()
        return response.status, response.getheader("Content-Type", ""), response.read()
    finally:
        conn.close()


@budget(40)
@given(post=posts())
def test_any_request_gets_a_contract_answer(receiver: Receiver, post: Post) -> None:
    """Any request to /mailrecv is answered with a status of the contract and a JSON
    object: an error in one line, or the id of a message stored as sent. Unsigned posts
    are never stored; well-formed signed ones always are."""
    status, ctype, raw = send(receiver, post)
    log = receiver.log_path.read_text(errors="replace")
    assert "Traceback" not in log, log[log.find("Traceback") - 300 :]
    assert status in ANSWERS, (status, raw[:300])
    assert ctype == "application/json"
    answer = json.loads(raw)
    if status != 200:
        assert not post.well_formed, answer
        assert isinstance(answer["error"], str) and "\n" not in answer["error"]
        assert "Traceback" not in answer["error"]
        return
    assert post.signed
    stored = receiver.project.spool.message_path(answer["id"]).read_bytes()
    if not answer["duplicate"]:
        assert stored == post.body


def test_hostile_metadata_answers_4xx_without_a_traceback(receiver: Receiver) -> None:
    """Metadata that once broke the receiver answers as the contract says: recipient
    texts with thousands of nested comments (RecursionError in the address parser) are
    400, a signature with non-ASCII characters (TypeError in the HMAC comparison) is 401;
    both used to answer 503 and log a traceback."""
    body = b"From: a@b.org\n\nx\n"
    now = str(int(time.time()))
    for text in ("(" * 3000 + "a@example.org", "a@b," * 900, "\u00ff" * 200):
        headers = {signing.TIMESTAMP: now, signing.RECIPIENTS: text}
        headers |= {signing.VERDICTS: GOOD_VERDICTS, signing.SIGNATURE: "0" * 64}
        status, _, raw = send(receiver, Post("POST", headers, body, False, False))
        assert status == 400, raw
        assert "is not an address" in json.loads(raw)["error"]
    headers = {signing.TIMESTAMP: now, signing.RECIPIENTS: GOOD_RECIPIENTS}
    headers |= {signing.VERDICTS: GOOD_VERDICTS, signing.SIGNATURE: "\u00e9" * 64}
    status, _, raw = send(receiver, Post("POST", headers, body, False, False))
    assert (status, json.loads(raw)) == (401, {"error": "bad signature"})
    assert "Traceback" not in receiver.log_path.read_text(errors="replace")
