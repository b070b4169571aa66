"""Header field values from text: the one way text becomes a header, so that no line
break or control character can get into one.

Every header routemail writes from text (a subject from the API, a display name from
an incoming From, a list description or subject prefix from lists.toml, a value
repaired from an incoming header) is built here. The output is plain ASCII whatever
the input, and does not rely on the email package's folding (which, before the
CVE-2024-6923 fix, wrote out line breaks hidden in encoded words):

- C0 and C1 controls (CR, LF, NUL, ESC, NEL...), DEL, the Unicode line and paragraph
  separators, bidirectional overrides and isolates, and the byte order mark become
  spaces; runs of whitespace become one space.
- Non-ASCII text, and any word holding ``=?``, is RFC 2047-encoded by this module, so
  text that looks like an encoded word is shown as typed, never decoded into something
  else by a reader.
- Lines are folded at 78 characters where possible and never exceed 998, field name
  included; a word too long for a line is encoded as a run of encoded words, which
  readers join back without a space.
- An address is written as its canonical addr-spec (routemail.addresses), quoted local
  part included, never split or altered. A UTF-8 address (RFC 6532) is written only
  when the caller says the message may carry UTF-8 headers; otherwise it is left out,
  never written with replacement characters.
"""

from __future__ import annotations

import re

from routemail import addresses

MAX_LINE = 998  # RFC 5322 2.1.1, without the line break
FOLD_AT = 78  # RFC 5322 2.1.1: lines SHOULD be no longer
MAX_NAME_CHARS = 100  # a display name longer than this is cut
_ENCODED_WORD_MAX = 75  # RFC 2047 2
_PREFIX, _SUFFIX = "=?utf-8?q?", "?="
_ROOM = _ENCODED_WORD_MAX - len(_PREFIX) - len(_SUFFIX)
# C0 and C1 controls, DEL, U+2028/U+2029, bidi embeddings, overrides and isolates, BOM.
_UNWANTED = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff]")
# RFC 2047 5(3): the characters a Q-encoded word may carry as themselves anywhere,
# display names included.
_Q_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!*+-/")
_Q_TABLE = tuple(chr(b) if b in _Q_SAFE else f"={b:02X}" for b in range(256))
_ATOMS = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?: [A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")


def has_unwanted(text: str) -> bool:
    """Whether text holds a character no header may carry (a line break, a control...)."""
    return _UNWANTED.search(text) is not None


def one_line(text: str) -> str:
    """text without controls or line breaks, runs of spaces and tabs made single spaces
    (other spaces, such as no-break ones, are kept)."""
    return " ".join(word for word in _UNWANTED.sub(" ", text).split(" ") if word)


def encoded_words(text: str) -> list[str]:
    """text as Q-encoded UTF-8 words of at most 75 characters, each holding whole
    characters (RFC 2047 6.3: a reader decodes each word on its own)."""
    words: list[str] = []
    cur: list[str] = []
    size = 0
    for ch in text:
        enc = "_" if ch == " " else "".join(_Q_TABLE[b] for b in ch.encode("utf-8", "replace"))
        if size + len(enc) > _ROOM:
            words.append(_PREFIX + "".join(cur) + _SUFFIX)
            cur, size = [], 0
        cur.append(enc)
        size += len(enc)
    if cur:
        words.append(_PREFIX + "".join(cur) + _SUFFIX)
    return words


def unstructured(name: str, text: str) -> bytes:
    """The value of an unstructured field (Subject, Comments, X-...) showing text, with
    its leading space and LF folds, ready to follow "name:"."""
    limit = MAX_LINE - len(name) - 2  # "Name: word" fits on any line
    words: list[str] = []
    run: list[str] = []  # adjacent words to encode together: the spaces between them
    for word in one_line(text).split(" "):  # inside encoded words are kept
        if not word:
            continue
        if word.isascii() and "=?" not in word and len(word) <= limit:
            if run:
                words += encoded_words(" ".join(run))
                run = []
            words.append(word)
        else:
            run.append(word)
    if run:
        words += encoded_words(" ".join(run))
    return fold(name, words)


def phrase(name: str) -> str:
    """A display name as RFC 5322 writes one: atoms, a quoted string, or encoded words."""
    text = one_line(name)[:MAX_NAME_CHARS].strip()
    if not text:
        return ""
    if not text.isascii() or "=?" in text:
        return " ".join(encoded_words(text))
    if _ATOMS.fullmatch(text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def usable_address(address: str, utf8: bool = False) -> bool:
    """Whether address can stand in a header as it is: an addr-spec in the canonical form
    routemail.addresses writes (so nothing in it can end it early or start another),
    ASCII unless utf8."""
    if not (utf8 or address.isascii()):
        return False
    canonical = addresses.canonical(address)
    return canonical is not None and addresses.split(canonical)[0] == addresses.split(address)[0]


def mailbox(name: str, address: str, utf8: bool = False) -> str:
    """'Display Name <address>' (or the bare address without a name); the address must
    be usable_address()."""
    return " ".join(_mailbox_words(name, address, utf8))


def _mailbox_words(name: str, address: str, utf8: bool) -> list[str]:
    """The words of a mailbox; the address is one word, whatever spaces its quoted
    local part holds, so folding never touches it."""
    if not usable_address(address, utf8):
        raise ValueError(f"{address!r} cannot stand in a header")
    shown = phrase(name)
    return [*shown.split(" "), f"<{address}>"] if shown else [address]


def address_list(name: str, pairs: list[tuple[str, str]], utf8: bool = False) -> bytes | None:
    """The value of an address field listing (display name, address) pairs; pairs with
    an address that cannot stand in a header are left out; None when none is left. utf8:
    the message may carry UTF-8 addresses (RFC 6532)."""
    items = [_mailbox_words(n, a, utf8) for n, a in pairs if usable_address(a, utf8)]
    if not items:
        return None
    for item in items[:-1]:
        item[-1] += ","
    return fold(name, [w for item in items for w in item], utf8)


def fold(name: str, words: list[str], utf8: bool = False) -> bytes:
    """Words joined by spaces into lines of at most 78 characters where possible and never
    more than 998 with the field name. Callers give words that fit; a structured token
    too long even for 998 (which cannot be encoded) is cut, the only change of meaning.
    The value is ASCII (anything else a "?") unless utf8, when it is UTF-8."""
    first = len(name) + 2  # "Name: " on the first line, one space on the others
    limit = MAX_LINE - first
    lines: list[str] = []
    cur = ""
    width = first
    for word in words:
        word = _UNWANTED.sub("", word)
        for chunk in [word[i : i + limit] for i in range(0, len(word), limit)]:
            if cur and width + len(cur) + 1 + len(chunk) > FOLD_AT:
                lines.append(cur)
                cur, width = chunk, 1
            else:
                cur = f"{cur} {chunk}" if cur else chunk
    if cur:
        lines.append(cur)
    if not lines:
        return b""
    value = " " + "\n ".join(lines)
    return value.encode("utf-8") if utf8 else value.encode("ascii", errors="replace")
