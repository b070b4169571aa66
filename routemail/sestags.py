"""SES message tag values: a reversible encoding into the characters SES allows.

SES accepts only letters, digits, "_" and "-" in tag names and values, but
list names may hold "." and "+"; each other byte becomes "_" and two hex
digits, so a bounce or complaint event names the list exactly.
"""

from __future__ import annotations

import re

SAFE = re.compile(r"[A-Za-z0-9-]")
ESCAPE = re.compile(r"_([0-9a-f]{2})")
MAX_LENGTH = 256


def encode(value: str) -> str:
    out = "".join(
        ch if SAFE.fullmatch(ch) else "".join(f"_{b:02x}" for b in ch.encode("utf-8"))
        for ch in value
    )
    return out[:MAX_LENGTH] or "_"


def decode(value: str) -> str:
    raw = ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), value)
    return raw.encode("latin-1", "replace").decode("utf-8", "replace")
