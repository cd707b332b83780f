"""Shortest-path trees towards one switch, computed once and then repaired edge by edge.

Boundary: plain graph algorithms over an adjacency dict (switch -> neighbour -> cost in ms),
no knowledge of ports, links or hosts. Among paths of equal cost a switch's next hop is its
lowest-numbered neighbour on one, so a tree depends only on the graph, never on the order in
which edges were added or changes applied: a repaired tree equals one computed from scratch.
A repair needs every edge cost > 0 (the topology recomputes instead when one is not).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass, field

Adjacency = dict[int, dict[int, float]]
REPAIR_SLICE = 50  # deferred tree repairs a step (Kdl: about 0.2 ms each, up to a few ms)


@dataclass(slots=True, eq=False)
class Tree:
    """Shortest paths towards `dst`: each reachable switch's distance and its next switch.

    A repair changes a tree in place: it counts `version` up and names in `changed` the
    switches whose distance or path may have changed, in `turned` those whose path (the
    switches on it) may have changed, and in `moved` those whose next switch changed (or that
    were reached or lost), so that what was derived from the tree one version earlier can be
    kept for the rest.
    """

    dst: int
    dist: dict[int, float]
    parent: dict[int, int]
    version: int = 0
    changed: set[int] = field(default_factory=set)
    turned: set[int] = field(default_factory=set)  # of `changed`, those whose path changed
    moved: set[int] = field(default_factory=set)  # of `turned`, those whose next switch did
    _kids: dict[int, list[int]] | None = None

    def kids(self) -> dict[int, list[int]]:
        """Each switch's children: the switches whose next hop it is (lists: a set per switch
        of every tree would take about three times the memory)."""
        if self._kids is None:
            self._kids = {}
            for child, up in self.parent.items():
                self._kids.setdefault(up, []).append(child)
        return self._kids

    def below(self, roots: set[int]) -> set[int]:
        """`roots` and every switch whose path towards `dst` passes one of them."""
        kids = self.kids()
        out = set(roots)
        stack = list(roots)
        while stack:
            for child in kids.get(stack.pop(), ()):
                if child not in out:
                    out.add(child)
                    stack.append(child)
        return out

    def uses(self, a: int, b: int) -> bool:
        """True when the edge a-b is on some switch's path."""
        return self.parent.get(a) == b or self.parent.get(b) == a


def shortcut(tree: Tree, a: int, b: int, cost: float) -> bool:
    """True when an edge a-b of `cost` gives a way to a or b at most as long as the tree's."""
    da, db = tree.dist.get(a), tree.dist.get(b)
    if da is None or db is None:
        return da is not None or db is not None
    return da + cost <= db or db + cost <= da


def _settle(adj: Adjacency, heap: list[tuple[float, int]], seen: dict[int, float],
            tree: Tree) -> None:
    """Dijkstra's loop: settle the switches in `heap` (tentative distances in `seen`) and
    whatever they reach that is not settled yet."""
    dist, parent = tree.dist, tree.parent
    while heap:
        d, u = heapq.heappop(heap)
        if u in dist:
            continue
        dist[u] = d
        for v, w in adj[u].items():
            if v in dist:
                continue
            nd = d + w
            old = seen.get(v)
            if old is None or nd < old:
                seen[v] = nd
                parent[v] = u
                heapq.heappush(heap, (nd, v))
            elif nd == old and u < parent[v]:
                parent[v] = u


def dijkstra(adj: Adjacency, dst: int) -> Tree:
    """Shortest paths from every switch to `dst`, from scratch."""
    tree = Tree(dst, {}, {})
    if dst in adj:
        _settle(adj, [(0.0, dst)], {dst: 0.0}, tree)
    tree.kids()  # now, rather than in the first repair
    return tree


