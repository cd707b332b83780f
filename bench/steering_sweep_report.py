"""The results page's load-sweep section (issue 22): p95 against offered load per policy.

Boundary: saved sweep runs (bench/results/steering-sweep.json) in, markdown lines and a PNG
out; no Mininet. bench/steering.py's `report` hands the lines to bench/steering_report.py.
"""

from __future__ import annotations

from pathlib import Path
from statistics import median
from typing import Any

COMMAND = ("sudo .venv/bin/python bench/steering_sweep.py --scenarios {scenario} --policies "
           "{policies} --loads {loads} --duration {duration:g}")
ISSUE_TARGET = 0.8  # dyncast p95 <= 0.8 x the best other policy at >= 60 % load ...
TARGET_FROM = 0.6
NEVER_WORSE = 1.05  # ... and never above 1.05 x (at any load, in any scenario)
TARGET_SCENARIOS = ("hot-site", "load-step")  # where issue 22 asks for the 0.8x


def _cells(runs: list[dict[str, Any]]) -> dict[tuple[str, float], dict[str, list[dict[str, Any]]]]:
    """Runs by (scenario, target load), then by policy, in run order."""
    out: dict[tuple[str, float], dict[str, list[dict[str, Any]]]] = {}
    for r in runs:
        out.setdefault((r["scenario"], r["target_load"]), {}).setdefault(r["policy"], []).append(r)
    return dict(sorted(out.items()))


def _spread(values: list[float], digits: int = 0) -> str:
    """`median` or `median (min-max)` when there are several."""
    fmt = f"{{:.{digits}f}}"
    if len(values) == 1:
        return fmt.format(values[0])
    return f"{fmt.format(median(values))} ({fmt.format(min(values))}-{fmt.format(max(values))})"


def ratios(policies: dict[str, list[dict[str, Any]]]) -> tuple[list[float], str | None]:
    """Per seed: dyncast's p95 over the best other policy's of that seed's runs; and the other
    policy that was best most often."""
    out, best_names = [], []
    for mine in policies.get("dyncast", []):
        others = [r for p, rs in policies.items() if p != "dyncast" for r in rs
                  if r["seed"] == mine["seed"] and r["p95_ms"] is not None]
        if mine["p95_ms"] is None or not others:
            continue
        best = min(others, key=lambda r: r["p95_ms"])
        out.append(mine["p95_ms"] / best["p95_ms"])
        best_names.append(best["policy"])
    # a tie: the first seed's (a set's order would change from run to run of the report)
    common = max(dict.fromkeys(best_names), key=best_names.count) if best_names else None
    return out, common


def verdict(load: float, ratio: float, scenario: str = "hot-site") -> str:
    """Whether a cell's (median) ratio meets issue 22's targets (the 0.8x in hot-site and
    load-step only; the 1.05x ceiling everywhere)."""
    if ratio > NEVER_WORSE:
        return f"**no** (> {NEVER_WORSE})"
    if scenario in TARGET_SCENARIOS and load >= TARGET_FROM and ratio > ISSUE_TARGET:
        return f"**no** (> {ISSUE_TARGET})"
    return "yes"


def sweep_table(runs: list[dict[str, Any]], policies: list[str]) -> list[str]:
    """One row per scenario and load: measured load, p95 per policy, dyncast / best other."""
    lines = ["| scenario | target load | measured | seeds | "
             + " | ".join(f"{p} p95 ms" for p in policies)
             + " | dyncast / best other | best other | target met |",
             "| --- | ---: | ---: | ---: | " + " | ".join("---:" for _ in policies)
             + " | ---: | --- | --- |"]
    for (scenario, load), cell in _cells(runs).items():
        every = [r for rs in cell.values() for r in rs]
        p95s = [_spread([r["p95_ms"] for r in cell.get(p, []) if r["p95_ms"] is not None])
                if cell.get(p) else "-" for p in policies]
        errors = {p: sum(r["errors"] for r in cell.get(p, [])) for p in policies}
        p95s = [c + (f" ({errors[p]} failed)" if errors[p] else "")
                for c, p in zip(p95s, policies, strict=True)]
        got, best = ratios(cell)
        seeds = len({r["seed"] for r in every})
        lines.append(f"| {scenario} | {load:g} | {_spread([r['measured_load'] for r in every], 2)}"
                     f" | {seeds} | " + " | ".join(p95s)
                     + (f" | {_spread(got, 2)} | {best} | {verdict(load, median(got), scenario)} |"
                        if got else " | - | - | - |"))
    return lines


