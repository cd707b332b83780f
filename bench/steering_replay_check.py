"""The replay's ratios against the Mininet sweeps of the same settings (issue 22).

Boundary: saved results in (bench/results/steering-replay-TAG.json from
bench/steering_replay.py, bench/results/steering-sweep-TAG.json from bench/steering_sweep.py),
text out; no Mininet. For each setting the replay priced and a sweep then measured: per cell,
dyncast's p95 over the best other policy's of the same seed, measured (median and range over
the seeds; against its own session's other policies, and against the other policies of the
sweep the replay's ratios are over, which sets it like for like beside the replay's), and the
share of dyncast's requests at the congested site. A
sweep run for dyncast alone is judged against the other policies of the sweep named as its
baselines (the same seeds; those policies read none of these settings).

    .venv/bin/python bench/steering_replay_check.py        # prints and saves the table
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from statistics import median
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.steering_sweep_report import _cells, ratios, verdict  # noqa: E402

RESULTS = ROOT / "bench" / "results"
REPLAY = "trace"  # the replay's tag
REPLAY_BASE = "queue-model-10"  # the sweep whose baselines the replay's ratios are over
# the replay's policy name -> (the sweep that measured it, the sweep its baselines come from)
MEASURED = {
    "defaults": ("queue-model-10", "queue-model-10"),
    "allowance 1, price 5, spread 0.3": ("qm-allowance", "qm-allowance"),
    "allowance 1, price 2, spread 0.3": ("qm-allowance-price-2", "qm-allowance-price-2"),
    "allowance 0.5, price 2, spread 0": ("qm-allowance-0.5-price-2-spread-0",
                                         "qm-allowance-price-2"),
}
LOADS = (0.6, 0.8, 0.95)
CONGESTED = "e3"


def _runs(tag: str, results: Path) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = json.loads(
        (results / f"steering-sweep-{tag}.json").read_text())["runs"]
    return runs


def measured(tag: str, baselines: str, results: Path = RESULTS) -> list[dict[str, Any]]:
    """A sweep's dyncast runs at LOADS with their cell's other policies (from `baselines` when
    the sweep ran dyncast alone). ValueError when a dyncast run has no other to be judged by."""
    runs = [r for r in _runs(tag, results) if r["target_load"] in LOADS]
    if all(r["policy"] == "dyncast" for r in runs):
        runs += [r for r in _runs(baselines, results)
                 if r["policy"] != "dyncast" and r["target_load"] in LOADS]
    judged = {(r["scenario"], r["target_load"], r["seed"]) for r in runs
              if r["policy"] != "dyncast" and r["p95_ms"] is not None}
    for r in runs:
        if r["policy"] == "dyncast" and (r["scenario"], r["target_load"], r["seed"]) not in judged:
            raise ValueError(f"{tag}: {r['scenario']} {r['target_load']:g} seed {r['seed']} "
                             f"has no other policy's run to be judged against")
    return runs


def replayed(results: Path = RESULTS) -> dict[tuple[str, str, float], list[float]]:
    """The replay's ratios per (policy, scenario, load), one per seed."""
    rows = json.loads((results / f"steering-replay-{REPLAY}.json").read_text())["runs"]
    out: dict[tuple[str, str, float], list[float]] = {}
    for row in rows:
        for name, v in row["replayed"].items():
            out.setdefault((name, row["scenario"], row["target_load"]), []).append(v["ratio"])
    return out


def _range(values: list[float], fmt: str = ".2f") -> str:
    return f"{median(values):{fmt}} ({min(values):{fmt}}-{max(values):{fmt}})"


def lines(results: Path = RESULTS) -> list[str]:
    """The table, one line per setting and cell (every setting's sweep must be saved)."""
    predicted = replayed(results)
    out = ["dyncast p95 / best other's of the same seed, median (range) over the seeds: "
           "measured (against its session's other policies, with issue 22's verdict, then "
           f"against {REPLAY_BASE}'s), replayed (against {REPLAY_BASE}'s); the congested site's "
           "share of dyncast's requests (measured)."]
    for name, (tag, baselines) in MEASURED.items():
        out.append(f"== {name}: bench/results/steering-sweep-{tag}.json"
                   + (f" (baselines: {baselines})" if baselines != tag else ""))
        others = _cells([r for r in _runs(REPLAY_BASE, results) if r["policy"] != "dyncast"])
        for (scenario, load), policies in _cells(measured(tag, baselines, results)).items():
            got, best = ratios(policies)
            # the same dyncast runs over the replay's baselines: like for like with the replay
            alike, _ = ratios({**others.get((scenario, load), {}),
                               "dyncast": policies["dyncast"]})
            share = [r["by_instance"].get(CONGESTED, {}).get("n", 0) / r["requests"]
                     for r in policies["dyncast"]]
            mine = predicted.get((name, scenario, load))
            why = verdict(load, median(got))
            met = "met" if why == "yes" else "not met: " + why.split("(")[1].rstrip(")")
            out.append(f"  {scenario} {load:g}: measured {_range(got)} vs {best}, {met}; over "
                       f"{REPLAY_BASE}'s baselines {_range(alike) if alike else '-'}, replayed "
                       f"{_range(mine) if mine else '-'}; congested site "
                       f"{_range(share, '.0%')}")
    return out


def main() -> int:
    """Print the table and save it to bench/results/steering-replay-check.txt."""
    text = lines()
    print("\n".join(text))
    (RESULTS / "steering-replay-check.txt").write_text(
        "\n".join(["== .venv/bin/python bench/steering_replay_check.py", *text]) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
