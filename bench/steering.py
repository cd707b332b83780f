"""Steering quality: the same workload under every selection policy, in Mininet, real traffic.

For each network (the draft's Figure 2, Topology Zoo's Abilene) one Mininet network runs under
the real controller, with a demo-service instance and a D-MA per edge site (unequal capacities)
and every switch-to-switch link shaped to 10 Mbit/s, one path of which a bulk transfer keeps
congested (there is no netem here for propagation delays). Each scenario (balanced, hot site, load
step, instance failure) runs once per policy (dyncast, nearest, least-loaded, round-robin,
random, p2c, least-inflight, consistent-hash; switched with PUT /services/web), with the same
seeded open-loop Poisson arrivals from clients at several ingresses (bench/loadgen.py: a fresh
TCP connection per request, plus keep-alive connections that check affinity). A scenario may
name a reference: one more run in which every new flow goes to the sites it names (the other
instances drained through the controller's API), what an operator who knew the scenario would
choose; it shows how much the network's capacity leaves any policy to gain.
Results: bench/results/steering.{txt,json}, docs/results/steering.md and its PNG plots.
This module is the command line and the orchestration; the plan, its settings and the checks
are bench/steering_plan.py, a network brought up and one run on it bench/steering_run.py (the
networks bench/steering_net.py, the summaries bench/steering_stats.py, the report
bench/steering_report.py).

    sudo .venv/bin/python bench/steering.py   # full: both networks, 8 policies (~20 min for 5)
    sudo .venv/bin/python bench/steering.py --quick   # smoke: Figure 2, 2 scenarios x 2 policies
    .venv/bin/python bench/steering.py --report-only  # rewrite the report from saved results

Exit status 1 when the benchmark did not work: the controller ignored a policy, dyncast lost
requests outside a failure, a keep-alive connection changed instance or was reset outside a
failure, or no policy got requests through. The performance targets are reported, not enforced.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# the plan and the run of one network live in their own modules; their names stay importable
# from here (bench/steering_sweep.py and the tests use them)
from bench.steering_failover import FAIL_KINDS, FAILOVER_SUFFIX  # noqa: E402
from bench.steering_failover import line as failure_line  # noqa: E402
from bench.steering_net import NETWORKS  # noqa: E402
from bench.steering_plan import (  # noqa: E402, F401 - re-exported
    CONGESTION,
    DMA,
    KA_INTERVAL,
    KEEPALIVE,
    POLICIES,
    SCORING,
    SELECTION,
    SETTLE_S,
    BenchError,
    Plan,
    _line,
    _pairs,
    _positive,
    _toml,
    check,
    reference_label,
)
from bench.steering_run import Bench  # noqa: E402
from mininet_tests.harness import OVS_SEND_BUFFER, ovs_send_buffer  # noqa: E402

RESULTS = ROOT / "bench" / "results"
DOCS = ROOT / "docs" / "results"


def run_network(name: str, plan: Plan, log: Any) -> list[dict[str, Any]]:
    """Bring one network up, run every scenario under every policy, tear it down."""
    from mininet_tests.harness import Lab

    net = NETWORKS[name]()
    lab = Lab(f"steering-{name}")
    bench = Bench(net, lab, plan)
    results = []
    try:
        began = time.monotonic()
        bench.start()
        log(f"{name}: network up in {time.monotonic() - began:.0f} s")
        for sc_name in plan.scenarios:
            scenario = net.scenario(sc_name)
            for policy, only in plan.runs(scenario):
                began = time.monotonic()
                summary = bench.run(scenario, policy, plan.durations[sc_name], plan.seed, only)
                results.append(summary)
                log(f"{name:8s} {sc_name:10s} {summary['policy']:12s} " + _line(summary)
                    + f"  [{time.monotonic() - began:.0f} s]")
                if "failure" in summary:
                    log(f"{'':8s} {sc_name:10s} {summary['policy']:12s} "
                        + failure_line(summary["failure"]))
    finally:
        problems = lab.close()
        if problems:
            log(f"{name}: teardown problems (artefacts in {lab.artifacts}):\n  "
                + "\n  ".join(problems))
    return results


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, write the results and the report."""
    ap = argparse.ArgumentParser(prog="steering", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="Figure 2, two scenarios, two policies")
    ap.add_argument("--networks", nargs="+", choices=sorted(NETWORKS))
    ap.add_argument("--scenarios", nargs="+")
    ap.add_argument("--policies", nargs="+",
                    choices=[*POLICIES, *(p + FAILOVER_SUFFIX for p in POLICIES)],
                    help="P+failover: P with the service's switch-local failover")
    ap.add_argument("--fail-kind", choices=FAIL_KINDS, default="process",
                    help="the failure scenario: process (default): the site's service and "
                         "D-MA are killed; link: its access link goes down (the switch's port)")
    ap.add_argument("--controller-stall", type=_positive, default=0.0, metavar="S",
                    help="stop the controller (SIGSTOP) for S s at the failure, then SIGCONT: "
                         "a busy or partitioned controller (under OVS's inactivity probe)")
    ap.add_argument("--health", action="store_true", default=True,
                    help="passive health on (the controller's default; the flag is kept for "
                         "the commands that name it)")
    ap.add_argument("--no-health", dest="health", action="store_false",
                    help="turn passive health off ([controller.health] enabled = false)")
    ap.add_argument("--duration", type=float, default=None, help="seconds per run")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--selection", nargs="+", default=[], metavar="KEY=VALUE",
                    help="[controller.selection] settings (spread, sharpness, hysteresis)")
    ap.add_argument("--congestion", choices=CONGESTION, default="standing",
                    help="standing (default): the bulk transfer congests one path in every "
                         "scenario; hot-site: only in the hot-site scenario")
    ap.add_argument("--tuned", action="store_true",
                    help="the settings of the runs before issue 22 (spread 0.1, the bench's "
                         "multi-worker scoring) instead of the controller's defaults")
    ap.add_argument("--load", type=_positive, default=1.0,
                    help="multiply every client's request rate by this (default 1)")
    ap.add_argument("--dma", nargs="+", default=[], metavar="KEY=VALUE",
                    help="D-MA reporting (interval, min-interval, threshold)")
    ap.add_argument("--no-reference", action="store_true",
                    help="skip the reference runs (every new flow to a scenario's best sites)")
    ap.add_argument("--no-report", action="store_true", help="do not rewrite docs/results")
    ap.add_argument("--tag", default="", help="write bench/results/steering-TAG.* (no report)")
    ap.add_argument("--report-only", action="store_true",
                    help="rewrite docs/results from bench/results/steering.json")
    args = ap.parse_args(argv)
    if args.report_only:
        report(RESULTS / "steering.json")
        return 0
    if os.geteuid() != 0:
        print("steering: needs root (Mininet)", file=sys.stderr)
        return 2
    networks = args.networks or (["figure2"] if args.quick else ["figure2", "abilene"])
    scenarios = args.scenarios or (["hot-site", "failure"] if args.quick else
                                   ["balanced", "hot-site", "load-step", "failure"])
    policies = args.policies or (["dyncast", "round-robin"] if args.quick else list(POLICIES))
    base = args.duration or (10.0 if args.quick else 18.0)
    durations = {s: base * (1.0 if s in ("balanced", "hot-site") else 1.25) for s in scenarios}
    base_selection = SELECTION if args.tuned else {}
    dma = {k: float(v) for k, v in _pairs(args.dma, booleans=False).items()}
    plan = Plan(scenarios, policies, durations, args.seed,
                {**base_selection, **_pairs(args.selection)},
                SCORING if args.tuned else "", {**DMA, **dma},
                args.congestion, args.load, not args.no_reference, args.fail_kind,
                stall_s=args.controller_stall, health=args.health)
    began = time.monotonic()
    lines: list[str] = []

    def log(text: str) -> None:
        print(text, flush=True)
        lines.append(text)

    log(f"{plan.describe()}; durations {plan.durations}")
    send_buffer = ovs_send_buffer()
    if send_buffer < OVS_SEND_BUFFER:
        log(f"steering: Open vSwitch's packet socket has a {send_buffer}-byte send "
            "buffer; packets queued at shaped links would block sends on every port. Stop "
            "Open vSwitch and run scripts/setup.sh (it raises net.core.wmem_default first).")
        return 1

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # tear the network down
    results: list[dict[str, Any]] = []
    try:
        for name in networks:
            results += run_network(name, plan, log)
    except BenchError as exc:
        log(f"steering: {exc}")
        return 1
    log(f"total {time.monotonic() - began:.0f} s")
    problems = check(results)
    for p in problems:
        log(f"PROBLEM {p}")
    suffix = f"-{args.tag}" if args.tag else "-quick" if args.quick else ""
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"steering{suffix}.txt").write_text("\n".join(lines) + "\n")
    saved = {"networks": networks, "settings": plan.describe(), "congestion": plan.congestion,
             "load": plan.load,
             "controller": plan.controller_extra(), "runs": results}
    (RESULTS / f"steering{suffix}.json").write_text(json.dumps(saved, indent=1) + "\n")
    if not (args.quick or args.no_report or args.tag):
        report(RESULTS / "steering.json")
    return 1 if problems else 0


