"""A discrete-event model of the steering benchmark's Figure 2, driving the controller's own code.

    .venv/bin/python bench/steering_model.py [--scenario hot-site] [--rate 9] [--seeds 8]

Boundary: no Mininet, no processes, no network; one second per cell. What is modelled: two
ingresses (c1 at r1, c2 at r2) sending Poisson requests; the sites e4, e2 and e3 of
bench/steering_net.py as FIFO worker pools with fixed service times (e4 slowed in `hot-site`,
c1's rate tripled half-way in `load-step`); e3 behind the congested path (`--e3-extra-ms` more
on every request); each site's D-MA sampling its instance and reporting through the D-MA's own
report policy (agents/dma.py); the controller pricing instances as the core does (the report
aged, plus the flows placed since, through the compute cost the benchmark configures) and
choosing with its own engine (controller/engine.py), deciding again lazily on a pick whose cost
moved as the core does. `--slow` lengthens every service by that fraction per busy worker in
the whole system, which stands in for the CPU the emulation's processes share.

It answers questions the Mininet benchmark takes minutes per cell to answer, with many seeds:
how a setting moves the p95, and what the best a policy could do is (`--only e2` sends every
request to e2). It is a model: it leaves out TCP, the controller's and switches' latencies and
the noise of a shared machine; check in Mininet what it suggests.
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import random
import sys
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from agents.dma import ReportPolicy, report_metrics  # noqa: E402
from bench.steering import DMA, POLICIES, SCORING  # noqa: E402
from bench.steering_stats import percentile  # noqa: E402
from controller.config import SelectionConfig  # noqa: E402
from controller.model import Metrics, Weights  # noqa: E402
from controller.selection.engine import CandidateInput, Engine, compute_ms  # noqa: E402
from controller.selection.placements import Placements, as_of, hold_s  # noqa: E402
from controller.selection.scoring import ScoringConfig, scoring_from_dict  # noqa: E402

BASE_MS = 100.0  # the service's base delay
OVERHEAD_MS = 12.0  # what a request costs besides waiting and service (measured: ~112 ms idle)
SITES = {"e4": (2, 100.0), "e2": (3, 100.0), "e3": (2, 130.0)}  # workers, service ms
NETWORK_MS = {1: {"e4": 0.0, "e2": 2.0, "e3": 192.0},  # the controller's path costs as seen
              2: {"e2": 0.0, "e4": 2.0, "e3": 192.0}}  # in the benchmark's decisions
SCENARIOS = ("balanced", "hot-site", "load-step")
DURATION = {"balanced": 18.0, "hot-site": 18.0, "load-step": 22.5}


@dataclass
class Settings:
    """One cell: scenario, policy and the controller's and network's settings."""

    scenario: str = "hot-site"
    policy: str = "dyncast"
    rate: float = 9.0  # requests a second per client
    seed: int = 1
    spread: float = 0.1
    sharpness: float = 4.0
    hysteresis: float = SelectionConfig().hysteresis
    placed: bool = True  # count placements and age reports (the core's `placed_flows`)
    ageing: bool = True  # age reports (False: as the core did before it aged them)
    scoring: str = SCORING  # a [controller.scoring] table, "" for the default estimate
    only: tuple[str, ...] = ()  # if given, the only instances the controller may choose
    # what the D-MA reports as cpu: "instance" (sessions/c now), "busy" (the workers' busy
    # fraction since the last sample) or "none"
    cpu: str = "instance"
    slow: float = 0.03
    e3_extra_ms: float = 200.0
    dma: dict[str, float] = field(default_factory=lambda: dict(DMA))


@dataclass
class Site:
    """A worker pool with a FIFO queue, counting what the demo service's /stats reports."""

    name: str
    workers: int
    service_ms: float
    busy: int = 0
    queue: list[dict[str, Any]] = field(default_factory=list)
    delay_ms: float | None = None  # EWMA of served time, as the demo service keeps it
    busy_s: float = 0.0  # worker-seconds busy so far
    changed: float = 0.0  # when `busy` last changed

    def account(self, now: float, step: int) -> None:
        """Count the busy worker-seconds up to `now`, then change `busy` by `step`."""
        self.busy_s += self.busy * (now - self.changed)
        self.changed = now
        self.busy += step

    def stats(self) -> dict[str, Any]:
        """The demo service's /stats: sessions, queue, capacity, expected processing delay."""
        idle = self.busy == 0 and not self.queue
        delay = (self.service_ms if self.delay_ms is None or idle
                 else max(self.service_ms, self.delay_ms))
        return {"sessions": self.busy, "queue": len(self.queue), "capacity": self.workers,
                "processing_delay_ms": delay}


