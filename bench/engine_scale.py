"""Decision-engine scale: Topology Zoo networks, 100 ingresses, 50 services x 20 instances.

Measures, in one run, with the controller's real core (no Mininet, no switches):
- from scratch: every decision of every service at every ingress, paths included;
- after one instance's metrics change: what the core recomputes (that service only), against a
  naive controller that recomputes everything on every change;
- after one link's cost changes: paths and every decision;
- memory held by the core's state (tracemalloc).
Prints a table and writes it to bench/results/engine_scale.txt.

    .venv/bin/python bench/engine_scale.py [--quick]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from controller.config import ControllerConfig  # noqa: E402
from controller.core import Core  # noqa: E402
from controller.model import AffinityPolicy, Metrics, Service  # noqa: E402
from topologies.zoo import load_zoo  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "engine_scale.txt"


def build(zoo: str, ingresses: int, services: int, per_service: int,
          seed: int = 7) -> tuple[Core, list[str]]:
    """A core holding the zoo topology, the services, instances placed at random switches
    and their metrics; returns it with the D-BIDs."""
    rng = random.Random(seed)
    graph = load_zoo(zoo)
    dpids = sorted(d["dpid"] for _, d in graph.nodes(data=True))
    chosen = tuple(rng.sample(dpids, min(ingresses, len(dpids))))
    svcs = tuple(Service(f"s{i}", f"10.200.{i // 250}.{i % 250 + 1}", "tcp", 8000,
                         AffinityPolicy("5-tuple", 30, 0)) for i in range(services))
    core = Core(ControllerConfig(services=svcs, ingresses=chosen, stale_after_s=1e9))
    ports: dict[int, set[int]] = {d: {1} for d in dpids}  # port 1: hosts
    links = []
    for u, v, data in graph.edges(data=True):
        a, b = graph.nodes[u]["dpid"], graph.nodes[v]["dpid"]
        pa, pb = data["ports"][u], data["ports"][v]
        ports[a].add(pa)
        ports[b].add(pb)
        links.append(((a, pa), (b, pb)))
    for dpid, p in ports.items():
        core.topology.switch_up(dpid, p)
    for a, b in links:
        core.topology.link_seen(a, b, 0.0)
        core.topology.link_seen(b, a, 0.0)
    dbids = []
    for i, svc in enumerate(svcs):
        for k in range(per_service):
            dbid = f"10.{100 + i // 200}.{i % 200}.{k + 1}"
            core.topology.learn_host(dbid, "00:00:00:00:00:01", rng.choice(dpids), 1)
            core.catalogue.register(svc.dsid, dbid, "bench", True, 0.0)
            core.catalogue.report(dbid, _metrics(rng), 0.0)
            dbids.append(dbid)
    return core, dbids


def _metrics(rng: random.Random) -> Metrics:
    """A plausible random metric report."""
    return Metrics(cpu=rng.random() * 0.8, sessions=rng.randint(0, 8), queue=rng.randint(0, 3),
                   capacity=8)


def timed(action: Callable[[], object], repeat: int) -> float:
    """Median wall time of `action` in ms."""
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        action()
        samples.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(samples)


def measure(zoo: str, args: argparse.Namespace) -> dict[str, float]:
    """All figures for one topology."""
    tracemalloc.start()
    core, dbids = build(zoo, args.ingresses, args.services, args.instances)
    rng = random.Random(11)

    def scratch() -> None:
        core.engine.decisions.clear()
        core.topology.set_costs(dict(core.topology.link_cost_ms))  # drops cached paths
        core._recompute_all(1.0)

    full = timed(scratch, args.repeat)
    memory_mb = tracemalloc.get_traced_memory()[0] / 1e6
    tracemalloc.stop()

    def one_metric() -> None:
        core.report(rng.choice(dbids), _metrics(rng), 1.0)

    def naive_metric() -> None:
        core.catalogue.report(rng.choice(dbids), _metrics(rng), 1.0)
        core._recompute_all(1.0)

    links = core.topology.links()

    def one_link() -> None:
        costs = dict(core.topology.link_cost_ms)
        (a, _), (b, _) = rng.choice(links)
        costs[frozenset((a, b))] = rng.uniform(1.0, 20.0)
        core.topology.set_costs(costs)
        core._recompute_all(1.0)

    metric = timed(one_metric, args.repeat * 5)
    naive = timed(naive_metric, args.repeat)
    link = timed(one_link, args.repeat)
    return {"switches": len(core.topology.ports), "decisions": len(core.engine.decisions),
            "scratch_ms": full, "metric_ms": metric, "naive_metric_ms": naive,
            "speedup": naive / metric, "link_ms": link, "memory_mb": memory_mb}


def main() -> int:
    """Run the benchmark on Cogentco and Kdl and print/write the table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ingresses", type=int, default=100)
    ap.add_argument("--services", type=int, default=50)
    ap.add_argument("--instances", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="a smoke run: small sizes, one repeat")
    args = ap.parse_args()
    if args.quick:
        args.ingresses, args.services, args.instances, args.repeat = 10, 5, 4, 1
    lines = [f"{'topology':10} {'switches':>8} {'decisions':>9} {'scratch ms':>10} "
             f"{'1 metric ms':>11} {'naive ms':>9} {'speedup':>8} {'1 link ms':>9} {'MB':>6}"]
    for zoo in ("Cogentco.graphml", "Kdl.graphml"):
        r = measure(zoo, args)
        lines.append(f"{zoo.split('.')[0]:10} {r['switches']:8.0f} {r['decisions']:9.0f} "
                     f"{r['scratch_ms']:10.1f} {r['metric_ms']:11.2f} {r['naive_metric_ms']:9.1f} "
                     f"{r['speedup']:7.1f}x {r['link_ms']:9.1f} {r['memory_mb']:6.1f}")
    header = (f"engine scale: {args.ingresses} ingresses, {args.services} services x "
              f"{args.instances} instances (median of {args.repeat}+ runs; python "
              f"{sys.version.split()[0]})")
    text = "\n".join([header, *lines]) + "\n"
    print(text, end="")
    if not args.quick:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
