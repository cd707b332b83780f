"""A load sweep of the steering benchmark: each scenario at several offered loads, given as a
fraction of the sites' capacity (issue 22), under the controller's defaults.

For a target fraction, the clients' rate multiplier (bench/steering.py's `--load`) is computed
from the scenario: the sites' capacity in requests a second (capacity / service time, slowed by
the scenario's extra load, without a site the scenario kills) and the clients' rate at the
scenario's peak (after the load step in load-step), keep-alive requests included (they do not
scale). After each run the offered load the clients actually sent in that peak is measured and
must be within LOAD_TOLERANCE of the target, or the sweep fails (exit 1): a sweep whose loads
are not what it says measures nothing. One network comes up once; every load runs every policy
in turn (policies interleaved, so the machine's drift hits them alike). Results are merged into
bench/results/steering-sweep.json (a run replaces the one with the same network, scenario,
policy, load and seed), the log appended to bench/results/steering-sweep.txt, and the report's
section and plot (bench/steering_sweep_report.py) come with `bench/steering.py --report-only`.

    sudo .venv/bin/python bench/steering_sweep.py --scenarios hot-site \\
        --policies dyncast least-loaded p2c --loads 0.3 0.6 0.8 0.95 --duration 15
    .venv/bin/python bench/steering_sweep.py --plan --scenarios hot-site load-step  # no Mininet
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.steering import (  # noqa: E402
    DMA,
    KA_INTERVAL,
    KEEPALIVE,
    POLICIES,
    RESULTS,
    Bench,
    BenchError,
    Plan,
    _line,
    _pairs,
    _positive,
    _toml,
    check,
)
from bench.steering_net import NETWORKS, BenchNet, Scenario  # noqa: E402
from bench.steering_trace import trace_path  # noqa: E402

LOADS = (0.3, 0.6, 0.8, 0.95)
LOAD_TOLERANCE = 0.15  # measured offered load within 15 % (relative) of the target ...
LOAD_FLOOR = 0.05  # ... or within 0.05 of it (absolute), whichever is wider
SWEEP = RESULTS / "steering-sweep.json"
LOG = RESULTS / "steering-sweep.txt"


NETWORK_KEYS = ("congestion_ms", "use_measured_delay")  # [controller] keys --controller sets
SWEEP_WORDS = {"queue_price"}  # [controller.selection] words the sweep passes on as given


def _selection(items: list[str]) -> dict[str, float | bool | str]:
    """--selection KEY=VALUE: the words in SWEEP_WORDS as strings (`queue_price=marginal`),
    the rest as bench/steering.py reads them."""
    words = {k: v for k, _, v in (i.partition("=") for i in items) if k in SWEEP_WORDS}
    rest = [i for i in items if i.partition("=")[0] not in SWEEP_WORDS]
    return {**_pairs(rest), **words}


@dataclass
class SweepPlan(Plan):
    """A plan with [controller] link-pricing settings other than the defaults."""

    network: dict[str, float | bool | str] = field(default_factory=dict)

    def controller_extra(self) -> str:
        """The [controller] keys under test (they must come before any sub-table), then the
        tables of `Plan`."""
        keys = "".join(f"{k} = {_toml(v)}\n" for k, v in self.network.items())
        return keys + super().controller_extra()

    def describe(self) -> str:
        """The settings under test, in words."""
        net = ", ".join(f"{k} {_toml(v)}" for k, v in self.network.items())
        return super().describe() + (f"; controller {net}" if net else "")


class LoadError(Exception):
    """A target load this scenario cannot be run at, or a run that missed its target."""


def capacity_rate(net: BenchNet, scenario: Scenario) -> float:
    """Requests a second the scenario's sites can serve: per site, capacity over its service
    time times one plus its extra load; a site the scenario kills does not count."""
    return sum(1000.0 * s.capacity / (s.service_ms * (1.0 + scenario.extra_load.get(s.host, 0.0)))
               for s in net.sites if s.host != scenario.fail)


def peak_rates(net: BenchNet, scenario: Scenario) -> tuple[float, float]:
    """The clients' base rates at the scenario's peak: (fresh-connection requests a second,
    which `--load` multiplies; keep-alive requests a second, which it does not)."""
    fresh = sum(c.rate * scenario.step.get(c.host, 1.0) for c in net.clients)
    return fresh, len(net.clients) * KEEPALIVE / KA_INTERVAL


def load_multiplier(net: BenchNet, scenario: Scenario, target: float) -> float:
    """The `--load` that makes the peak's offered load `target` x the sites' capacity."""
    if not 0 < target <= 1.5:
        raise LoadError(f"load {target:g}: a fraction of the sites' capacity must be in (0, 1.5]")
    fresh, keepalive = peak_rates(net, scenario)
    wanted = target * capacity_rate(net, scenario)
    if wanted <= keepalive:
        raise LoadError(f"{scenario.name}: load {target:g} is {wanted:.1f} requests/s, no more "
                        f"than the keep-alive connections alone send ({keepalive:g}/s)")
    return (wanted - keepalive) / fresh


def measured_load(net: BenchNet, scenario: Scenario, summary: dict[str, Any]) -> float:
    """The offered load a run measured at its peak (after the step in a stepped scenario, the
    whole run otherwise), as a fraction of the sites' capacity."""
    rate = summary["offered_rate_after"] if scenario.step else summary["offered_rate"]
    return float(rate) / capacity_rate(net, scenario)


