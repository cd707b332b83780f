"""bench/rest_server_ab.py's --quick smoke: both servers timed each round, the ratios printed;
a --base without a REST server is refused."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = str(ROOT / "bench" / "rest_server_ab.py")


def test_quick_run_against_this_tree_prints_every_round() -> None:
    """With --base this very tree: two rounds each way, one ratio per round."""
    out = subprocess.run([sys.executable, BENCH, "--base", str(ROOT), "--quick"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    for label in ("base (", "this tree:"):
        line = next(x for x in out.stdout.splitlines() if x.strip().startswith(label))
        assert re.search(r": \d+, \d+ \(median \d+\)$", line), line
    ratios = next(x for x in out.stdout.splitlines() if "per round" in x)
    assert len(re.findall(r"\d+\.\d\d", ratios)) == 3, ratios


def test_a_base_without_a_rest_server_is_refused(tmp_path: Path) -> None:
    """Exit 2 naming --base when the directory is not a checkout."""
    out = subprocess.run([sys.executable, BENCH, "--base", str(tmp_path), "--quick"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "--base" in out.stderr