def report(path: Path) -> None:
    """Write docs/results/steering.md and its plots from saved results."""
    from bench.steering_report import write_report

    saved = json.loads(path.read_text())
    defaults_path = path.with_name("steering-defaults.json")
    defaults = json.loads(defaults_path.read_text())["runs"] if defaults_path.exists() else None
    heavy_path = path.with_name("steering-heavy.json")
    heavy = json.loads(heavy_path.read_text())["runs"] if heavy_path.exists() else None
    repeats = {}
    for seed_path in sorted(path.parent.glob("steering-seed*.json")):
        found = re.fullmatch(r"steering-seed(\d+)\.json", seed_path.name)
        if found and int(found.group(1)) != 1:
            repeats[int(found.group(1))] = json.loads(seed_path.read_text())["runs"]
    extra = None
    baselines_path = path.with_name("steering-baselines.json")
    if baselines_path.exists():
        from bench.steering_baselines import baselines_section

        extra = baselines_section(json.loads(baselines_path.read_text()), saved["networks"])
    from bench.steering_sweep_current import (
        BEFORE_QUEUE,
        DEFAULTS_TAG,
        allowance_sweep,
        congestion_sweep,
        current_sweeps,
    )
    from bench.steering_sweep_report import sweep_section

    extra = [*(extra or []), *current_sweeps(path, DOCS)]
    sweep_path = path.with_name("steering-sweep.json")
    if sweep_path.exists():
        sweep = json.loads(sweep_path.read_text())
        extra += sweep_section(sweep, DOCS, title=BEFORE_QUEUE)
        queueing_path = path.with_name("steering-sweep-queueing.json")
        if queueing_path.exists():
            from bench.steering_sweep_report import queueing_section

            extra += queueing_section(json.loads(queueing_path.read_text()), sweep)
        perflow_path = path.with_name("steering-sweep-perflow.json")
        perflow_base = path.with_name("steering-sweep-perflow-defaults.json")
        if perflow_path.exists() and perflow_base.exists():
            from bench.steering_perflow_report import perflow_section

            extra += perflow_section(json.loads(perflow_path.read_text()),
                                     json.loads(perflow_base.read_text()))
        from bench.steering_sweep_marginal_report import SETTINGS, load, marginal_section

        marginal = load(list(SETTINGS))
        if marginal:
            extra += marginal_section(marginal)
    extra += congestion_sweep(path, DOCS)
    from bench.steering_sweep_options_report import load as load_options
    from bench.steering_sweep_options_report import options_section

    extra += options_section(load_options(path.parent))
    extra += allowance_sweep(path, DOCS)
    bound_path = path.with_name(f"steering-bound-{DEFAULTS_TAG}.json")
    if bound_path.exists():
        from bench.steering_bound import bound_section

        extra += bound_section(json.loads(bound_path.read_text()), DEFAULTS_TAG)
    from bench.steering_failover import HEALTH_TAGS, TAGS, failover_section, health_section

    failover = {tag: json.loads(p.read_text()) for tag in TAGS
                if (p := path.with_name(f"steering-failover-{tag}.json")).exists()}
    if failover:
        extra = [*(extra or []), *failover_section(failover)]
    health = {tag: json.loads(p.read_text()) for tag in HEALTH_TAGS
              if (p := path.with_name(f"steering-{tag}.json")).exists()}
    if "process" in failover:
        health["failover-process"] = failover["process"]
    extra = [*(extra or []), *health_section(health)]
    write_report(saved, [NETWORKS[n]() for n in saved["networks"]], DOCS, defaults, heavy,
                 repeats, extra)


if __name__ == "__main__":
    sys.exit(main())
