"""List header and footer templates: {placeholders} filled in per recipient."""

from __future__ import annotations

import html
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


class Template:
    """A checked template, parsed once and rendered many times (as text or as HTML)."""

    def __init__(self, text: str) -> None:
        if problem := check_template(text):
            raise ValueError(problem)
        self.text = text
        self.pieces: tuple[tuple[str, str | None], ...] = tuple(
            (literal, name) for literal, name, _, _ in string.Formatter().parse(text)
        )

    def __bool__(self) -> bool:
        return bool(self.text)

    def render(self, values: Mapping[str, str]) -> str:
        return _line_breaks(
            "".join(
                literal + (values[name] if name is not None else "")
                for literal, name in self.pieces
            )
        )

    def render_html(self, values: Mapping[str, str]) -> str:
        """The rendered text as an HTML fragment: escaped, line breaks kept, the URL a link."""
        out = []
        for literal, name in self.pieces:
            out.append(html.escape(literal, quote=False))
            if name == "unsubscribe_url":
                url = html.escape(values[name])
                out.append(f'<a href="{url}">{url}</a>')
            elif name is not None:
                out.append(html.escape(values[name], quote=False))
        return _line_breaks("".join(out)).replace("\n", "<br>\n")


def _line_breaks(text: str) -> str:
    """text with LF line breaks only and no NUL: a CR from lists.toml (or a value) must
    not reach the copy's body as a bare CR, which servers read differently."""
    if "\r" in text or "\0" in text:
        return text.replace("\r\n", "\n").replace("\r", "\n").replace("\0", "")
    return text