def repair_dearer(adj: Adjacency, tree: Tree, a: int, b: int) -> None:
    """Repair `tree` after the edge a-b, on a path in it, became dearer or went (`adj` has the
    change): only the switches below it are settled again, from their neighbours above (unless
    they all keep their paths: `_stretch`)."""
    child = b if tree.parent.get(b) == a else a
    if _stretch(adj, tree, child):
        return
    cut = tree.below({child})
    before = {x: tree.parent[x] for x in cut}
    kids = tree.kids()
    kids[tree.parent[child]].remove(child)
    for x in cut:
        del tree.dist[x]
        del tree.parent[x]
        kids.pop(x, None)
    seen: dict[int, float] = {}
    for x in cut:
        for u, w in adj.get(x, {}).items():
            if u in tree.dist:
                nd = tree.dist[u] + w
                old = seen.get(x)
                if old is None or nd < old or (nd == old and u < tree.parent[x]):
                    seen[x] = nd
                    tree.parent[x] = u
    heap = [(d, x) for x, d in seen.items()]
    heapq.heapify(heap)
    _settle(adj, heap, seen, tree)
    for x in cut:
        if x in tree.parent:
            kids.setdefault(tree.parent[x], []).append(x)
    tree.version += 1
    tree.changed = cut
    tree.moved = {x for x in cut if tree.parent.get(x) != before[x]}
    tree.turned = tree.below(tree.moved)


def _stretch(adj: Adjacency, tree: Tree, child: int) -> bool:
    """The edge from `child` to its next switch became dearer (still there; else return False):
    the switches below it take their old paths at the new price (a way they have: an upper
    bound, summed along the tree as Dijkstra sums it); then each that a neighbour offers a
    shorter way (or an equal one through a lower-numbered neighbour) turns, and what it saves
    spreads as in `repair_cheaper`. Switches elsewhere keep their paths: those do not use the
    edge, and a way through it only got longer.

    `child` itself is settled first, from its neighbours outside the cut (one inside offers
    more than `child` has: its way passes `child`): when it turns, the cut is priced from its
    new way at once, rather than at the new price and then again, switch by switch, from a
    heap."""
    dist, parent = tree.dist, tree.parent
    up = parent[child]
    if up not in adj[child]:
        return False  # the edge went: no old path to start from
    kids = tree.kids()
    kids_of = kids.get
    was: dict[int, int] = {}  # switch -> its next switch before it turned
    near = adj[child]
    best, via, old = dist[up] + near[up], up, dist[child]
    for u, w in near.items():
        d = dist[u] + w
        if (d < best or (d == best and u < via)) and not (
                dist[u] > old and _passes(parent, u, child)):
            best, via = d, u
    if via != up:
        was[child] = up
        parent[child] = via
    dist[child] = best
    cut = [child]
    extend = cut.extend
    cross = []  # switches with a neighbour besides their next switch and their children
    for x in cut:  # top down: a switch's next switch is priced before it
        near = adj[x]
        below = kids_of(x)
        if below is None:
            if len(near) > 1:
                cross.append(x)
            continue
        dx = dist[x]
        for k in below:
            dist[k] = dx + near[k]  # (the edge's cost is the same both ways)
        extend(below)
        if len(near) > len(below) + 1:
            cross.append(x)
    heap: list[tuple[float, int]] = []
    push, pop = heapq.heappush, heapq.heappop
    for x in cross:  # a child offers more than x has: only these can turn at first
        dx = best = dist[x]
        px = via = parent[x]
        for u, w in adj[x].items():
            d = dist[u] + w
            if d < best or (d == best and u < via):
                best, via = d, u
        if via != px:
            was.setdefault(x, px)  # (`child` may have turned already)
            parent[x] = via
            if best < dx:
                dist[x] = best
                push(heap, (best, x))
    while heap:
        d, v = pop(heap)
        if d > dist[v]:
            continue
        for u, w in adj[v].items():
            nd, old = d + w, dist[u]
            if nd < old or (nd == old and v < parent[u]):  # (never dst: weights are > 0)
                prior = parent[u]
                if prior != v:  # (most are lowered by their own next switch: no turn)
                    if u not in was:
                        was[u] = prior
                    parent[u] = v
                if nd < old:
                    dist[u] = nd
                    push(heap, (nd, u))
    turned = {v for v, up in was.items() if parent[v] != up}
    for v in turned:
        kids[was[v]].remove(v)
        kids.setdefault(parent[v], []).append(v)
    tree.version += 1
    tree.changed = set(cut)
    tree.moved = turned
    # every switch of the cut is below `child` or below one that turned: when `child` turned,
    # they all are (no second walk)
    tree.turned = tree.changed if child in turned else tree.below(turned)
    return True


