"""docs/prometheus/alerts.yml with Prometheus' own tool: `promtool check rules` (the PromQL
parses, the rules load) and `promtool test rules docs/prometheus/alerts_test.yml` (alerts fire
on what they are for, e.g. a switch's first OpenFlow error of a type). promtool is Debian's
`prometheus` package, which scripts/setup.sh unpacks into .venv/bin ($DYNCAST_PROMTOOL names
another); without it the test skips, saying so:
tests/test_metrics_documented.py and test_dashboards.py check the rules' metrics without it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

RULES = Path(__file__).resolve().parent.parent / "docs" / "prometheus"


def _promtool() -> str:
    beside = Path(sys.executable).parent / "promtool"  # where scripts/setup.sh unpacks it
    path = (os.environ.get("DYNCAST_PROMTOOL") or shutil.which("promtool")
            or (str(beside) if beside.exists() else None))
    if path is None:
        pytest.skip("promtool not found (apt-get install prometheus, or set DYNCAST_PROMTOOL)")
    return path


@pytest.mark.parametrize("args", [["check", "rules", "alerts.yml"],
                                  ["test", "rules", "alerts_test.yml"]])
def test_promtool_accepts_the_rules_and_their_tests(args: list[str]) -> None:
    """The rules load, and each unit test's alerts fire (or not) as written."""
    done = subprocess.run([_promtool(), *args], cwd=RULES, capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
