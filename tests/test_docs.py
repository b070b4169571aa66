"""The documentation stands on its own: every link inside the repository leads
somewhere, and nothing points at documents the repository does not hold."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import ROOT

DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])
LINK = re.compile(r"\]\(([^)\s]+)\)")
MARKDOWN_NAME = re.compile(r"[\w.-]+\.md\b")


def anchors(path: Path) -> set[str]:
    """GitHub-style anchors of a Markdown file's headings."""
    found = set()
    for line in path.read_text().splitlines():
        if m := re.match(r"#+ (.*)", line):
            slug = re.sub(r"[^\w\- ]", "", m[1].strip().lower()).replace(" ", "-")
            found.add(slug)
    return found


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_relative_links_lead_somewhere(doc: Path) -> None:
    """Each relative link names a file that exists, and each #anchor a heading in it."""
    for target in LINK.findall(doc.read_text()):
        if re.match(r"[a-z]+:", target):
            continue  # a URL, not a file of the repository
        name, _, anchor = target.partition("#")
        path = (doc.parent / name).resolve() if name else doc
        assert path.exists(), f"{doc.name}: {target}"
        if anchor:
            assert anchor in anchors(path), f"{doc.name}: {target}"


def test_nothing_refers_to_documents_outside_the_repository() -> None:
    """Docs, code and deploy files name only Markdown files the repository holds."""
    held = {p.name for p in ROOT.rglob("*.md") if ".venv" not in p.parts}
    files = [*DOCS, *ROOT.glob("*/**/*.py"), *(ROOT / "deploy").iterdir()]
    files = [f for f in files if ".venv" not in f.parts and f.is_file()]
    cited = [
        f"{f.relative_to(ROOT)}: {name}"
        for f in files
        for name in set(MARKDOWN_NAME.findall(f.read_text(errors="replace")))
        if name not in held
    ]
    assert cited == []
