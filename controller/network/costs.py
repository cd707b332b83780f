"""Network costs shared by every service: (ingress switch, attachment switch) -> path cost and
its parts (hops, delay, congestion, administrative), computed once per pair.

Boundary: it reads the topology's shortest-path trees and the monitor's link parts and caches,
per destination switch, each switch's cost and parts along its tree. A cached destination is
recomputed when the topology has replaced its tree (its paths may have changed) or when the
parts of a link its tree uses have changed (`refresh`, `refresh_link`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar

from controller.network.monitor import Direction, NetworkMonitor
from controller.network.paths import Tree
from controller.network.topology import Topology

Parts = tuple[tuple[str, float], ...]
PathCost = tuple[float, Parts]
# a destination's tree, each switch's parts as a sum, each pair's answer, the tree's version
_T = TypeVar("_T")
Memo = tuple[Tree, dict[int, tuple[float, ...]], dict[int, PathCost], int]


def _without(memo: dict[int, _T], nodes: set[int]) -> dict[int, _T]:
    """`memo` without the entries of `nodes`, in place (the two meet in C: a step of Python
    only per entry dropped, where a repair names hundreds of switches and a memo holds few)."""
    for node in memo.keys() & nodes:
        del memo[node]
    return memo


class PathCosts:
    """The network cost of every (ingress, attachment) pair in use, shared by the services."""

    def __init__(self, topology: Topology, monitor: NetworkMonitor) -> None:
        self.topology = topology
        self.monitor = monitor
        # destination -> (its tree, each switch's parts as a sum, each pair's answer, the
        # tree's version they are for)
        self._memo: dict[int, Memo] = {}
        self._links: dict[Direction, tuple[float, ...]] = {}  # each link's parts, as last seen
        # (switch, next switch) -> the parts of the link between them, while the edges' ports
        # are those of `_hops_for` (the topology's ports version)
        self._hops: dict[tuple[int, int], tuple[float, ...]] = {}
        self._hops_for = -1
        self.computed = 0  # pairs priced (for the benchmark and the tests)
        self._cleared = 0  # times every pair was forgotten
        self._repriced: dict[int, int] = {}  # destination -> times its parts were dropped

    def get(self, src: int, dst: int) -> PathCost | None:
        """The cost of the shortest path from switch `src` to switch `dst` and its parts;
        None when `dst` cannot be reached from `src`."""
        memo = self._memo.get(dst)
        tree = self.topology.trees.get(dst)
        if memo is not None and memo[0] is tree and memo[3] == tree.version:
            found = memo[2].get(src)
            if found is not None:
                return found  # the common case, kept short: a report looks up every ingress
        return self._get(src, dst)

    def cost(self, src: int, dst: int) -> float | None:
        """The cost alone of the shortest path from `src` to `dst` (None: unreachable): what
        `get` gives first, without pricing the parts."""
        tree = self.topology.trees.get(dst)
        if tree is None:
            tree = self.topology.tree(dst)
        cost = tree.dist.get(src)
        return None if cost is None else float(cost)

    def row(self, src: int, dsts: Iterable[int | None]) -> tuple[PathCost | None, ...]:
        """`get` from `src` to each of `dsts` (None where a destination is None): one
        decision's network parts, in one call."""
        memos, trees = self._memo, self.topology.trees
        out: list[PathCost | None] = []
        for dst in dsts:
            if dst is None:
                out.append(None)
                continue
            memo, tree = memos.get(dst), trees.get(dst)
            found = (memo[2].get(src) if memo is not None and memo[0] is tree
                     and memo[3] == tree.version else None)
            out.append(found if found is not None else self._get(src, dst))
        return tuple(out)

    def _get(self, src: int, dst: int) -> PathCost | None:
        """`get`, when the answer is not at hand."""
        tree = self.topology.tree(dst)
        cost = tree.dist.get(src)
        if cost is None:
            return None
        memo = self._sync(dst, tree)
        found = memo[2].get(src)
        if found is None:
            hops, delay, congestion, admin = self._parts(tree, memo[1], src)
            found = memo[2][src] = (float(cost), (("hops", hops), ("delay_ms", delay),
                                                  ("congestion_ms", congestion),
                                                  ("admin_ms", admin)))
        return found

    def _sync(self, dst: int, tree: Tree) -> Memo:
        """The destination's pairs, brought up to the tree's version."""
        memo = self._memo.get(dst)
        if memo is not None and memo[0] is tree and memo[3] == tree.version - 1:
            # repaired once since: the rest of the paths are the same, and the parts of a path
            # that is the same are too
            memo = self._memo[dst] = (tree, _without(memo[1], tree.turned),
                                      _without(memo[2], tree.changed), tree.version)
        elif memo is None or memo[0] is not tree or memo[3] != tree.version:
            memo = self._memo[dst] = (tree, {dst: (0.0, 0.0, 0.0, 0.0)}, {}, tree.version)
        return memo

    def _parts(self, tree: Tree, known: dict[int, tuple[float, ...]],
               src: int) -> tuple[float, ...]:
        """The parts of the path from `src` along `tree`, summed from the far end."""
        walk = []
        node, parent = src, tree.parent
        while node not in known:
            walk.append(node)
            node = parent[node]
        total = known[node]
        if self._hops_for != self.topology.ports_version:
            self._hops.clear()
            self._hops_for = self.topology.ports_version
        hops = self._hops
        for node in reversed(walk):
            nxt = parent[node]
            link = hops.get((node, nxt))
            if link is None:
                direction = self._direction(node, nxt)
                link = self._links.get(direction) or self._look(direction)
                hops[(node, nxt)] = link
            total = (total[0] + 1, total[1] + link[0], total[2] + link[1], total[3] + link[2])
            known[node] = total
        self.computed += len(walk)
        return total

    def _direction(self, a: int, b: int) -> Direction:
        """The two ends of the edge a-b, a's first."""
        ports = self.topology.edge_ports_of(a, b)
        return (a, ports[a]), (b, ports[b])

    def _look(self, direction: Direction) -> tuple[float, ...]:
        """A link's parts (delay, congestion, administrative) as the monitor gives them now;
        remembered, so that a change is noticed (`refresh_link`)."""
        parts = self.monitor.link_parts(*direction)
        values = self._links[direction] = (parts["delay_ms"], parts["congestion_ms"],
                                           parts["admin_ms"])
        return values

    # --- link parts that changed without a change of paths ------------------------------
    def refresh(self) -> None:
        """Look at every link's parts; forget the pairs whose paths cross one that changed,
        and the parts of links that are gone."""
        links = self.topology.links()
        for direction in links:
            self.refresh_link(direction)
        if len(self._links) > len(links):
            present = set(links)
            self._links = {d: p for d, p in self._links.items() if d in present}

    def refresh_link(self, direction: Direction) -> None:
        """Look at one link's parts (a new measurement); forget the pairs it changes."""
        before = self._links.get(direction)
        if self._look(direction) == before:
            return
        (a, _), (b, _) = direction
        self._hops.pop((a, b), None)
        self._hops.pop((b, a), None)
        for dst in [d for d, (tree, _, _, _) in self._memo.items()
                    if tree.parent.get(a) == b or tree.parent.get(b) == a]:
            del self._memo[dst]
            self._repriced[dst] = self._repriced.get(dst, 0) + 1

    def clear(self) -> None:
        """Forget every pair (they are recomputed when next asked for)."""
        self._memo.clear()
        self._cleared += 1

    def stamp(self, dst: int) -> tuple[Tree | None, int, int, int]:
        """What a destination's pair costs depend on: its tree and the tree's version, and how
        often its parts were re-priced otherwise. Equal stamps, equal costs; a tree one version
        further changed only for the switches in its `changed`."""
        tree = self.topology.trees.get(dst)
        if tree is not None:
            self._sync(dst, tree)  # so that its pairs never fall two repairs behind
        return (tree, -1 if tree is None else tree.version, self._cleared,
                self._repriced.get(dst, 0))
