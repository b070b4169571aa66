"""Health you can ask for: /healthz reasons, `routemail status`, /metrics, admin alerts."""

from __future__ import annotations

import subprocess
import sys

from routemail import config as configmod
from tests.conftest import BASE_CONFIG, Project


def test_monitoring_section_is_validated(project: Project) -> None:
    """[monitoring] takes positive minutes; anything else is named with its line."""
    project.write_config(BASE_CONFIG + "\n[monitoring]\npending_alert_minutes = 15\n")
    assert configmod.load(project.config_path).monitoring.pending_alert_minutes == 15.0
    project.write_config(
        BASE_CONFIG + "\n[monitoring]\ndelivery_alert_minutes = -1\npending_minutes = 3\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "routemail", "check"],
        env=project.env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "monitoring.delivery_alert_minutes" in done.stderr
    assert "monitoring.pending_minutes" in done.stderr
