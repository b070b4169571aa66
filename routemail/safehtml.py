"""HTML from a held message made safe to show (nh3), and turned into plain text.

The sanitised HTML keeps structure and text only: no script, style, image,
form, frame or event handler survives, and a link keeps its href only when it
is an absolute http, https or mailto URL (never javascript:, data: or a path
on the moderation site itself). The pages that show it also forbid every
remote load with their Content-Security-Policy; either alone would stop a
hostile message, both together leave a mistake in one harmless.
"""

from __future__ import annotations

import html.parser
import re

import nh3

# The HTML given to the sanitiser at most; the rest is cut (the text view says so).
MAX_HTML_CHARS = 2 * 1024 * 1024

TAGS = frozenset(
    {
        "a", "abbr", "b", "blockquote", "br", "caption", "code", "dd", "del", "div", "dl",
        "dt", "em", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "ins", "kbd", "li", "ol",
        "p", "pre", "q", "s", "small", "span", "strong", "sub", "sup", "table", "tbody",
        "td", "tfoot", "th", "thead", "tr", "u", "ul",
    }
)  # fmt: skip
# Removed with everything inside them (the others not in TAGS keep their text).
DROPPED_WITH_CONTENT = frozenset(
    {"script", "style", "head", "title", "template", "noscript", "iframe", "object", "svg", "math"}
)
ATTRIBUTES = {"a": {"href", "title"}, "td": {"colspan", "rowspan"}, "th": {"colspan", "rowspan"}}
SCHEMES = frozenset({"http", "https", "mailto"})
_ABSOLUTE = re.compile(r"(?i)^(?:https?://[^\s/]|mailto:)")


def _keep(tag: str, attribute: str, value: str) -> str | None:
    """Only absolute links: a relative one would point into the moderation site."""
    if attribute == "href" and not _ABSOLUTE.match(value.strip()):
        return None
    return value


def sanitise(html: str) -> str:
    """html with only harmless structure and text left."""
    return nh3.clean(
        html[:MAX_HTML_CHARS],
        tags=set(TAGS),
        clean_content_tags=set(DROPPED_WITH_CONTENT),
        attributes={tag: set(names) for tag, names in ATTRIBUTES.items()},
        attribute_filter=_keep,
        strip_comments=True,
        link_rel="noopener noreferrer nofollow",
        url_schemes=set(SCHEMES),
    )


# Blocks start on a line of their own; paragraphs also leave an empty line around them.
LINES = frozenset({"br", "dd", "div", "dt", "li", "tr", "caption"})
PARAGRAPHS = frozenset(
    {"blockquote", "dl", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "ol", "p", "pre", "table", "ul"}
)


class _Text(html.parser.HTMLParser):
    """Text of sanitised (so well-formed, script-free) HTML: blocks on lines of their own,
    list items with a dash, links followed by their URL when it differs from the text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.pre = 0
        self.href: list[str | None] = []
        self.link_text: list[str] = []

    def _break(self, tag: str) -> None:
        wanted = 2 if tag in PARAGRAPHS else 1 if tag in LINES else 0
        ending = "".join(self.out[-2:])
        have = len(ending) - len(ending.rstrip("\n")) if self.out else wanted
        self.out.append("\n" * max(0, wanted - have))

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._break(tag)
        if tag == "li":
            self.out.append("- ")
        elif tag == "pre":
            self.pre += 1
        elif tag in ("td", "th") and self.out and not self.out[-1].endswith("\n"):
            self.out.append(" ")
        elif tag == "a":
            self.href.append(dict(attrs).get("href"))
            self.link_text.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "pre":
            self.pre = max(0, self.pre - 1)
        elif tag == "a" and self.href:
            href, text = self.href.pop(), self.link_text.pop()
            shown = href.strip().removeprefix("mailto:") if href else None
            if href and shown and shown.strip() != text.strip():
                self.out.append(f" <{href.strip()}>")
        self._break(tag)

    def handle_data(self, data: str) -> None:
        text = data if self.pre else re.sub(r"\s+", " ", data)
        if not self.pre and (not self.out or self.out[-1].endswith("\n")):
            text = text.lstrip()
        if self.link_text:
            self.link_text[-1] += text
        self.out.append(text)

    def text(self) -> str:
        lines = [line.rstrip() for line in "".join(self.out).split("\n")]
        return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip("\n")


def to_text(html: str) -> str:
    """The text a reader of html sees, as plain text."""
    parser = _Text()
    parser.feed(sanitise(html))
    parser.close()
    return parser.text()
