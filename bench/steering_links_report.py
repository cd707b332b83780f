"""How a congested path is priced, measured: the load sweep's failing cells (issue 22) run with
one link-pricing setting each against p2c in the same session, side by side.

Boundary: saved sweep runs in (bench/results/steering-sweep-<tag>.json, one file per setting,
each with its own p2c runs), markdown lines out; no Mininet.

    .venv/bin/python bench/steering_links_report.py            # the table, to stdout
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.steering_sweep_report import _cells, _spread, _utils, ratios  # noqa: E402

RESULTS = ROOT / "bench" / "results"
SETTINGS = {  # tag -> the setting in words
    "link-defaults": "congestion_ms 10 (the default before)",
    "link-mtu": "congestion_ms 1.2 (one 1500-byte packet at 10 Mbit/s)",
    "link-3": "congestion_ms 3",
    "link-measured": "measured delay, congestion_ms 0",
}


def load(tags: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """The saved runs of each setting that has a results file."""
    out = {}
    for tag in tags or list(SETTINGS):
        path = RESULTS / f"steering-sweep-{tag}.json"
        if path.exists():
            out[tag] = json.loads(path.read_text())
    return out


def commands(saved: dict[str, dict[str, Any]]) -> list[str]:
    """The commands that produced each setting's runs, as their logs record them."""
    out = []
    for tag in saved:
        log = RESULTS / f"steering-sweep-{tag}.txt"
        for line in log.read_text().splitlines() if log.exists() else []:
            if line.startswith("== ") and "steering_sweep " in line:
                args = line.split("steering_sweep ", 1)[1].split("; loadavg")[0]
                out.append(f"`sudo .venv/bin/python bench/steering_sweep.py {args}`")
    return out


def table(saved: dict[str, dict[str, Any]]) -> list[str]:
    """Per cell: dyncast's p95 over the best other policy's (p2c, and least-loaded where it
    ran) of the same seed and session, median (range) over the seeds, for each setting; then
    e3's utilisation under each."""
    cells = {tag: _cells(d["runs"]) for tag, d in saved.items()}
    keys = list(dict.fromkeys(k for c in cells.values() for k in c))
    head = " | ".join(f"dyncast / best other, {SETTINGS.get(t, t)}" for t in saved)
    lines = [f"| scenario | target load | {head} |",
             "| --- | ---: |" + " ---: |" * len(saved)]
    for key in keys:
        row = []
        for tag in saved:
            got, _ = ratios(cells[tag].get(key, {}))
            row.append(_spread(got, 2) if got else "-")
        lines.append(f"| {key[0]} | {key[1]:g} | " + " | ".join(row) + " |")
    lines.append("")
    for tag, d in saved.items():
        parts = []
        for scenario in dict.fromkeys(r["scenario"] for r in d["runs"]):
            got = _utils([r for r in d["runs"] if r["scenario"] == scenario], "e3", (0.8, 0.95))
            parts.append(f"{scenario}: " + ", ".join(f"{p} {v}" for p, v in got.items()))
        lines.append(f"- e3's utilisation at 0.8 and 0.95, {SETTINGS.get(tag, tag)}: "
                     + "; ".join(parts))
    return lines


def main() -> int:
    """Print the comparison of every setting measured so far."""
    saved = load()
    if not saved:
        print("no bench/results/steering-sweep-link-*.json yet", file=sys.stderr)
        return 1
    print("\n".join(["Commands: " + ", ".join(commands(saved)), "", *table(saved)]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
