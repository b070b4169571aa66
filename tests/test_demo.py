"""`make demo`, as the README promises it: the example mail through the receiver under
gunicorn and routemail, and a table of what became of each message."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT


def test_the_demo_routes_every_example_and_tells_what_happened(tmp_path: Path) -> None:
    """Run from a copy of examples/, so its data/demo is the test's own."""
    examples = tmp_path / "examples"
    shutil.copytree(ROOT / "examples", examples, ignore=shutil.ignore_patterns("serv.sqlite3"))
    database = sqlite3.connect(examples / "serv.sqlite3")
    database.executescript((examples / "serv.sql").read_text())
    database.close()

    done = subprocess.run(
        [sys.executable, str(examples / "demo.py")],
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("posted ") == 6, done.stdout
    rows = {line[:37].strip(): line[37:].split() for line in table(done.stdout)}
    assert rows["Food bank shift on Saturday"][:4] == ["volunteers", "done", "sent", "x3,"]
    assert rows["Exclusive discount for your voluntee"][:2] == ["volunteers", "held"]
    assert "held for moderation, author told" in " ".join(
        rows["Exclusive discount for your voluntee"]
    )
    assert rows["Question about volunteering"][:5] == ["info", "done", "forwarded", "to", "admin"]
    assert rows["Deployment drill: bring your card ke"][-1] == "8"
    outbox = tmp_path / "data" / "demo" / "maillist" / "outbox" / "new"
    assert f"The outbox holds {len(list(outbox.iterdir()))} messages" in done.stdout


def table(output: str) -> list[str]:
    """The rows of the demo's table, without its heading."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("SUBJECT"))
    rows = []
    for line in lines[start + 1 :]:
        if not line.strip():
            break
        rows.append(line)
    return rows
