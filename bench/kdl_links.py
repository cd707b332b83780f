"""Kdl link changes, one by one: the ten `bench/engine_scale.py` times, each split into the tree
repairs (`set_costs`), the host routes' sync and the decisions' recompute (what the core does
when paths may have changed), in CPU time (steadier than wall time on a shared machine), with
the heap operations the repairs made (a count of work, not a time).

Same network, load and random sequence as engine_scale's Kdl row (25 metric reports and 5
naive recomputes come first, so the ten links are the same ones). `--root DIR` runs another
checkout's controller (e.g. a baseline exported with `git archive`), so that two versions can
be compared in one session, alternately:

    .venv/bin/python bench/kdl_links.py [--changes 10] [--root DIR] [--reconnects 3]
    .venv/bin/python bench/kdl_links.py --against DIR --changes 100

`--reconnects N` then has the first N switches reconnect, one at a time (the switch's routes
are unknown again: every host's route is installed there), and prints each one's CPU ms.
`--polls N` then has N switches send port counters twice, the second time with no change
of cost (what every switch's reply does every stats interval), and prints the mean CPU ms of
the second replies. `--ticks N` then has the core tick N times with nothing changed (after one
tick that brings the links' costs in line with the link monitor's, untimed) and prints the
mean CPU ms of the links' part (`Network.expire`) and of the whole tick (which also sends an
LLDP frame out of every link port).

`--against DIR` compares two checkouts change by change instead of run by run: two worker
processes (this checkout's controller and DIR's) make the same changes, taking turns change by
change (the first alternating), so that the machine's load falls on both alike; it prints, per
part, both sums, their ratio (this / DIR) and the median of the per-change ratios. (Run by run,
the same code's recompute medians spread by ±10 % at load 3-6; this way, ~1-2 %.)

`--census` counts, per change, the entries the work is made of instead of timing it (the
counting wrappers cost time): trees repaired, switches in their cut (`Tree.changed`), of them
switches with two neighbours (inner switches of chains), cut switches whose distance changed,
switches whose next hop changed (`Tree.moved`), route flow-mods sent, decisions looked at and
decisions taken again. A change costs a few µs of Python per entry; these say where fewer
entries could come from.
"""

from __future__ import annotations

