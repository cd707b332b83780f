"""bench/rest_path.py's --quick smoke: it runs both ways and prints every figure."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_quick_run_prints_both_ways_and_a_ratio_per_round() -> None:
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "rest_path.py"), "--quick"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    for way in ("long way", "short way"):
        line = next(x for x in out.stdout.splitlines() if way in x)
        assert re.search(r"median +\d+\.\d", line), line
    ratios = next(x for x in out.stdout.splitlines() if "per round" in x).split(":")[1]
    assert len(re.findall(r"\d+\.\d\d", ratios)) == 2, ratios
