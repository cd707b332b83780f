"""Shortest-path trees repaired edge by edge against trees computed from scratch, on random
graphs with many equal-cost paths (small whole costs) and with fractional costs."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from controller.network.paths import Adjacency, Tree, dijkstra, repair_cheaper, repair_dearer


def graph(rng: random.Random, nodes: int, extra: int, whole: bool) -> Adjacency:
    """A random connected graph: a random tree plus `extra` edges, symmetric costs."""
    adj: Adjacency = {n: {} for n in range(nodes)}

    def cost() -> float:
        return float(rng.randint(1, 3)) if whole else round(rng.uniform(0.5, 20.0), 3)

    for n in range(1, nodes):
        m, c = rng.randrange(n), cost()
        adj[n][m] = adj[m][n] = c
    for _ in range(extra):
        a, b = rng.sample(range(nodes), 2)
        c = cost()
        adj[a][b] = adj[b][a] = c
    return adj


def same(tree: Tree, fresh: Tree) -> None:
    """The repaired tree is the one computed from scratch, children included."""
    assert tree.dist == fresh.dist
    assert tree.parent == fresh.parent
    kids = {k: sorted(v) for k, v in tree.kids().items() if v}
    assert kids == {k: sorted(v) for k, v in fresh.kids().items() if v}


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 10_000), st.integers(2, 14), st.integers(0, 10), st.booleans(),
       st.lists(st.tuples(st.integers(0, 10_000), st.sampled_from(["dearer", "cheaper",
                                                                   "gone", "new"])),
                max_size=10))
def test_repaired_trees_equal_trees_from_scratch(seed: int, nodes: int, extra: int,
                                                 whole: bool,
                                                 steps: list[tuple[int, str]]) -> None:
    """After any sequence of edges becoming dearer, cheaper, going or appearing, every tree
    (one per switch) equals a fresh Dijkstra, its `changed` and `turned` name every switch
    whose distance or path moved, and its `moved` exactly those whose next switch did."""
    rng = random.Random(seed)
    adj = graph(rng, nodes, extra, whole)
    trees = {dst: dijkstra(adj, dst) for dst in adj}
    for pick, op in steps:
        edges = sorted((a, b) for a in adj for b in adj[a] if a < b)
        if op in ("dearer", "cheaper", "gone") and edges:
            a, b = edges[pick % len(edges)]
            old = adj[a][b]
            if op == "gone":
                del adj[a][b], adj[b][a]
            else:
                new = old + rng.choice([0.5, 1.0, 2.0]) if op == "dearer" else max(
                    old - rng.choice([0.5, 1.0]), 0.25)
                adj[a][b] = adj[b][a] = new
        elif op == "new" and nodes > 2:
            a, b = rng.sample(range(nodes), 2)
            if b in adj[a]:
                continue
            old = None
            adj[a][b] = adj[b][a] = float(rng.randint(1, 3))
        else:
            continue
        repair_all(adj, trees, (a, b), old, op)


def repair_all(adj: Adjacency, trees: dict[int, Tree], edge: tuple[int, int],
               old: float | None, op: str) -> None:
    """Repair every tree after the edge's change (already in `adj`) and check each against a
    fresh Dijkstra, with what its `changed`, `turned` and `moved` name."""
    a, b = edge
    for dst, tree in trees.items():
        before = (dict(tree.dist), dict(tree.parent))
        paths_before = {x: path(before[1], x, dst) for x in before[0]}
        dearer = op == "gone" or (old is not None and adj[a].get(b, 0.0) > old)
        if dearer:
            if tree.uses(a, b):
                repair_dearer(adj, tree, a, b)
        else:
            repair_cheaper(adj, tree, a, b)
        fresh = dijkstra(adj, dst)
        same(tree, fresh)
        if before != (tree.dist, tree.parent):
            moved = {x for x in set(before[0]) | set(tree.dist)
                     if before[0].get(x) != tree.dist.get(x)}
            turned = {x for x in set(before[0]) | set(tree.dist)
                      if paths_before.get(x) != path(tree.parent, x, dst)}
            assert moved <= tree.changed | tree.turned
            assert turned <= tree.turned
            nexts = {x for x in set(before[1]) | set(tree.parent)
                     if before[1].get(x) != tree.parent.get(x)}
            assert nexts == tree.moved


def path(parent: dict[int, int], node: int, dst: int) -> list[int] | None:
    """The switches from `node` to `dst` along `parent` (None: unreachable)."""
    if node != dst and node not in parent:
        return None
    hops = [node]
    while hops[-1] != dst:
        hops.append(parent[hops[-1]])
    return hops


def chains(rng: random.Random, hubs: int, extra: int) -> Adjacency:
    """A random connected graph whose edges are chains of 0-3 switches with two neighbours
    each (as most of a Topology Zoo network's switches are), and a few leaves."""
    adj: Adjacency = {}
    count = [hubs]

    def link(a: int, b: int) -> None:
        for _ in range(rng.randint(0, 3)):  # switches strung between a and b
            mid = count[0]
            count[0] += 1
            adj.setdefault(mid, {})
            adj[a][mid] = adj[mid][a] = float(rng.randint(1, 3))
            a = mid
        adj[a][b] = adj[b][a] = float(rng.randint(1, 3))

    for n in range(hubs):
        adj[n] = {}
    for n in range(1, hubs):
        link(rng.randrange(n), n)
    for _ in range(extra):
        a, b = rng.sample(range(hubs), 2)
        if b not in adj[a]:
            link(a, b)
    for _ in range(rng.randint(0, 3)):  # leaves
        leaf, at = count[0], rng.randrange(count[0])
        count[0] += 1
        adj[leaf] = {at: 1.0}
        adj[at][leaf] = 1.0
    return adj


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 10_000), st.integers(2, 8), st.integers(0, 6),
       st.lists(st.tuples(st.integers(0, 10_000), st.sampled_from([2.0, 5.0, 20.0])),
                min_size=1, max_size=6))
def test_trees_repaired_along_chains_equal_trees_from_scratch(
        seed: int, hubs: int, extra: int, steps: list[tuple[int, float]]) -> None:
    """Links that get much dearer (as a congested one does) on a network of chains: the ways
    that shrink again after `_stretch`'s first pricing spread through its heap along the
    chains and on; every tree equals a fresh Dijkstra. (The test above, with small changes on
    small graphs, does not reach that spread: it passes with the heap's pushes removed.)"""
    rng = random.Random(seed)
    adj = chains(rng, hubs, extra)
    trees = {dst: dijkstra(adj, dst) for dst in adj}
    for pick, factor in steps:
        edges = sorted((a, b) for a in adj for b in adj[a] if a < b)
        a, b = edges[pick % len(edges)]
        old = adj[a][b]
        adj[a][b] = adj[b][a] = old * factor
        repair_all(adj, trees, (a, b), old, "dearer")