import argparse
import gc
import heapq
import importlib
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def main() -> int:
    """Print each change's CPU ms (repairs + routes + recompute) and the medians."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--changes", type=int, default=10)
    ap.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent)
    ap.add_argument("--reconnects", type=int, default=0)
    ap.add_argument("--polls", type=int, default=0)
    ap.add_argument("--ticks", type=int, default=0)
    ap.add_argument("--census", action="store_true")
    ap.add_argument("--against", type=Path, help="another checkout: paired changes (above)")
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)  # a paired worker
    args = ap.parse_args()
    if args.against is not None:
        return paired(args.root, args.against, args.changes)
    sys.path[:0] = [str(args.root), str(args.root / "bench")]
    es = importlib.import_module("engine_scale")
    paths = importlib.import_module("controller.network.paths")
    pushes = [0]
    push = heapq.heappush

    def counted(heap: list[tuple[float, int]], item: tuple[float, int]) -> None:
        pushes[0] += 1
        push(heap, item)

    paths.heapq.heappush = counted  # the module's own reference: counts its repairs only
    case = es.zoo_case("Kdl.graphml", 100, 50, 20)
    core = es.topology(case)
    dbids = es.populate(core, case)
    core._recompute_all(1.0)
    rng = random.Random(11)
    for _ in range(25):
        core.report(rng.choice(dbids), es._metrics(rng), 1.0)
    for _ in range(5):
        core.catalogue.report(rng.choice(dbids), es._metrics(rng), 1.0)
        core.decisions.forget_all()
        core._recompute_all(1.0)
    core.forwarding.sync_routes()  # every route installed once, as the switches hold them
    if args.census:
        return census(core, case, rng, args.changes)
    if args.serve:  # a paired worker: one change per line read, its three CPU ms written
        print("ready", flush=True)
        for _ in sys.stdin:
            print(" ".join(f"{ms:.3f}" for ms in change(core, case, rng)), flush=True)
        es.check(core, case)
        return 0
    pushes[0] = 0
    rows = [change(core, case, rng) for _ in range(args.changes)]
    es.check(core, case)
    print("change  repairs ms  routes ms  recompute ms  total ms")
    for i, (rep, rou, rec) in enumerate(rows):
        print(f"{i:6}  {rep:10.1f}  {rou:9.1f}  {rec:12.1f}  {rep + rou + rec:8.1f}")
    totals = [sum(r) for r in rows]
    print(f"median {statistics.median(r[0] for r in rows):10.1f}  "
          f"{statistics.median(r[1] for r in rows):9.1f}  "
          f"{statistics.median(r[2] for r in rows):12.1f}  {statistics.median(totals):8.1f}"
          f"   sum {sum(totals):.0f} ms CPU; heap pushes in the repairs: {pushes[0]}")
    if args.ticks:
        ticks(core, args.ticks)
    for dpid in sorted(case.ports)[:args.reconnects]:
        start = time.process_time()
        core.switch_connected(dpid)
        sent = core.switch_ports(dpid, case.ports[dpid] | {es.host_port(case, dpid)}, 2.0)
        print(f"switch {dpid} reconnects: {len(sent)} intents, "
              f"{(time.process_time() - start) * 1e3:.1f} ms CPU")
    if args.polls:
        polled = sorted(case.ports)[:args.polls]
        for now in (3.0, 5.0):  # the first set the rates and every link's cost; then timed
            start = time.process_time()
            for dpid in polled:
                core.port_stats(dpid, [(p, int(now * 1000), 0) for p in sorted(case.ports[dpid])],
                                now)
        print(f"{len(polled)} switches' port counters, no cost changed: "
              f"{(time.process_time() - start) * 1e3 / len(polled):.2f} ms CPU per reply")
    return 0


def change(core: Any, case: Any, rng: random.Random) -> tuple[float, float, float]:
    """One random link's cost changed: the CPU ms of the repairs, the routes and the
    recompute."""
    costs = dict(core.topology.link_cost_ms)
    (a, _), (b, _) = rng.choice(case.links)
    costs[frozenset((a, b))] = rng.uniform(1.0, 20.0)
    gc.collect()
    gc.disable()
    start = time.process_time()
    core.topology.set_costs(costs)
    repaired = time.process_time()
    core.forwarding.sync_routes()
    routed = time.process_time()
    core._recompute_all(1.0)
    done = time.process_time()
    gc.enable()
    return (repaired - start) * 1e3, (routed - repaired) * 1e3, (done - routed) * 1e3


def paired(root: Path, other: Path, changes: int) -> int:
    """`--against`: the same changes on `root`'s controller and `other`'s, change by change
    (module docstring); fails if a worker does not answer."""
    workers = []
    for tree in (root, other):
        env = dict(os.environ, PYTHONPATH=str(tree))
        workers.append(subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--root", str(tree), "--serve"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            text=True, env=env))
    for w in workers:
        assert w.stdout is not None and w.stdout.readline().strip() == "ready", "no worker"
    rows: list[list[tuple[float, ...]]] = [[], []]
    for i in range(changes):
        for k in ((0, 1) if i % 2 == 0 else (1, 0)):
            w = workers[k]
            assert w.stdin is not None and w.stdout is not None
            w.stdin.write("change\n")
            w.stdin.flush()
            got = tuple(float(x) for x in w.stdout.readline().split())
            assert len(got) == 3, f"worker {k} stopped at change {i}"
            rows[k].append(got)
    for w in workers:
        assert w.stdin is not None
        w.stdin.close()
        assert w.wait() == 0, "a worker failed (its check of the core, or an error)"
    print(f"{changes} changes, this = {root}, other = {other}")
    print("part       this sum  other sum  this/other  median of per-change ratios")
    for col, name in enumerate(("repairs", "routes", "recompute")):
        mine, theirs = sum(r[col] for r in rows[0]), sum(r[col] for r in rows[1])
        ratios = [a[col] / b[col] for a, b in zip(*rows, strict=True) if b[col] > 0.5]
        print(f"{name:9} {mine:9.0f} {theirs:10.0f} {mine / theirs:11.3f} "
              f"{statistics.median(ratios):12.3f}")
    return 0


CENSUS = ("trees", "cut", "chain", "dist", "moved", "routes", "looked", "taken")


def census(core: Any, case: Any, rng: random.Random, changes: int) -> int:
    """Make the same `changes` link changes and print, per change, the entries of its work
    (module docstring) and their sums."""
    topo_mod = importlib.import_module("controller.network.topology")
    inc_mod = importlib.import_module("controller.selection.incremental")
    adj = core.topology._adj  # (read only: each switch's neighbours)
    row: dict[str, int] = dict.fromkeys(CENSUS, 0)

    def counted(repair: Any) -> Any:
        def run(graph: Any, tree: Any, a: int, b: int) -> None:
            before = dict(tree.dist)
            repair(graph, tree, a, b)
            row["trees"] += 1
            row["cut"] += len(tree.changed)
            row["chain"] += sum(1 for x in tree.changed if len(adj[x]) == 2)
            row["dist"] += sum(1 for x in tree.changed if tree.dist.get(x) != before.get(x))
            row["moved"] += len(tree.moved)
        return run

    topo_mod.repair_dearer = counted(topo_mod.repair_dearer)
    topo_mod.repair_cheaper = counted(topo_mod.repair_cheaper)
    take = inc_mod.Incremental.take

    def taken(self: Any, *args: Any, **kwargs: Any) -> bool:
        row["taken"] += 1
        return bool(take(self, *args, **kwargs))

    inc_mod.Incremental.take = taken
    print("change " + " ".join(f"{k:>7}" for k in CENSUS))
    sums = dict.fromkeys(CENSUS, 0)
    for i in range(changes):
        row.update(dict.fromkeys(CENSUS, 0))
        costs = dict(core.topology.link_cost_ms)
        (a, _), (b, _) = rng.choice(case.links)
        costs[frozenset((a, b))] = rng.uniform(1.0, 20.0)
        core.topology.set_costs(costs)
        row["routes"] = len(core.forwarding.sync_routes())
        looked = core.engine.recomputed
        core._recompute_all(1.0)
        row["looked"] = core.engine.recomputed - looked
        print(f"{i:6} " + " ".join(f"{row[k]:7}" for k in CENSUS))
        for k in CENSUS:
            sums[k] += row[k]
    print("sum    " + " ".join(f"{sums[k]:7}" for k in CENSUS))
    print(f"of the cut: {sums['chain'] / max(1, sums['cut']):.0%} inner switches of chains, "
          f"{sums['dist'] / max(1, sums['cut']):.0%} with another distance")
    return 0


def ticks(core: Any, n: int) -> None:
    """Time `n` ticks with nothing changed (links seen at 0.0: none expires before 3.5 s)."""
    timeout = core.config.link_timeout_s
    core.tick(1.0)
    expire, tick = [], []
    for i in range(n):
        now = 1.0 + (i + 1) * 2.0 / (n + 1)
        start = time.process_time()
        core.network.expire(now, timeout)
        expire.append(time.process_time() - start)
        start = time.process_time()
        core.tick(now)
        tick.append(time.process_time() - start)
    print(f"{n} ticks, nothing changed: links (Network.expire) "
          f"{statistics.mean(expire) * 1e3:.2f} ms CPU, whole tick "
          f"{statistics.mean(tick) * 1e3:.2f} ms CPU (means)")


if __name__ == "__main__":
    sys.exit(main())
