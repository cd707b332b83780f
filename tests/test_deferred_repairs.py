"""Tree repairs left queued after a link's cost moved (`Topology.set_costs(..., defer=True)`),
carried out a slice at a time while the network keeps changing and paths are read: once all
are carried out, every cached tree is the one computed from scratch; until then a tree not
yet repaired is the paths before the change, whole."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from controller.core import Core
from controller.network.paths import dijkstra
from controller.network.topology import Topology
from tests.helpers import FAILURES_CFG, all_fresh, figure2_core
from tests.test_paths import same


def network(rng: random.Random, switches: int, extra: int) -> tuple[Topology, list[tuple]]:
    """A random connected network: each switch joined to an earlier one, then `extra` links;
    every tree computed."""
    topo = Topology()
    ports: dict[int, int] = {}
    pairs: set[tuple[int, int]] = set()
    for n in range(1, switches):
        pairs.add((rng.randrange(n), n))
    for _ in range(extra):
        a, b = sorted(rng.sample(range(switches), 2))
        pairs.add((a, b))
    links = []
    for a, b in sorted(pairs):
        pa, pb = ports.get(a, 0) + 1, ports.get(b, 0) + 1
        ports[a], ports[b] = pa, pb
        links.append(((a, pa), (b, pb)))
    for n in range(switches):
        topo.switch_up(n, set(range(1, ports.get(n, 0) + 1)))
    for src, dst in links:
        topo.link_seen(src, dst, 0.0)
        topo.link_seen(dst, src, 0.0)
    for n in range(switches):
        topo.tree(n)
    return topo, links


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 10_000), st.integers(2, 12), st.integers(0, 8),
       st.lists(st.tuples(st.sampled_from(["defer", "now", "slice", "read", "down"]),
                          st.integers(0, 10_000)), max_size=14))
def test_deferred_repairs_end_on_the_trees_from_scratch(
        seed: int, switches: int, extra: int, ops: list[tuple[str, int]]) -> None:
    """Cost changes left queued or made at once, slices of the queue carried out, trees read
    (computed where missing) and links lost, in any order: a tree carried out or not queued is
    the one from scratch on the graph as it is; a queued one still the paths before; once the
    queue is empty, every tree is the one from scratch."""
    rng = random.Random(seed)
    topo, links = network(rng, switches, extra)
    before: dict[int, tuple[dict[int, float], dict[int, int]]] = {}
    for op, pick in ops:
        if op in ("defer", "now") and links:
            (a, _), (b, _) = links[pick % len(links)]
            costs = dict(topo.link_cost_ms)
            costs[frozenset((a, b))] = float(rng.randint(1, 4))
            if costs != topo.link_cost_ms:  # (else nothing changes, nothing is queued)
                fresh = {dst: dijkstra(topo._adj, dst) for dst in topo.trees}  # (what a queued
                before = {dst: (t.dist, t.parent) for dst, t in fresh.items()}  # repair is on)
            topo.set_costs(costs, defer=op == "defer")
        elif op == "slice":
            topo.repair_some(1 + pick % 3)
        elif op == "read":
            topo.tree(pick % switches)
        elif op == "down" and links:
            (a, pa), _ = links.pop(pick % len(links))
            topo.port_down(a, pa)
        queued = {id(t) for t, _ in topo.deferred._queue[topo.deferred._next:]}
        for dst, tree in topo.trees.items():
            if id(tree) in queued:
                assert (tree.dist, tree.parent) == before[dst]  # whole, as before the change
            else:
                same(tree, dijkstra(topo._adj, dst))
    assert not topo.repair_some() and not topo.deferred
    for dst, tree in topo.trees.items():
        same(tree, dijkstra(topo._adj, dst))


def test_port_counters_in_steps_end_as_at_once() -> None:
    """A port-counter reply that moves a link's cost, applied in the core's steps with at most
    one tree repaired a step: more than one step, and routes and decisions end as when it is
    applied at once."""
    cores: list[Core] = [figure2_core(FAILURES_CFG), figure2_core(FAILURES_CFG)]
    steps = []
    for k, core in enumerate(cores):
        all_fresh(core, 1.0)
        core.port_stats(1, [(10, 0, 0)], 1.0)
        if k == 0:
            got = list(core.port_stats_steps(1, [(10, 1_125_000, 0)], 2.0, size=1))
            steps = got
        else:
            got = [core.port_stats(1, [(10, 1_125_000, 0)], 2.0)]
        core.flush(2.0)
    assert len(steps) > 2 and all(s == [] for s in steps[:-1])
    assert sorted(map(repr, steps[-1])) == sorted(map(repr, got[0]))
    decisions = [{k: (d.primary, d.shares) for k, d in c.engine.decisions.items()} for c in cores]
    assert decisions[0] == decisions[1]
    assert {d: (t.dist, t.parent) for d, t in cores[0].topology.trees.items()} == {
        d: (t.dist, t.parent) for d, t in cores[1].topology.trees.items()}
