"""bench/table_read.py runs: the fast path reads what the framework reads and the audit of a
table the core programmed finds nothing to repair (it exits 1 otherwise)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_table_read_bench_runs_and_writes_its_figures(tmp_path: Path) -> None:
    out = tmp_path / "table_read.txt"
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "table_read.py"),
                           "--instances", "300", "--rounds", "1", "--output", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    text = out.read_text()
    for figure in ("framework parse", "fast parse", "audit, caches emptied", "audit "):
        assert figure in text
