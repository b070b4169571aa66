"""The monthly action log: lines written one by one or grouped into one write."""

from __future__ import annotations

from pathlib import Path

from routemail.actionlog import ActionLog


def lines(directory: Path) -> list[str]:
    return [line for path in sorted(directory.iterdir()) for line in path.read_text().splitlines()]


def test_grouped_lines_are_written_together_at_the_end(tmp_path: Path) -> None:
    log = ActionLog(tmp_path / "log")
    log.write("a", "first")
    with log.grouped():
        log.write("b", "second")
        with log.grouped():  # nested: still one group
            log.write("c", "third")
        assert [line.split(" ", 1)[1] for line in lines(tmp_path / "log")] == ["a first"]
    log.write("d", "fourth")
    got = [line.split(" ", 1)[1] for line in lines(tmp_path / "log")]
    assert got == ["a first", "b second", "c third", "d fourth"]
    log.close()


def test_lines_held_in_a_group_are_not_lost_when_the_log_closes(tmp_path: Path) -> None:
    log = ActionLog(tmp_path / "log")
    with log.grouped():
        log.write("a", "held")
        log.close()
    assert [line.split(" ", 1)[1] for line in lines(tmp_path / "log")] == ["a held"]
