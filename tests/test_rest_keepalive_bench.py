"""bench/rest_keepalive.py's --quick smoke: both ways run against the real server, every round
has its figures, and the run fails if a kept-alive connection is not kept."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_quick_run_prints_both_ways_per_round_and_the_ratios() -> None:
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "rest_keepalive.py"), "--quick"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    rounds = [x for x in out.stdout.splitlines() if re.match(r" +\d+ ", x)]
    assert len(rounds) == 2, out.stdout
    for line in rounds:
        assert len(re.findall(r"\d+\.\d+|\d+", line)) == 7, line
    summary = next(x for x in out.stdout.splitlines() if x.startswith("kept/new"))
    assert len(re.findall(r"\d+\.\d\d", summary)) == 6, summary
