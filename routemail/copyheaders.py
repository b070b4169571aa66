"""Which header fields a per-recipient copy keeps, drops and adds (routemail.copy
builds the header block with these rules; docs/deliverability.md lists the result)."""

from __future__ import annotations

import email.utils
import hashlib
from dataclasses import dataclass

from routemail import addresses
from routemail.config import MailingList, Site
from routemail.rewrite import encode, headers
from routemail.rewrite.headers import Field

LOOP_HEADER = "X-Loop"

# Fields the copy never carries over: signatures and trace that no longer hold, list
# fields of other lists, and what this router sets itself.
REMOVED = frozenset(
    {
        "dkim-signature",
        "domainkey-signature",
        "authentication-results",
        "return-path",
        "received-spf",
        "delivered-to",
        LOOP_HEADER.lower(),
        "precedence",
        "sender",
        "bcc",
        "content-length",
        "errors-to",
        "return-receipt-to",
        "disposition-notification-to",
        "x-original-from",
        "reply-to",
    }
)
REMOVED_PREFIXES = ("arc-", "x-ses-", "list-")
# Fields a message has at most once (RFC 5322 3.6, RFC 2045): a repeat is dropped.
SINGLE = frozenset(
    {
        "date",
        "to",
        "cc",
        "message-id",
        "in-reply-to",
        "references",
        "mime-version",
        "content-type",
        "content-transfer-encoding",
        "content-disposition",
    }
)


def internationalised(fields: list[Field]) -> bool:
    """Whether the message is an internationalised one (RFC 6532): its From field is
    raw UTF-8."""
    values = [f.value for f in fields if f.key == "from"]
    if not values or values[0].isascii():
        return False
    try:
        values[0].decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def has_mime_fields(fields: list[Field]) -> bool:
    return any(f.key in ("content-type", "content-transfer-encoding") for f in fields)


def reply_to(
    policy: str,
    list_address: str,
    base: list[Field],
    author: headers.Author,
    problems: list[str],
) -> Field | None:
    """Reply-To per the list's policy (author, list or both). A UTF-8 address goes in
    only when the message is an internationalised one (its From is raw UTF-8): a reader
    of an ASCII message may not handle it; it is left out, and problems says so."""
    utf8 = internationalised(base)

    def may_name(address: str) -> bool:
        if utf8 or address.isascii():
            return True
        problems.append(
            f"Reply-To: {address} left out: a UTF-8 address, and the message's"
            " From is not UTF-8 (RFC 6532)"
        )
        return False

    pairs: list[tuple[str, str]] = []
    if policy in ("author", "both"):
        originals = [f for f in base if f.key == "reply-to"]
        if originals:
            text = headers.decode_8bit(originals[0].value).replace("\n", " ")
            found = [
                (headers.decode_words(n), addresses.canonical(a))
                for n, a in headers.parse_addresses(text)
            ]
            pairs = [(n, a) for n, a in found if a and may_name(a)]
        if not pairs and author.address and may_name(author.address):
            pairs = [(author.name, author.address)]
    if policy in ("list", "both"):
        pairs.append(("", list_address))
    return headers.address_field("Reply-To", pairs, utf8)


@dataclass(frozen=True)
class ListIdentity:
    """What a copy needs to know about the list it goes out on."""

    mlist: MailingList
    site: Site
    secret: bytes

    @property
    def address(self) -> str:
        return f"{self.mlist.name}@{self.site.domain}"

    @property
    def list_id(self) -> str:
        return f"{self.mlist.name}.{self.site.domain}"

    @property
    def bounces(self) -> str:
        return f"{self.mlist.name}-bounces@{self.site.domain}"

    @property
    def unsubscribe_address(self) -> str:
        return f"{self.mlist.name}-unsubscribe@{self.site.domain}"


@dataclass(frozen=True)
class HeaderBlock:
    """A copy's header fields, before and after the recipient's List-Unsubscribe."""

    before: list[Field]
    after: list[Field]
    moved: list[Field]  # a wrapped message's Content-* fields, for the part it becomes


