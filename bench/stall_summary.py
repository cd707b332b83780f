"""Summarise the stall watch's lines (apps/stallwatch.py, DYNCAST_STALL_MS) in controller logs:
per log, how many stalls, how many ran at least 50 ms of the loop thread's CPU, the most CPU
and the longest; by kind (the first match in the sampled stacks), the long ones' count and
each kind's most CPU in one stall; the garbage collections logged (count and longest by
generation).

    .venv/bin/python bench/stall_summary.py DIR/controller-5000.log ...
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from pathlib import Path

GC = re.compile(r"dyncast: garbage collection of generation (\d) took [\d.]+ ms \(([\d.]+) ms CPU")
STALL = re.compile(r"dyncast: event loop stalled (\d+) ms \((\d+) ms CPU")
KINDS = (("_tick_handler", "tick"), ("audit.py", "audit"), ("flowstats", "table-read parse"),
         ("_flow_stats", "table read"), ("_decisions", "GET decisions"),
         ("encode <", "encode"), ("intake", "intake"), ("api.py", "REST"), ("gcpause", "gc"))


def kind(stack: str) -> str:
    """What a stall's sampled stacks show first (else `other`)."""
    return next((name for key, name in KINDS if key in stack), "other")


def stalls(path: Path) -> list[tuple[int, int, str]]:
    """(length ms, CPU ms, kind) of every stall logged in `path`."""
    lines = path.read_text(errors="replace").splitlines()
    out = []
    for i, line in enumerate(lines):
        m = STALL.match(line)
        if m:
            j = i + 1
            while j < len(lines) and lines[j].startswith("  ["):
                j += 1
            out.append((int(m[1]), int(m[2]), kind(" | ".join(lines[i + 1:j]))))
    return out


def collections(path: Path) -> dict[int, list[float]]:
    """The collections the app logged (with the stall watch on, apps/gcpause.py): their CPU
    in ms, by generation."""
    out: dict[int, list[float]] = {}
    for m in GC.finditer(path.read_text(errors="replace")):
        out.setdefault(int(m[1]), []).append(float(m[2]))
    return out


def main() -> None:
    """Print one summary line per log."""
    for arg in sys.argv[1:]:
        got = stalls(Path(arg))
        long = Counter(k for _, cpu, k in got if cpu >= 50)
        most: dict[str, int] = {}
        for _, cpu, k in got:
            most[k] = max(most.get(k, 0), cpu)
        print(f"{arg}: {len(got)} stalls; {sum(long.values())} with >= 50 ms CPU "
              f"{dict(long)}; most CPU {max((c for _, c, _ in got), default=0)} ms; longest "
              f"{max((s for s, _, _ in got), default=0)} ms; most CPU by kind {most}; "
              "collections logged by generation (count, most CPU ms) "
              f"{ {g: (len(v), max(v)) for g, v in sorted(collections(Path(arg)).items())} }")


if __name__ == "__main__":
    main()
