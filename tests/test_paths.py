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