def header_block(
    base: list[Field],
    ident: ListIdentity,
    wrapped: bool,
    boundary: bytes,
    now: float,
    raw: bytes,
    problems: list[str],
) -> HeaderBlock:
    """The copy's fields from the message's (base): kept, cleaned, rewritten or added;
    what was repaired is appended to problems."""
    author = headers.author_of(base)
    if author.problem:
        problems.append(f"From: {author.problem}; the copy is from the list itself")
    out, moved = _kept(base, ident, author, wrapped, problems)
    keys = {f.key for f in base}
    if "from" not in keys:
        out.insert(0, headers.munged_from(author, ident.mlist.name, ident.address))
    out.extend(_added(base, out, ident, author, now, raw, problems))
    help_uri = f"<mailto:{ident.site.admin}?subject=help%20with%20{ident.mlist.name}>"
    after = [
        Field("List-Unsubscribe-Post", b" List-Unsubscribe=One-Click"),
        Field("List-Post", f" <mailto:{ident.address}>".encode()),
        Field("List-Help", f" {help_uri}".encode()),
        Field("Precedence", b" list"),
        Field(LOOP_HEADER, f" {ident.site.domain}".encode()),
    ]
    if wrapped or ("mime-version" not in keys and has_mime_fields(out)):
        after.append(Field("MIME-Version", b" 1.0"))
    if wrapped:
        after.append(Field("Content-Type", b' multipart/mixed; boundary="' + boundary + b'"'))
    return HeaderBlock(out, after, moved)


def _kept(
    base: list[Field],
    ident: ListIdentity,
    author: headers.Author,
    wrapped: bool,
    problems: list[str],
) -> tuple[list[Field], list[Field]]:
    """The message's own fields the copy keeps, in their order (From and Subject
    rewritten), and those a wrapped message moves into its inner part."""
    mlist = ident.mlist
    out: list[Field] = []
    moved: list[Field] = []
    seen: set[str] = set()
    for f in base:
        k = f.key
        if k in REMOVED or k.startswith(REMOVED_PREFIXES) or (k in SINGLE and k in seen):
            continue
        seen.add(k)
        if wrapped and (k.startswith("content-") or k == "mime-version"):
            if k.startswith("content-"):
                moved.append(f)
            continue
        if k == "from":
            if not any(o.key == "from" for o in out):
                out.append(headers.munged_from(author, mlist.name, ident.address))
            continue
        if k == "subject":
            if not any(o.key == "subject" for o in out):
                subject = headers.prefixed_subject(base, mlist.subject_prefix)
                if subject is not None:
                    out.append(subject)
            continue
        if k == "date" and not headers.valid_date(f):
            problems.append("unreadable Date header: replaced")
            continue
        cleaned = headers.clean(f)
        if cleaned is not None:
            out.append(cleaned)
    return out, moved


def _added(
    base: list[Field],
    kept: list[Field],
    ident: ListIdentity,
    author: headers.Author,
    now: float,
    raw: bytes,
    problems: list[str],
) -> list[Field]:
    """The fields the copy adds after the kept ones: what a message must have (Date,
    Message-ID, To), Reply-To, X-Original-From, Sender, List-Id."""
    mlist = ident.mlist
    keys = {f.key for f in base}
    added: list[Field] = []
    if "subject" not in keys and (subject := headers.prefixed_subject(base, mlist.subject_prefix)):
        added.append(subject)
    if not any(f.key == "date" for f in kept):
        added.append(Field("Date", b" " + email.utils.formatdate(now, usegmt=True).encode()))
        problems.append("no Date header: added one")
    if not any(f.key == "message-id" for f in kept):
        digest = hashlib.sha256(raw).hexdigest()[:32]
        added.append(Field("Message-ID", f" <{digest}.routemail@{ident.site.domain}>".encode()))
        problems.append("no usable Message-ID header: added one")
    if "to" not in keys and "cc" not in keys:
        added.append(Field("To", f" {ident.address}".encode()))
    if field := reply_to(mlist.reply_to, ident.address, base, author, problems):
        added.append(field)
    utf8 = internationalised(base)
    pair = [(author.name, author.address)] if author.address else []
    if pair and (original := headers.address_field("X-Original-From", pair, utf8)):
        added.append(original)
    added.append(Field("Sender", f" {ident.bounces}".encode()))
    shown = encode.phrase(mlist.description)
    list_id = f"{shown} <{ident.list_id}>" if shown else f"<{ident.list_id}>"
    added.append(Field("List-Id", headers.fold("List-Id", list_id.split())))
    return added