@dataclass(frozen=True)
class Outcome:
    """One run: response times (ms) and the share of requests each instance served."""

    times: list[float]
    shares: dict[str, float]

    @property
    def p95(self) -> float:
        """The 95th percentile response time (nearest rank)."""
        value = percentile(self.times, 0.95)
        if value is None:
            raise ValueError("no request was served")
        return value


def _scoring(text: str) -> ScoringConfig:
    """The [controller.scoring] table `text` (disabled when empty)."""
    data = tomllib.loads(text)["controller"]["scoring"] if text else {}
    return scoring_from_dict(data)


def run(s: Settings) -> Outcome:
    """Simulate one cell and return its outcome."""
    if s.scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {s.scenario!r} (known: {', '.join(SCENARIOS)})")
    if s.policy not in POLICIES:
        raise ValueError(f"unknown policy {s.policy!r} (known: {', '.join(POLICIES)})")
    rng = random.Random(s.seed)
    end = DURATION[s.scenario]
    sites = {n: Site(n, w, ms * (3.0 if s.scenario == "hot-site" and n == "e4" else 1.0))
             for n, (w, ms) in SITES.items()}
    unknown = set(s.only) - set(sites)
    if unknown:
        raise ValueError(f"unknown instance(s) {sorted(unknown)} (known: {', '.join(sites)})")
    extra_ms = {"e4": 0.0, "e2": 0.0, "e3": s.e3_extra_ms}
    scoring = _scoring(s.scoring)
    engine = Engine(s.spread, s.sharpness, s.hysteresis, s.seed)
    placements = Placements(SelectionConfig().placed_grace_s)
    reports: dict[str, tuple[Metrics, float]] = {}  # instance -> (last report, when)
    seen: dict[int, dict[str, float]] = {}  # ingress -> compute costs its decision saw
    sampled: dict[str, tuple[float, float]] = {}  # instance -> (when, busy_s) last sampled
    events: list[tuple[float, int, str, Any]] = []
    order = itertools.count()
    all_busy = [0]

    def at(t: float, kind: str, data: Any) -> None:
        heapq.heappush(events, (t, next(order), kind, data))

    for ingress in NETWORK_MS:
        t = 0.0
        while True:
            step = s.scenario == "load-step" and ingress == 1 and t >= end / 2
            t += rng.expovariate(s.rate * (3.0 if step else 1.0))
            if t >= end:
                break
            at(t, "arrive", ingress)
    sample = max(0.05, min(s.dma["min-interval"], s.dma["interval"]))
    policies = {n: ReportPolicy(s.dma["interval"], s.dma["min-interval"], s.dma["threshold"])
                for n in sites}
    for n in sites:
        at(rng.random() * sample, "sample", n)

    def cost(name: str, now: float) -> float:  # as the core's _compute_ms
        metrics, when = reports.get(name, (None, now))
        if s.placed:
            hold = hold_s(metrics, BASE_MS)
            metrics = as_of(metrics, hold, placements.count(name, now, hold),
                            now - when if s.ageing else None)
        return compute_ms(metrics, BASE_MS, scoring)

    def decide(ingress: int, now: float) -> None:
        rows = [CandidateInput(n, "active", NETWORK_MS[ingress][n], cost(n, now))
                for n in sites if not s.only or n in s.only]
        engine.update(ingress, "web", Weights(), rows, now, None, s.policy)
        seen[ingress] = {c.dbid: c.compute_ms for c in engine.decisions[(ingress, "web")]
                         .candidates}

    def pick(ingress: int, now: float) -> str:
        if (ingress, "web") not in engine.decisions:
            decide(ingress, now)
        name = engine.pick(ingress, "web")
        assert name is not None
        before = seen[ingress].get(name)
        moved = before is not None and abs(cost(name, now) - before) > s.hysteresis * max(
            before, 1e-9)
        if s.placed and moved:  # as the core's _pick: decide again before using a moved cost
            decide(ingress, now)
            name = engine.pick(ingress, "web")
            assert name is not None
        return name

    def start(site: Site, now: float, request: dict[str, Any]) -> None:
        site.account(now, 1)
        all_busy[0] += 1
        at(now + site.service_ms * (1.0 + s.slow * all_busy[0]) / 1000.0, "done",
           (site.name, request))

    handlers: dict[str, Callable[[float, Any], None]] = {}
    times: list[float] = []
    served = dict.fromkeys(sites, 0)

    def arrive(now: float, ingress: int) -> None:
        name = pick(ingress, now)
        if s.placed:
            placements.add(name, now)
        request = {"sent": now}
        at(now + extra_ms[name] / 2000.0, "reach", (name, request))

    def reach(now: float, data: tuple[str, dict[str, Any]]) -> None:
        site, request = sites[data[0]], data[1]
        request["arrived"] = now
        if site.busy < site.workers:
            start(site, now, request)
        else:
            site.queue.append(request)

    def done(now: float, data: tuple[str, dict[str, Any]]) -> None:
        site, request = sites[data[0]], data[1]
        site.account(now, -1)
        all_busy[0] -= 1
        delay = (now - request["arrived"]) * 1000.0
        site.delay_ms = delay if site.delay_ms is None else site.delay_ms + 0.3 * (
            delay - site.delay_ms)
        times.append((now - request["sent"]) * 1000.0 + extra_ms[site.name] / 2 + OVERHEAD_MS)
        served[site.name] += 1
        if site.queue:
            start(site, now, site.queue.pop(0))

    def sample_site(now: float, name: str) -> None:
        site = sites[name]
        stats = site.stats()
        site.account(now, 0)
        cpu = 0.0
        if s.cpu == "instance":
            cpu = min(1.0, stats["sessions"] / site.workers)
        elif s.cpu == "busy":
            last_t, last_busy = sampled.get(name, (0.0, 0.0))
            if now > last_t:
                cpu = min(1.0, (site.busy_s - last_busy) / ((now - last_t) * site.workers))
            sampled[name] = (now, site.busy_s)
        report = {"dbid": name, "cpu": cpu, **stats}
        if policies[name].decide(now, report_metrics(report)):
            reports[name] = (Metrics(cpu=report["cpu"], sessions=stats["sessions"],
                                     queue=stats["queue"], capacity=site.workers,
                                     processing_delay_ms=stats["processing_delay_ms"]), now)
            placements.reported(name, now)
            for ingress in NETWORK_MS:
                decide(ingress, now)
        if now < end + 5.0:
            at(now + sample, "sample", name)

    handlers.update(arrive=arrive, reach=reach, done=done, sample=sample_site)
    while events:
        now, _, kind, data = heapq.heappop(events)
        handlers[kind](now, data)
    total = max(1, len(times))
    return Outcome(times, {n: served[n] / total for n in sites})


