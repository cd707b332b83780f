"""The opt-in selection settings measured again since placements wait behind the reported queue
(issue 22): `queue_price = "marginal"`, `pick = "per-flow"` and `spread = 0.1`, against the
defaults' sweep, in the load sweep's cells at 0.6-0.95.

Boundary: saved sweep runs in (bench/results/steering-sweep-<tag>.json, one file per setting),
markdown lines out; no Mininet. bench/steering.py's `report` places them on the page.

    .venv/bin/python bench/steering_sweep_options_report.py      # the section, to stdout
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from statistics import median
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.steering_links_report import RESULTS, commands  # noqa: E402
from bench.steering_sweep_marginal_report import _met, e3_lines  # noqa: E402
from bench.steering_sweep_report import NEVER_WORSE, _cells, _spread, ratios  # noqa: E402

DEFAULTS = "queue-model-10"
SETTINGS = {  # tag -> the setting in words
    DEFAULTS: "defaults",
    "qm-marginal": "`queue_price = \"marginal\"`",
    "qm-perflow": "`pick = \"per-flow\"`",
    "qm-spread-0.1": "`spread = 0.1`",
}
BASELINES_FROM = "qm-marginal"  # the settings run alone are compared with this session's others
LOADS = (0.6, 0.8, 0.95)


def load(results: Path = RESULTS) -> dict[str, list[dict[str, Any]]]:
    """Each setting's runs at LOADS, those that were run; a setting run for dyncast alone gets
    the other policies' runs of BASELINES_FROM (the same seeds; those policies read none of
    these settings)."""
    saved: dict[str, list[dict[str, Any]]] = {}
    for tag in SETTINGS:
        path = results / f"steering-sweep-{tag}.json"
        if path.exists():
            saved[tag] = [r for r in json.loads(path.read_text())["runs"]
                          if r["target_load"] in LOADS]
    others = [r for r in saved.get(BASELINES_FROM, []) if r["policy"] != "dyncast"]
    for runs in saved.values():
        if all(r["policy"] == "dyncast" for r in runs):
            runs.extend(others)
    return saved


def _compared(tag: str, runs: list[dict[str, Any]]) -> None:
    """Every dyncast run has another policy's run of its cell and seed to be judged against
    (else its cell's median would quietly be over fewer seeds): ValueError naming the first
    that has none."""
    judged = {(r["scenario"], r["target_load"], r["seed"]) for r in runs
              if r["policy"] != "dyncast" and r["p95_ms"] is not None}
    for r in runs:
        if r["policy"] == "dyncast" and (r["scenario"], r["target_load"], r["seed"]) not in judged:
            raise ValueError(f"steering-sweep-{tag}: dyncast's run of {r['scenario']} at "
                             f"{r['target_load']:g}, seed {r['seed']}, has no other policy's "
                             f"run to be compared with (here or in {BASELINES_FROM})")


def table(saved: dict[str, list[dict[str, Any]]]) -> list[str]:
    """Per cell and setting: dyncast / best other of the same seed, median (range), with issue
    22's verdict; dyncast's p95s."""
    cells = {tag: _cells(runs) for tag, runs in saved.items()}
    keys = sorted(dict.fromkeys(k for c in cells.values() for k in c))
    names = [SETTINGS[t] for t in saved]
    lines = ["| scenario | target load | " + " | ".join(names) + " |",
             "| --- | ---: |" + " ---: |" * len(saved)]
    for key in keys:
        row = []
        for tag in saved:
            got, _ = ratios(cells[tag].get(key, {}))
            p95 = [r["p95_ms"] for r in cells[tag].get(key, {}).get("dyncast", [])]
            row.append(f"{_spread(got, 2)}, {_met(key[1], got)}; p95 {_spread(p95)} ms"
                       if got else "-")
        lines.append(f"| {key[0]} | {key[1]:g} | " + " | ".join(row) + " |")
    return lines


def summary(saved: dict[str, list[dict[str, Any]]]) -> dict[str, tuple[int, int, int]]:
    """Per setting: cells meeting both targets, cells above 1.05x, cells measured (medians)."""
    out = {}
    for tag, runs in saved.items():
        met = worse = n = 0
        for key, policies in _cells(runs).items():
            got, _ = ratios(policies)
            if not got:
                continue
            n += 1
            met += _met(key[1], got) == "met"
            worse += median(got) > NEVER_WORSE
        out[tag] = (met, worse, n)
    return out


def options_section(saved: dict[str, list[dict[str, Any]]]) -> list[str]:
    """The results page's section."""
    if DEFAULTS not in saved or len(saved) < 2:
        return []
    for tag, runs in saved.items():
        _compared(tag, runs)
    tally = summary(saved)
    counts = "; ".join(f"{SETTINGS[t]}: {m} of {n} cells met, {w} above {NEVER_WORSE}x"
                       for t, (m, w, n) in tally.items())
    shares = [f"- {SETTINGS[t]}: " + "; ".join(e3_lines([r for r in runs
                                                        if r["policy"] == "dyncast"]))
              for t, runs in saved.items()]
    return ["## The opt-in settings again, with placements waiting behind the queue", "",
            ", ".join(c for t in saved for c in commands({t: {}})) + " (logs: "
            "`bench/results/steering-sweep-TAG.txt`; runs: the `.json` beside them; this "
            "section: `.venv/bin/python bench/steering_sweep_options_report.py`). " + INTRO, "",
            *table(saved), "", f"Medians: {counts}.", "",
            "e3's share of dyncast's requests and their median (ms), per setting:", "",
            *shares, "", *NOTES]


INTRO = ("Three opt-in settings measured before placements waited behind the reported queue "
         "(the marginal price and the per-flow pick in the sections above, spread 0.1 in the "
         "tuned runs), measured again on top of it, seeds 1-3. Each cell is dyncast's p95 "
         "over the best other's (least-loaded or p2c) of the same seed, median (range), with "
         "issue 22's verdict on the median. The defaults' column is \"A load sweep, with the "
         "controller's defaults\" (its own session's baselines); `queue_price` ran with its "
         "own least-loaded and p2c runs, and `pick` and `spread` ran for dyncast alone right "
         "after it, compared with that session's least-loaded and p2c runs (neither policy "
         "reads any of these settings).")
NOTES = [
    "**None is kept: the defaults stand.** No setting meets issue 22's targets in more cells "
    "than the defaults, and each of the three is above them in most cells. Per setting:",
    "",
    "- **`queue_price = \"marginal\"`** does what it is for: it sends more across the "
    "congested path (e3's share above: hot-site at 0.6 15-16 % against 6-8 %, load-step at "
    "0.6 5-6 % against 1-2 %), and dyncast's mean response time is the lowest of every "
    "policy in every cell of its session at the median of the seeds (from its log: "
    "hot-site 180-188 ms at 0.6 against least-loaded's 202-206, 310-418 at 0.95 against "
    "p2c's 355-432; load-step 199-219 at "
    "0.95 against p2c's 206-228), and below the defaults' in every cell. The p95 is another "
    "matter: the requests it sends across the path take e3's time, about 340 ms, and land "
    "in the p95 where the sites off the path had room (load-step at 0.6 0.95 against 0.67; "
    "hot-site at 0.6 and 0.8 0.87 and 0.97 against 0.82 and 0.91). Only at 0.95 is its "
    "median lower than the defaults' (hot-site 0.95 against 0.99, load-step 1.00 against "
    "1.03), within the run-to-run noise. As before the queue model: worth choosing where "
    "the mean matters more than the tail.",
    "- **`pick = \"per-flow\"`** sends the same shares across the path as the defaults "
    "(within two points) and has a higher p95 in every cell, above 1.05x in three "
    "(hot-site at 0.8 and 0.95, load-step at 0.95), and a higher mean: what the earlier "
    "measurement found without the queue model, a site taking runs of flows until its "
    "re-priced cost passes the next one's.",
    "- **`spread = 0.1`** keeps e3's share where the defaults have it, its p95 level with "
    "theirs at 0.6 (medians: hot-site 349 ms against 350, load-step 226 against 232) and "
    "above them at 0.8 and 0.95 (hot-site 486 and 747 against 442 and 695, load-step 342 "
    "and 490 against 332 and 457), above 1.05x in three cells. An explanation the runs fit, "
    "not measured directly: with placements counted and queued, a narrower spread only "
    "puts the flows between two recomputes on fewer sites.",
    "",
    "- Sessions back to back, 22:08-22:43 UTC, load average 0.03-0.96 (nothing else "
    "running); the defaults' sweep ran at 18:36-19:02 UTC the same day. Each setting's "
    "ratios are against the least-loaded and p2c runs of the 22:08 session, whose p95s "
    "differ from the defaults' session's by up to 23 % in a cell and seed (p2c in hot-site "
    "at 0.6, seed 1: 435 ms against 567).",
    "",
]


def main() -> int:
    """Print the section."""
    print("\n".join(options_section(load())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
