"""Style-preserving, locked, atomic edits of lists.toml."""

from __future__ import annotations

import multiprocessing
import tomllib
from pathlib import Path

import pytest

from routemail import config, listedit
from tests.conftest import BASE_CONFIG

CONFIG = (
    "# Lists of the example site.\n"
    + BASE_CONFIG.replace(
        'members = ["ann@example.com", "bob@example.net", "coordinator@example.org"]',
        "members = [\n"
        '    "ann@example.com",    # founder\n'
        '    "bob@example.net",\n'
        '    "coordinator@example.org",\n'
        "]",
    )
    + "\n# [[dynamic]] rules would follow here.\n"
)


@pytest.fixture
def lists_toml(tmp_path: Path) -> Path:
    """A lists.toml with comments and a multi-line members array."""
    path = tmp_path / "lists.toml"
    path.write_text(CONFIG)
    return path


def test_adding_a_member_keeps_comments_and_layout(lists_toml: Path) -> None:
    """Only the members array changes; every comment and the rest of the text stay as written."""
    assert listedit.add_member(lists_toml, "volunteers", "zoe@example.net")
    text = lists_toml.read_text()
    assert text.replace('    "zoe@example.net",\n', "") == CONFIG
    assert config.load(lists_toml).lists["volunteers"].members[-1] == "zoe@example.net"
    assert not listedit.add_member(lists_toml, "volunteers", "zoe@example.net")
    assert lists_toml.read_text() == text


def test_removing_a_member_keeps_the_rest(lists_toml: Path) -> None:
    """Removing one address leaves the other members and the comments alone."""
    assert listedit.remove_member(lists_toml, "volunteers", "bob@example.net")
    assert lists_toml.read_text() == CONFIG.replace('    "bob@example.net",\n', "")
    assert not listedit.remove_member(lists_toml, "volunteers", "bob@example.net")


def test_adding_a_list(lists_toml: Path) -> None:
    """A new list gets its administrator as moderator and member; a second one is refused."""
    listedit.add_list(lists_toml, "club", "ada@example.com", "Our club")
    text = lists_toml.read_text()
    # In a place of its own: after board, above the comment that introduces what follows.
    comment = "\n# [[dynamic]] rules would follow here.\n"
    assert text.startswith(CONFIG.removesuffix(comment) + "\n[lists.club]\n")
    assert text.endswith('members = ["ada@example.com"]\n' + comment)
    club = tomllib.loads(text)["lists"]["club"]
    assert club == {
        "description": "Our club",
        "moderators": ["ada@example.com"],
        "posters": "members",
        "members": ["ada@example.com"],
    }
    with pytest.raises(listedit.ListExists):
        listedit.add_list(lists_toml, "club", "eve@example.net")


def test_an_edit_that_breaks_validation_leaves_the_file_alone(lists_toml: Path) -> None:
    """A change that routemail.config would reject is not written."""
    lists_toml.write_text(
        CONFIG + '\n[[dynamic]]\npattern = "club-.*"\nresolver = "command"\ncommand = ["true"]\n'
    )
    before = lists_toml.read_text()
    config.load(lists_toml)
    with pytest.raises(listedit.ListEditError, match="dynamic"):
        listedit.add_list(lists_toml, "club-a", "ada@example.com")
    assert lists_toml.read_text() == before
    assert not list(lists_toml.parent.glob(".lists.toml.*.tmp"))


def test_unknown_list(lists_toml: Path) -> None:
    """Editing the members of a list that is not there names it."""
    with pytest.raises(listedit.NoSuchList, match="nosuch"):
        listedit.add_member(lists_toml, "nosuch", "zoe@example.net")


def _add_many(path: str, prefix: str) -> None:
    for i in range(15):
        listedit.add_member(Path(path), "board", f"{prefix}{i}@example.com")


def test_concurrent_edits_lose_nothing(lists_toml: Path) -> None:
    """Processes adding members at the same time all see their additions kept."""
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_add_many, args=(str(lists_toml), p)) for p in ("x", "y", "z")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    board = config.load(lists_toml).lists["board"].members
    assert len(board) == 2 + 45
    assert lists_toml.read_text().startswith("# Lists of the example site.\n")