def _passes(parent: dict[int, int], node: int, via: int) -> bool:
    """True when the path from `node` passes `via` (or starts there)."""
    while node != via:
        nxt = parent.get(node)
        if nxt is None:
            return False
        node = nxt
    return True


def repair_cheaper(adj: Adjacency, tree: Tree, a: int, b: int) -> None:
    """Repair `tree` after the edge a-b became cheaper or appeared (`adj` has it): distances
    that shrink spread from its ends; a switch whose way ties one through a lower neighbour
    turns."""
    dist, parent = tree.dist, tree.parent
    kids = tree.kids()  # as the tree is before the repair
    heap: list[tuple[float, int]] = []
    was: dict[int, int | None] = {}  # switch -> its next switch before the repair

    def offer(v: int, d: float, u: int) -> None:
        """A way to v of length d through u."""
        if v == tree.dst:
            return
        old = dist.get(v)
        if old is None or d < old:
            was.setdefault(v, parent.get(v))
            dist[v] = d
            parent[v] = u
            heapq.heappush(heap, (d, v))
        elif d == old and u < parent[v]:
            was.setdefault(v, parent[v])
            parent[v] = u

    for u, v in ((a, b), (b, a)):
        if u in dist:
            offer(v, dist[u] + adj[u][v], u)
    while heap:
        d, v = heapq.heappop(heap)
        if d > dist[v]:
            continue
        for u, w in adj[v].items():
            offer(u, d + w, v)
    below = tree.below(set(was))  # before the switches move in the map of children
    moved = {v for v, up in was.items() if parent[v] != up}
    turned = tree.below(moved)
    for v, up in was.items():
        if up is not None:
            kids[up].remove(v)
        kids.setdefault(parent[v], []).append(v)
    tree.version += 1
    tree.changed = below
    tree.turned = turned
    tree.moved = moved


class Deferred:
    """Tree repairs of the latest edge change, queued to be carried out a slice at a time
    (on Kdl every tree at once took up to 142 ms: bench/results/kdl_links_200.txt). A queued
    repair is made against the graph as that change left it, so the topology carries out
    every queued repair (`Topology.repair_some`) before it changes the graph again. A tree
    dropped or replaced meanwhile is not repaired (its successor was computed on the changed
    graph)."""

    def __init__(self) -> None:
        self._queue: list[tuple[Tree, Callable[[Tree], None]]] = []
        self._next = 0

    def __bool__(self) -> bool:
        return self._next < len(self._queue)

    def add(self, tree: Tree, repair: Callable[[Tree], None]) -> None:
        """Queue `repair` of `tree`."""
        self._queue.append((tree, repair))

    def run(self, trees: dict[int, Tree], limit: int | None = None) -> bool:
        """Carry out up to `limit` queued repairs (all when None) of trees still in `trees`;
        True while some are left."""
        end = len(self._queue) if limit is None else min(len(self._queue), self._next + limit)
        while self._next < end:
            tree, repair = self._queue[self._next]
            self._next += 1
            if trees.get(tree.dst) is tree:
                repair(tree)
        if self._next >= len(self._queue):
            self._queue.clear()
            self._next = 0
            return False
        return True

    def clear(self) -> None:
        """Drop every queued repair (the trees were dropped)."""
        self._queue.clear()
        self._next = 0