def mean_p95(settings: Settings, seeds: int) -> float:
    """The mean over `seeds` seeds (1..seeds) of the cell's p95."""
    values = [run(replace(settings, seed=k)).p95 for k in range(1, seeds + 1)]
    return sum(values) / len(values)


def main(argv: list[str] | None = None) -> int:
    """Print every policy's mean p95 over the seeds, and dyncast's against the best other."""
    ap = argparse.ArgumentParser(prog="steering_model", description=__doc__.splitlines()[0])
    ap.add_argument("--scenario", choices=SCENARIOS, nargs="+", default=list(SCENARIOS))
    ap.add_argument("--rate", type=float, default=9.0, help="requests/s per client (9)")
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--spread", type=float, default=0.1)
    ap.add_argument("--sharpness", type=float, default=4.0)
    ap.add_argument("--slow", type=float, default=0.03,
                    help="service slowdown per busy worker in the system (0.03)")
    ap.add_argument("--no-placed", action="store_true",
                    help="neither count placements nor age reports")
    ap.add_argument("--no-ageing", action="store_true",
                    help="count placements but do not age reports (the controller before)")
    ap.add_argument("--controller-defaults", action="store_true",
                    help="the default compute estimate instead of the bench's scoring")
    ap.add_argument("--cpu", choices=("instance", "busy", "none"), default="instance",
                    help="what the D-MAs report as cpu (the D-MA's --cpu-source)")
    ap.add_argument("--only", nargs="+", default=[], metavar="DBID",
                    help="dyncast may choose only these instances (a bound: e.g. e2)")
    args = ap.parse_args(argv)
    if args.rate <= 0 or args.seeds < 1:
        ap.error("--rate must be > 0 and --seeds >= 1")
    for scenario in args.scenario:
        base = Settings(scenario=scenario, rate=args.rate, spread=args.spread,
                        sharpness=args.sharpness, slow=args.slow, placed=not args.no_placed,
                        ageing=not args.no_ageing,
                        scoring="" if args.controller_defaults else SCORING, cpu=args.cpu)
        p95 = {p: mean_p95(replace(base, policy=p), args.seeds) for p in POLICIES}
        if args.only:
            p95["dyncast"] = mean_p95(replace(base, only=tuple(args.only)), args.seeds)
        best = min((v, p) for p, v in p95.items() if p != "dyncast")
        cells = "  ".join(f"{p} {v:.0f}" for p, v in p95.items())
        print(f"{scenario:<10} mean p95 ms over {args.seeds} seeds: {cells}  "
              f"dyncast/best other ({best[1]}) {p95['dyncast'] / best[0]:.2f}x", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
