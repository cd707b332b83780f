"""bench/http_head.py's --quick smoke: it times both parsers and prints every figure."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_quick_run_prints_both_parsers_and_a_ratio_per_round() -> None:
    """Both ways' medians and ranges, and one ratio per round (2 in --quick)."""
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "http_head.py"), "--quick"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    for way in ("stdlib", "apps/httphead.py"):
        line = next(x for x in out.stdout.splitlines() if x.strip().startswith(way))
        assert re.search(r"median +\d+\.\d \(range \d+\.\d-\d+\.\d\)", line), line
    ratios = next(x for x in out.stdout.splitlines() if "per round" in x).split(":")[1]
    assert len(re.findall(r"\d+\.\d\d", ratios)) == 2, ratios