def misses(runs: list[dict[str, Any]]) -> list[str]:
    """The cells where dyncast does not meet the targets, in words."""
    out = []
    for (scenario, load), cell in _cells(runs).items():
        got, best = ratios(cell)
        if got and verdict(load, median(got), scenario) != "yes":
            out.append(f"{scenario} at {load:g}: {median(got):.2f}x {best}")
    return out


def plot_sweep(runs: list[dict[str, Any]], path: Path) -> None:
    """p95 against target load, one line per policy (median, bars from min to max over seeds),
    one panel per scenario."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scenarios = list(dict.fromkeys(r["scenario"] for r in runs))
    fig, axes = plt.subplots(1, len(scenarios), figsize=(5.5 * len(scenarios), 4.0),
                             squeeze=False)
    for ax, scenario in zip(axes[0], scenarios, strict=True):
        mine = [r for r in runs if r["scenario"] == scenario and r["p95_ms"] is not None]
        for policy in dict.fromkeys(r["policy"] for r in mine):
            loads = sorted({r["target_load"] for r in mine if r["policy"] == policy})
            values = [[r["p95_ms"] for r in mine if r["policy"] == policy
                       and r["target_load"] == x] for x in loads]
            mid = [median(v) for v in values]
            ax.errorbar(loads, mid, yerr=[[m - min(v) for m, v in zip(mid, values, strict=True)],
                                          [max(v) - m for m, v in zip(mid, values, strict=True)]],
                        marker="o", capsize=3, lw=1.3, label=policy)
        ax.set_xlabel("offered load at the peak (fraction of the sites' capacity)")
        ax.set_ylabel("p95 response time (ms, log scale)")
        ax.set_yscale("log")
        ax.set_title(f"figure2: {scenario}")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def sweep_section(saved: dict[str, Any], docs_dir: Path, *, tag: str = "",
                  title: str = "A load sweep", commands: tuple[str, ...] = (),
                  notes: list[str] | None = None) -> list[str]:
    """The section (and its plot in `docs_dir`) for the sweep saved as
    bench/results/steering-sweep[-TAG].json; `commands` as run, else one per scenario and
    seed."""
    runs = saved["runs"]
    name = "steering-sweep" + (f"-{tag}" if tag else "")
    plot = name.replace("-", "_") + ".png"
    plot_sweep(runs, docs_dir / plot)
    policies = list(dict.fromkeys(r["policy"] for r in runs))
    ran = [f"`{c}`" for c in commands]
    for scenario in () if commands else dict.fromkeys(r["scenario"] for r in runs):
        mine = [r for r in runs if r["scenario"] == scenario]
        duration = mine[0]["duration_s"] / (1.25 if scenario in ("load-step", "failure") else 1)
        policies_run = " ".join(dict.fromkeys(r["policy"] for r in mine))
        for seed in sorted({r["seed"] for r in mine}):
            seeded = " ".join(f"{x:g}" for x in sorted({r["target_load"] for r in mine
                                                         if r["seed"] == seed}))
            ran.append("`" + COMMAND.format(
                scenario=scenario, policies=policies_run, loads=seeded, duration=duration)
                + ("" if seed == 1 else f" --seeds {seed}") + "`")
    missed = misses(runs)
    md = [f"## {title}", "",
          f"{', '.join(ran)} (log with dates and load averages: "
          f"`bench/results/{name}.txt`; runs: `bench/results/{name}.json`; "
          f"settings: {saved['settings']}). Each target load is a fraction of the sites' "
          "capacity in requests a second (capacity / service time, a slowed site at its slower "
          "rate; 52/s in hot-site, 65/s in load-step), offered at the scenario's peak (after "
          "the step in load-step; before it c1 sends a third as much); the clients' rates are "
          "scaled to it and the sweep fails unless the load it measured (every request that "
          "arrived, keep-alive ones included) is within 15 % of the target. Each cell is the "
          "median over seeds, with the range when there are several (in the plot: bars from the "
          "lowest to the highest seed); dyncast / best other is "
          "per seed, then the median. Issue 22's targets: at most "
          f"{ISSUE_TARGET}x at {TARGET_FROM:g} and above, never above {NEVER_WORSE}x.", "",
          *sweep_table(runs, policies), "",
          f"![p95 against offered load]({plot})", "",
          "**Where dyncast does not meet the targets:** "
          + ("; ".join(missed) if missed else "nowhere in this sweep") + ".", "",
          *utilisation_line(runs)]
    return md + (NOTES if notes is None else notes)


def _utils(runs: list[dict[str, Any]], site: str, loads: tuple[float, ...]) -> dict[str, str]:
    """Per policy: the range of `site`'s utilisation over the runs at `loads` ("-": none)."""
    out: dict[str, list[float]] = {}
    for r in runs:
        util = r.get("util", {}).get(site)
        if r["target_load"] in loads and util is not None:
            out.setdefault(r["policy"], []).append(util)
    return {p: f"{min(v):.2f}-{max(v):.2f}" for p, v in out.items()}


