"""Pricing the queue at its marginal cost, measured: the load sweep's cells at 0.6-0.95 run with
`queue_price = "marginal"` (alone, and with the measured link delay) and with the defaults in
the same session, each against its own p2c (and least-loaded at 0.6) runs.

Boundary: saved sweep runs in (bench/results/steering-sweep-<tag>.json, one file per setting),
markdown lines out; no Mininet.

    .venv/bin/python bench/steering_sweep_marginal_report.py      # the table, to stdout
"""

from __future__ import annotations

import sys
from pathlib import Path
from statistics import median
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.steering_links_report import commands, load  # noqa: E402
from bench.steering_sweep_report import _cells, _spread, _utils, ratios, verdict  # noqa: E402

SETTINGS = {  # tag -> the setting in words
    "marginal-defaults": "defaults (mean)",
    "marginal": "marginal",
    "marginal-measured": "marginal + measured delay",
}


def _p95(runs: list[dict[str, Any]]) -> str:
    """The p95s of a cell's runs of one policy, median (range) over the seeds."""
    got = [r["p95_ms"] for r in runs if r["p95_ms"] is not None]
    return _spread(got) if got else "-"


def table(saved: dict[str, dict[str, Any]]) -> list[str]:
    """Per cell and setting: dyncast's p95 over the best other's of the same seed and session,
    median (range) of the seeds, and whether issue 22's targets are met; then the p95s, and
    e3's and e4's utilisation under each setting."""
    cells = {tag: _cells(d["runs"]) for tag, d in saved.items()}
    keys = list(dict.fromkeys(k for c in cells.values() for k in c))
    names = [SETTINGS.get(t, t) for t in saved]
    lines = ["| scenario | target load | " + " | ".join(f"dyncast / best other, {n}"
                                                   for n in names) + " |",
             "| --- | ---: |" + " ---: |" * len(saved)]
    for key in sorted(keys):
        row = []
        for tag in saved:
            got, best = ratios(cells[tag].get(key, {}))
            row.append(f"{_spread(got, 2)} ({best}) {_met(key[1], got)}" if got else "-")
        lines.append(f"| {key[0]} | {key[1]:g} | " + " | ".join(row) + " |")
    lines += ["", "| scenario | target load | " + " | ".join(
        f"dyncast p95 ms, {n}" for n in names) + " | p2c p95 ms (each session) |",
        "| --- | ---: |" + " ---: |" * (len(saved) + 1)]
    for key in sorted(keys):
        mine = [_p95(cells[t].get(key, {}).get("dyncast", [])) for t in saved]
        p2c = " / ".join(_p95(cells[t].get(key, {}).get("p2c", [])) for t in saved)
        lines.append(f"| {key[0]} | {key[1]:g} | " + " | ".join(mine) + f" | {p2c} |")
    lines.append("")
    for site in ("e3", "e4"):
        for tag, d in saved.items():
            parts = []
            for scenario in dict.fromkeys(r["scenario"] for r in d["runs"]):
                got = _utils([r for r in d["runs"] if r["scenario"] == scenario], site,
                             (0.8, 0.95))
                parts.append(f"{scenario}: " + ", ".join(f"{p} {v}" for p, v in got.items()))
            lines.append(f"- {site}'s utilisation at 0.8 and 0.95, {SETTINGS.get(tag, tag)}: "
                         + "; ".join(parts))
    for tag, d in saved.items():
        lines.append(f"- e3's share of the requests and its requests' median (ms), "
                     f"{SETTINGS.get(tag, tag)}: " + "; ".join(e3_lines(d["runs"])))
    return lines


def e3_lines(runs: list[dict[str, Any]]) -> list[str]:
    """Per scenario, load and policy: the range over the seeds of the share of the requests
    e3 served and of their median time (the floor a p95 cannot go under once e3 serves more
    than 5 % of the requests)."""
    out: dict[tuple[str, float, str], list[tuple[float, float]]] = {}
    for r in runs:
        e3, total = r.get("by_instance", {}).get("e3"), r.get("requests")
        if e3 and total and e3.get("p50_ms") is not None:
            key = (r["scenario"], r["target_load"], r["policy"])
            out.setdefault(key, []).append((e3["n"] / total, e3["p50_ms"]))
    return [f"{sc} {load:g} {policy} {_range([s for s, _ in v], '.0%')} at "
            f"{_range([m for _, m in v], '.0f')}" for (sc, load, policy), v in sorted(out.items())]


def _range(values: list[float], fmt: str) -> str:
    """`a` or `a-b` (lowest to highest)."""
    low, high = format(min(values), fmt), format(max(values), fmt)
    return low if low == high else f"{low}-{high}"


def _met(target: float, got: list[float]) -> str:
    """`met` or why not, from the median ratio (issue 22's targets)."""
    why = verdict(target, median(got))
    return "met" if why == "yes" else f"not met: {why.split('(')[1].rstrip(')')}"


def marginal_section(saved: dict[str, dict[str, Any]]) -> list[str]:
    """The results page's section: the commands, the tables and what they show."""
    return ["### Pricing the queue at its marginal cost, measured: `queue_price = \"marginal\"`",
            "", ", ".join(commands(saved)) + " (logs: `bench/results/steering-sweep-TAG.txt`; "
            "runs: the `.json` beside them; the tables: `.venv/bin/python "
            "bench/steering_sweep_marginal_report.py --section`). " + INTRO, "",
            *table(saved), "", *NOTES]


