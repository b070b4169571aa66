"""List header and footer templates: {placeholders} filled in per recipient."""

from __future__ import annotations

import string
from collections.abc import Mapping
from typing import Any

FIELDS = ("list", "list_address", "description", "recipient", "unsubscribe_url", "site")


def check_template(text: Any) -> str | None:
    """None when text is a usable template, else what is wrong with it."""
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as exc:
        return f"bad template ({exc}); write a literal brace as {{{{ or }}}}"
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if name not in FIELDS:
            return f"unknown placeholder {{{name}}}; expected one of " + ", ".join(
                f"{{{f}}}" for f in FIELDS
            )
        if spec or conversion:
            return f"placeholder {{{name}}} takes no format or conversion"
    return None


def render(text: str, values: Mapping[str, str]) -> str:
    """Fill in a template that check_template accepted."""
    return text.format_map(values) if text else ""