def utilisation_line(runs: list[dict[str, Any]]) -> list[str]:
    """e3's utilisation (the site behind the congested path) per policy at 0.8 and 0.95."""
    parts = []
    for scenario in dict.fromkeys(r["scenario"] for r in runs):
        got = _utils([r for r in runs if r["scenario"] == scenario], "e3", (0.8, 0.95))
        if got:
            parts.append(f"{scenario}: " + ", ".join(f"{p} {v}" for p, v in got.items()))
    if not parts:
        return []
    return ["e3's utilisation (the site behind the congested path) over the runs at 0.8 and "
            "0.95 of the capacity: " + "; ".join(parts) + ".", ""]


def queueing_section(queueing: dict[str, Any], defaults: dict[str, Any]) -> list[str]:
    """The sweep with `[controller.selection] queueing = true` (bench/results/
    steering-sweep-queueing.json) beside the defaults' runs of the same cells and seeds."""
    runs = queueing["runs"]
    keys = {(r["scenario"], r["target_load"], r["seed"]) for r in runs}
    same = [r for r in defaults["runs"] if (r["scenario"], r["target_load"], r["seed"]) in keys]
    base, mine = _cells(same), _cells(runs)
    policies = list(dict.fromkeys(r["policy"] for r in runs))
    commands = ["`" + COMMAND.format(
        scenario=" ".join(dict.fromkeys(r["scenario"] for r in runs)),
        policies=" ".join(policies),
        loads=" ".join(f"{x:g}" for x in sorted({r["target_load"] for r in runs
                                                  if r["seed"] == seed})),
        duration=15) + (f" --seeds {seed}" if seed != 1 else "")
        + " --selection queueing=true --tag queueing`"
        for seed in sorted({r["seed"] for r in runs})]
    lines = ["### A queueing-aware estimate, measured: `queueing = true`", "",
             f"{', '.join(commands)} (log: `bench/results/steering-sweep-queueing.txt`; runs: "
             "`bench/results/steering-sweep-queueing.json`). The same sweep with the compute "
             "estimate raised to the M/M/c wait of the rate of flows the controller placed on "
             "each instance in the last second ([decisions.md](../decisions.md#the-queueing-"
             "floor-opt-in), `controller/selection/queueing.py`); it applies to every policy "
             "that reads the compute cost (dyncast, least-loaded, p2c). Beside it, dyncast's "
             "runs of the same cells and seeds with the defaults (the table above):", "",
             "| scenario | target load | seeds | dyncast p95 ms, defaults | dyncast p95 ms, "
             "queueing | dyncast / best other, defaults | dyncast / best other, queueing |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for cell_key, cell in mine.items():
        old = base.get(cell_key, {})
        got, best = ratios(cell)
        was, was_best = ratios(old)
        p95 = [r["p95_ms"] for r in cell.get("dyncast", []) if r["p95_ms"] is not None]
        p95_was = [r["p95_ms"] for r in old.get("dyncast", []) if r["p95_ms"] is not None]
        seeds = len({r["seed"] for rs in cell.values() for r in rs})
        lines.append(
            f"| {cell_key[0]} | {cell_key[1]:g} | {seeds}"
            f" | {_spread(p95_was) if p95_was else '-'} | {_spread(p95) if p95 else '-'}"
            f" | {_spread(was, 2) + ' (' + str(was_best) + ')' if was else '-'}"
            f" | {_spread(got, 2) + ' (' + str(best) + ')' if got else '-'} |")
    return [*lines, "", *utilisation_line(runs), *e4_line(runs, same), *QUEUEING_NOTES]


NOTES = [
    "**Why dyncast does not win at high load.** Figure 2 has two sites off the congested path "
    "(e2 and e4, 50 requests a second; in hot-site e4 is slowed and they serve 37/s) and e3 "
    "behind it: a request there pays about 0.25 s of queueing on the bulk transfer's path "
    "whatever e3's load. Below about 0.6 of the capacity the good sites have room and dyncast, "
    "which prices that path, keeps flows off it where least-loaded and p2c send a share there: "
    "that is where it wins. From about 0.8 the good sites cannot take the peak: every policy "
    "has to use e3 or queue. dyncast keeps filling e2 and e4 and sends fewer flows to e3 "
    "(the utilisations above) until their queues cost more than the congested path, so its "
    "requests at e2 and e4 wait as long as the ones sent across it, and its p95 is level with "
    "the others' or above. The default compute estimate prices the queue a report (aged, with "
    "the flows placed since) shows, not the wait a steady stream near saturation builds; the "
    "queueing-aware floor measured below prices that wait and did not help either (hot-site at "
    "0.95 worse with it). The issue's 0.8x target at 0.6 and above is met only where the "
    "good sites still have room (load-step at 0.6), not in hot-site at 0.6 (e2 alone, the one "
    "good unslowed site, is then nearly full) and nowhere at 0.8 or 0.95.",
    "",
]

QUEUEING_NOTES = [
    "**What the floor does, and why it is off by default.** In the unit test it moves flows "
    "as it should (tests/test_queueing.py: a stream that keeps a snapshot-idle instance at "
    "0.9 spills to the next one). On this network it made no cell better beyond the run-to-run "
    "noise, and hot-site at 0.95 worse in both seeds; the baselines read the same estimate and "
    "gained from it in places (least-loaded in load-step at 0.3). What the runs show: it "
    "raises every site's cost, e3's too as soon as e3 gets flows, so in load-step dyncast "
    "still sends e3 far less than least-loaded and p2c do (utilisations above); it scales "
    "with the holding time, so near saturation a slow site (e4 slowed 3x: 300 ms, two "
    "workers; e3 130 ms) is priced at several times e2 whatever its queue. The M/M/c wait is "
    "also about twice what the demo service's constant service time makes (M/D/c). "
    "Exploratory runs before this sweep (the floor on by default, 2 s window and cap 0.95: "
    "`bench/results/steering-sweep-mmc.txt`; 1 s and 0.9: "
    "`bench/results/steering-sweep-queueing-1s.txt`, each with the commit it ran) gave "
    "dyncast / p2c at 0.95 of 1.56 and 1.21 in hot-site, 1.52 and 1.22 in load-step.",
    "",
    "- Runs of 15 s (18.75 s in load-step), not the 18 s of the other sections, to fit the "
    "sweep in the machine's Mininet budget. Other helpers' tests shared the 2 cores; the load "
    "average of every run is in the logs: p95s of the same cell differ by 10-20 % between "
    "runs, so a ratio within 0.1 of 1 is a tie, not a loss.",
    "",
]


def e4_line(queueing: list[dict[str, Any]], defaults: list[dict[str, Any]]) -> list[str]:
    """e4's utilisation under dyncast in hot-site at 0.95, with and without the floor."""
    def of(runs: list[dict[str, Any]]) -> str:
        got = _utils([r for r in runs if r["scenario"] == "hot-site" and r["policy"] == "dyncast"],
                     "e4", (0.95,))
        return got.get("dyncast", "-")
    if of(queueing) == "-":
        return []
    return [f"e4's utilisation under dyncast in hot-site at 0.95 (the same seeds): "
            f"{of(defaults)} with the defaults, {of(queueing)} with `queueing = true`.", ""]


def utilisation_table(runs: list[dict[str, Any]], policies: list[str]) -> list[str]:
    """Per scenario and load: each policy's busiest and least busy site (median of seeds)."""
    lines = ["| scenario | target load | " + " | ".join(f"{p} utilisation, busiest / least"
                                                      for p in policies) + " |",
             "| --- | ---: | " + " | ".join("---" for _ in policies) + " |"]
    for (scenario, load), cell in _cells(runs).items():
        row = []
        for p in policies:
            utils = [r["util"] for r in cell.get(p, []) if r.get("util")]
            row.append(f"{median(max(u.values()) for u in utils):.2f} / "
                       f"{median(min(u.values()) for u in utils):.2f}" if utils else "-")
        lines.append(f"| {scenario} | {load:g} | " + " | ".join(row) + " |")
    return lines


def main(argv: list[str] | None = None) -> int:
    """Print a saved sweep's tables (p95 and dyncast / best other; utilisation)."""
    import argparse
    import json

    ap = argparse.ArgumentParser(description="a saved load sweep's tables, as markdown")
    ap.add_argument("results", type=Path, help="bench/results/steering-sweep-TAG.json")
    ap.add_argument("--policies", nargs="+", default=["dyncast", "least-loaded", "p2c"])
    args = ap.parse_args(argv)
    runs = json.loads(args.results.read_text())["runs"]
    for network in sorted({r.get("network", "figure2") for r in runs}):
        mine = [r for r in runs if r.get("network", "figure2") == network]
        print(f"{network}:\n")
        print("\n".join(sweep_table(mine, args.policies)) + "\n")
        print("\n".join(utilisation_table(mine, args.policies)) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