def load_problem(target: float, measured: float) -> str | None:
    """Why a run's measured load does not count as `target`, or None when it does."""
    allowed = max(LOAD_TOLERANCE * target, LOAD_FLOOR)
    if abs(measured - target) <= allowed:
        return None
    return (f"offered {measured:.2f} of the sites' capacity, target {target:g} "
            f"(allowed +-{allowed:.2f})")


def merge(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`old` runs with `new` ones replacing those of the same cell and seed."""
    def key(r: dict[str, Any]) -> tuple[Any, ...]:
        return (r["network"], r["scenario"], r["policy"], r["target_load"], r["seed"])
    fresh = {key(r) for r in new}
    return [r for r in old if key(r) not in fresh] + new


def sweep(name: str, plan: Plan, loads: list[float], seeds: list[int], log: Any,
          traces: list[dict[str, Any]] | None = None) -> tuple[list[dict[str, Any]], list[str]]:
    """Bring `name` up once; run every scenario at every load and seed under every policy.
    Returns the runs and the problems (a missed load, or `check`'s). With `traces`, the
    controller is polled during each run and the traces are appended to it
    (bench/steering_trace.py)."""
    from mininet_tests.harness import Lab

    net = NETWORKS[name]()
    multipliers = {(sc, t): load_multiplier(net, net.scenario(sc), t)
                   for sc in plan.scenarios for t in loads}  # LoadError before Mininet
    lab = Lab(f"steering-sweep-{name}")
    bench = Bench(net, lab, plan)
    bench.trace = traces is not None
    results: list[dict[str, Any]] = []
    problems: list[str] = []
    try:
        began = time.monotonic()
        bench.start()
        log(f"{name}: network up in {time.monotonic() - began:.0f} s")
        for sc_name in plan.scenarios:
            scenario = net.scenario(sc_name)
            for seed in seeds:
                for target in loads:
                    bench.plan = replace(plan, load=multipliers[(sc_name, target)])
                    for policy in plan.policies:
                        began = time.monotonic()
                        s = bench.run(scenario, policy, plan.durations[sc_name], seed)
                        s.pop("windows")
                        measured = measured_load(net, scenario, s)
                        s.update(target_load=target, multiplier=bench.plan.load,
                                 measured_load=round(measured, 3), seed=seed)
                        results.append(s)
                        if traces is not None:
                            traces.append({**bench.traces.pop(), "target_load": target})
                        log(f"{sc_name:9s} load {target:<4g} x{bench.plan.load:.3f} "
                            f"(measured {measured:.2f}) seed {seed} {policy:12s} {_line(s)} "
                            f"[{time.monotonic() - began:.0f} s]")
                        missed = load_problem(target, measured)
                        if missed:
                            problems.append(f"{sc_name}/{policy}/load {target:g}/seed {seed}: "
                                            f"{missed}")
    finally:
        closing = lab.close()
        if closing:
            log(f"{name}: teardown problems (artefacts in {lab.artifacts}):\n  "
                + "\n  ".join(closing))
    return results, problems + check(results)


def describe_plan(name: str, scenarios: list[str], loads: list[float]) -> list[str]:
    """What each target load means for each scenario (no Mininet)."""
    net = NETWORKS[name]()
    lines = []
    for sc_name in scenarios:
        scenario = net.scenario(sc_name)
        fresh, keepalive = peak_rates(net, scenario)
        cap = capacity_rate(net, scenario)
        for target in loads:
            m = load_multiplier(net, scenario, target)
            lines.append(f"{name} {sc_name}: capacity {cap:.1f}/s; load {target:g} = "
                         f"{fresh * m:.1f} fresh + {keepalive:g} keep-alive requests/s at the "
                         f"peak: --load {m:.3f}")
    return lines


def main(argv: list[str] | None = None) -> int:
    """Run the sweep, merge and save its results."""
    ap = argparse.ArgumentParser(prog="steering_sweep", description=__doc__.splitlines()[0])
    ap.add_argument("--network", choices=sorted(NETWORKS), default="figure2")
    ap.add_argument("--scenarios", nargs="+", default=["hot-site", "load-step"])
    ap.add_argument("--policies", nargs="+", choices=POLICIES,
                    default=["dyncast", "least-loaded", "p2c"])
    ap.add_argument("--loads", nargs="+", type=_positive, default=list(LOADS),
                    help="offered loads at the peak, as fractions of the sites' capacity")
    ap.add_argument("--seeds", nargs="+", type=int, default=[1])
    ap.add_argument("--duration", type=_positive, default=18.0,
                    help="seconds per run (x1.25 in load-step, as in bench/steering.py)")
    ap.add_argument("--plan", action="store_true", help="print the multipliers and exit")
    ap.add_argument("--selection", nargs="+", default=[], metavar="KEY=VALUE",
                    help="[controller.selection] settings other than the defaults")
    ap.add_argument("--controller", nargs="+", default=[], metavar="KEY=VALUE",
                    help=f"[controller] link pricing other than the defaults: {NETWORK_KEYS}")
    ap.add_argument("--tag", default="", help="save to steering-sweep-TAG.json/.txt instead")
    ap.add_argument("--trace", action="store_true",
                    help="poll the controller during each run; save the traces to "
                         "steering-trace-TAG.json (bench/steering_trace.py; needs --tag)")
    args = ap.parse_args(argv)
    if args.trace and not args.tag:
        ap.error("--trace: needs --tag (the traces are saved as steering-trace-TAG.json)")
    net = NETWORKS[args.network]()
    unknown = set(args.scenarios) - {s.name for s in net.scenarios}
    if unknown:
        ap.error(f"--scenarios: unknown to {args.network}: {sorted(unknown)}")
    network = _pairs(args.controller)
    if set(network) - set(NETWORK_KEYS):
        ap.error(f"--controller: unknown keys {sorted(set(network) - set(NETWORK_KEYS))}; "
                 f"known: {list(NETWORK_KEYS)}")
    try:
        lines = describe_plan(args.network, args.scenarios, args.loads)
    except LoadError as exc:
        ap.error(f"--loads: {exc}")
    if args.plan:
        print("\n".join(lines))
        return 0
    if os.geteuid() != 0:
        print("steering_sweep: needs root (Mininet)", file=sys.stderr)
        return 2
    durations = {s: args.duration * (1.25 if s in ("load-step", "failure") else 1.0)
                 for s in args.scenarios}
    plan = SweepPlan(args.scenarios, args.policies, durations,
                     selection=_selection(args.selection), dma=dict(DMA), references=False,
                     network=network)
    suffix = f"-{args.tag}" if args.tag else ""
    sweep_path, log_path = (SWEEP.with_name(f"steering-sweep{suffix}.json"),
                            LOG.with_name(f"steering-sweep{suffix}.txt"))
    out: list[str] = []

    def log(text: str) -> None:
        print(text, flush=True)
        out.append(text)

    log(f"== {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: steering_sweep "
        f"{' '.join(sys.argv[1:] if argv is None else argv)}; loadavg {os.getloadavg()[0]:.2f}")
    log(f"{plan.describe()}; durations {durations}")
    for line in lines:
        log(line)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # tear the network down
    began = time.monotonic()
    try:
        traces: list[dict[str, Any]] | None = [] if args.trace else None
        results, problems = sweep(args.network, plan, args.loads, args.seeds, log, traces)
    except BenchError as exc:
        log(f"steering_sweep: {exc}")
        return 1
    log(f"total {time.monotonic() - began:.0f} s; loadavg {os.getloadavg()[0]:.2f}")
    for p in problems:
        log(f"PROBLEM {p}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    saved = json.loads(sweep_path.read_text()) if sweep_path.exists() else {"runs": []}
    saved.update(settings=plan.describe(), controller=plan.controller_extra(),
                 runs=merge(saved["runs"], results))
    sweep_path.write_text(json.dumps(saved, indent=1) + "\n")
    with log_path.open("a") as f:
        f.write("\n".join(out) + "\n")
    if traces is not None:
        command = "sudo .venv/bin/python bench/steering_sweep.py " + " ".join(
            sys.argv[1:] if argv is None else argv)
        trace_path(args.tag).write_text(json.dumps({"command": command, "runs": traces}) + "\n")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