INTRO = ("With the setting, a dyncast service prices each instance's queue at its marginal "
         "cost, the estimate times `1 + ahead / c` ([decisions.md](../decisions.md#pricing-the-"
         "queue-at-its-marginal-cost-opt-in), `controller/selection/marginal.py`); p2c and "
         "least-loaded keep the mean, so their runs are the same policy in every session. "
         "Each ratio is dyncast's p95 over the best other's (p2c; least-loaded too at 0.6) of "
         "the same seed and session, median (range) over the seeds, with issue 22's verdict on "
         "the median (at most 0.8 at 0.6 and above, never above 1.05). Sessions ran back to "
         "back, each setting's own p2c and least-loaded runs beside it.")
NOTES = [
    "**What the marginal price does.** It sends more across the congested path, as meant: "
    "e3's utilisation at 0.8-0.95 in load-step 0.22-0.45 against 0.10-0.38 with the "
    "defaults (p2c 0.43-0.70), its share of the requests in load-step at 0.6 4-6 % against "
    "0-1 %, and further with the measured (cheaper) path. Where the sites off the path cannot "
    "take the peak it helps in hot-site: at 0.95 1.10 -> 0.89 (both seeds better, 0.85-0.93 "
    "against 1.09-1.12), at 0.8 level (0.91), and dyncast's mean response time at 0.95 falls "
    "below p2c's (from the logs: 358-391 ms against 397-412; the defaults 475-536). In "
    "load-step it moves the trade-off rather than removing it: at 0.6, where e2 and e4 still "
    "have room, the few per cent it sends across the path land in the p95 (0.66 -> 0.92, "
    "seeds 1-3: 0.94, 0.65, 0.92 against 0.66, 0.60, 0.76), and at 0.95 the median moves "
    "1.30 -> 1.18 but per seed it is better in one (0.92 against 1.32) and worse in two (1.18 "
    "against 1.15, 1.56 against 1.30, seed 3 at load average 3.8). With the measured "
    "delay as well (three seeds in every cell): hot-site at 0.8 0.81 and load-step at 0.95 "
    "0.93, the best of the three there, and load-step at 0.6 1.00, the worst.",
    "",
    "**Why 0.8x was missed in load-step from 0.8: the p95 is e3's time once it serves a "
    "share.** "
    "A request served by e3 takes about 340 ms (its median 324-360 ms in every load-step "
    "run at 0.6 and 0.8 where it served five or more, any policy and setting: about 200 "
    "ms in the congested path's FIFO behind the "
    "bulk transfer plus its 130 ms service). Once e3 serves more than 5 % of a run's "
    "requests, the p95 is about that time or more: dyncast's p95 in load-step at 0.6-0.8 "
    "was 322-362 ms in every run where e3 served 4 % or more of the requests but one (222 ms "
    "at 4.4 %), and 211-280 ms where it served 1.4 % or less (the defaults at 0.6). "
    "From 0.8 of the capacity in load-step the sites off the path (e2 and e4, 50 requests "
    "a second) cannot take the peak for long (52 a second at 0.8, 62 at "
    "0.95), every policy measured sends e3 a share (p2c 17-20 %, dyncast 4-14 %), and "
    "0.8 x p2c's p95 (366-401 ms at 0.8) is 293-321 ms, below e3's time. That e3 must serve "
    "more than 5 % at 0.8 whatever the policy, as this page said, does not hold: the step "
    "lasts half the run, and the upper bound below (\"An upper bound on any policy, on the "
    "sweep's own arrivals\") finds that e2 and e4 alone could finish 98-99 % of that cell's "
    "requests within 0.8x (the defaults' sweep with the queue model). Every setting "
    "measured here ends at 0.93-0.96 in that cell, within the noise of each other. In "
    "hot-site the floor is lower than the target (0.8 x p2c's 486-753 ms at 0.8), and the "
    "marginal price with the measured delay came within 0.01 of it (0.81; 0.71-0.84 per "
    "seed); at 0.6 least-loaded "
    "(364-428 ms) is the best other and dyncast's p95 (345-396) is again e3's time (7-23 % "
    "of its requests there: e2, the one site neither slowed nor behind the path, can serve "
    "30 a second of the 31 offered).",
    "",
    "**Not the default.** No setting meets issue 22's targets in every cell. The marginal "
    "price with the measured delay is the only one never above 1.05x (medians 0.81-1.00, "
    "every seed at most 1.05; the defaults 1.10 and 1.30 at 0.95), but it meets 0.8x nowhere "
    "and gives up load-step at 0.6 (1.00 against the defaults' 0.66). Each setting trades "
    "load-step at 0.6 against load-step at 0.95 and hot-site at 0.95, and none is better in "
    "every cell beyond the run-to-run noise (10-20 % between runs of the same cell). "
    "`queue_price` stays `\"mean\"`; `\"marginal\"` is worth trying where the sites run "
    "near saturation most of the time and the mean response time matters more than the p95.",
    "",
    "- Sessions back to back, 08:12-09:01 UTC, load average 0.7-3.8 (other helpers' tests, "
    "and the unit tests at the start of the last session, shared the 2 cores; per run in the "
    "logs). Seeds 1 and 2 in every cell; seed 3 in every cell for the marginal price with the "
    "measured delay, in load-step at 0.6 and 0.95 for the other two (the median of three "
    "there). The ratios' best other is p2c unless named.",
    "",
]


def main(argv: list[str] | None = None) -> int:
    """Print the comparison of the settings measured so far (`--section`: as the results page
    shows it)."""
    saved = load(list(SETTINGS))
    if not saved:
        print("no bench/results/steering-sweep-marginal*.json yet", file=sys.stderr)
        return 1
    if "--section" in (sys.argv[1:] if argv is None else argv):
        print("\n".join(marginal_section(saved)))
    else:
        print("\n".join(["Commands: " + ", ".join(commands(saved)), "", *table(saved)]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
