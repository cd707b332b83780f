"""What each decision was last taken from, so that a change looks only at what it touches.

Boundary: per service, the instances as its last recompute saw them (D-BID, state, compute cost,
attachment switch) and the stamp of each attachment switch's shared pair costs; per (ingress,
service), the engine's inputs of its last recompute and each candidate's cost in the decision
in force. A recompute then looks only at the candidates whose inputs can differ: the instances
whose state, compute cost or switch changed (at every ingress), and the (ingress, switch) pairs
a shortest-path tree's repair names (at those ingresses alone). It hands decisions to the
engine; it never prices an instance or a path itself.

Why one look per touched candidate is enough when only costs moved (no state, reachability,
budget or service setting changed): after every recompute, each candidate's input is either
the one the decision in force was taken from or one whose cost the engine found within the
hysteresis of it (else it would have taken the decision again). So the usable set and the states
are those of the decision in force, the untouched candidates are still within the hysteresis,
and the engine's check (`_moved` in engine.py) is true exactly when a touched candidate's cost
moved by more than the hysteresis against the decision in force. Anything else (a state, a
reachability or a budget in play) makes the engine score the patched inputs in full.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass

from controller.model import Service
from controller.network.costs import PathCost, PathCosts
from controller.network.paths import Tree
from controller.selection.engine import COST_OF, EPSILON, CandidateInput, Decision, Engine

CHANGE_LOG = 1000  # decision changes kept for the shell to log

Prepared = tuple[tuple[str, str, float, int | None], ...]  # (D-BID, state, compute, switch)
Stamp = tuple[Tree | None, int, int, int]


@dataclass(slots=True, eq=False)
class View:
    """One service as its last recompute saw it."""

    what: tuple[object, ...]  # its instances' D-BIDs, weights, delay budget and policy
    seen: Prepared
    index: dict[str, int]  # D-BID -> position in `seen`
    at: dict[int, list[int]]  # attachment switch -> positions of the instances there
    stamps: dict[int, Stamp]  # attachment switch -> the stamp of its pair costs then
    ingresses: tuple[int, ...]


@dataclass(slots=True, eq=False)
class Basis:
    """One decision's inputs at its last recompute, and the decision in force's costs."""

    seen: Prepared  # the service's instances these inputs were brought up to
    index: dict[str, int]
    inputs: list[CandidateInput]  # parts UNPRICED where only the cost was looked at since
    held: list[float | None]  # each candidate's cost in the decision in force (None: unusable)


# the parts of a path whose cost alone is known: looked up when the decision is taken again
UNPRICED: tuple[tuple[str, float], ...] = (("unpriced", 0.0),)


def what_of(svc: Service, seen: Prepared) -> tuple[object, ...]:
    """What, besides the instances' inputs, a service's decisions are taken from."""
    return (tuple(d for d, _, _, _ in seen), svc.weights, svc.delay_budget_ms, svc.policy)


def _positions(seen: Prepared) -> dict[int, list[int]]:
    """Attachment switch -> positions of the instances there."""
    out: dict[int, list[int]] = {}
    for j, (_, _, _, at) in enumerate(seen):
        if at is not None:
            out.setdefault(at, []).append(j)
    return out


def _row(entry: tuple[str, str, float, int | None], net: PathCost | None) -> CandidateInput:
    """The engine's input for one instance with its network cost and parts (`tuple.__new__`:
    the named tuple's own costs twice as much; a link change re-prices thousands)."""
    if net is None:
        return tuple.__new__(CandidateInput, (entry[0], entry[1], None, entry[2], ()))
    return tuple.__new__(CandidateInput, (entry[0], entry[1], net[0], entry[2], net[1]))


def _repriced(old: CandidateInput, network_ms: float) -> CandidateInput:
    """`old` with another network cost and its parts UNPRICED (`_replace`, at a third of its
    cost: a link change makes thousands)."""
    return tuple.__new__(CandidateInput, (old[0], old[1], network_ms, old[3], UNPRICED))


def _dists(trees: dict[int, Tree], seen: Prepared, inputs: list[CandidateInput], ingress: int,
           network: list[int]) -> list[tuple[int, float]] | None:
    """Each position of `network` (attached instances) with its network cost from `ingress`
    now; None when one is unreachable now or was (or its tree is not computed yet)."""
    found = []
    for j in network:
        at = seen[j][3]
        tree = None if at is None else trees.get(at)
        dist = None if tree is None else tree.dist.get(ingress)
        if dist is None or inputs[j][2] is None:
            return None
        found.append((j, float(dist)))
    return found


def _held(decision: Decision, index: dict[str, int]) -> list[float | None]:
    """Each candidate's cost in `decision`, by position."""
    held: list[float | None] = [None] * len(index)
    for c in decision.candidates:
        held[index[c[0]]] = c[4]  # (dbid, cost)
    return held


class Incremental:
    """The bases of every decision, brought up to date by looking only at what changed."""

    def __init__(self, engine: Engine, costs: PathCosts, counters: Counter[str]) -> None:
        self.engine = engine
        self.costs = costs
        self.counters = counters
        self.views: dict[str, View] = {}
        self.bases: dict[tuple[int, str], Basis] = {}
        # changed decisions (ingress, service, old primary, new primary, when, why) for the
        # shell to log; at most CHANGE_LOG kept (the oldest dropped first)
        self.change_log: deque[tuple[int, str, str | None, str | None, float, str]] = deque(
            maxlen=CHANGE_LOG)
        # destination -> (its tree, the tree's version, the ingresses, those its repair named)
        self._hits: dict[int, tuple[Tree, int, frozenset[int], frozenset[int]]] = {}

    def recompute(self, svc: Service, seen: Prepared, ingresses: tuple[int, ...],
                  ingress_set: frozenset[int], now: float) -> None:
        """Bring the service's decision at every ingress up to date with `seen` and the
        network: in full where the service or its instances' set changed, else only the
        candidates whose inputs may differ since its last recompute."""
        what = what_of(svc, seen)
        view = self.views.get(svc.name)
        if view is None or view.what != what:
            index = {d: j for j, (d, _, _, _) in enumerate(seen)}
            view = self.views[svc.name] = View(what, seen, index, _positions(seen), {},
                                               ingresses)
            for ingress in ingresses:
                self.take(svc, seen, index, ingress, now)
            view.stamps = {at: self.costs.stamp(at) for at in view.at}
            return
        touched = self._touched(view, ingress_set)
        old = view.seen
        changed = [j for j, (a, b) in enumerate(zip(seen, old, strict=True)) if a != b]
        if changed:
            view.seen = seen
        joined: set[int] = set()  # ingresses the last recompute did not bring up to date
        if ingresses != view.ingresses:
            joined = set(ingresses).difference(view.ingresses)
            view.ingresses = ingresses
        if not changed:  # only paths may have changed
            self._paths_only(svc, view, joined, [(i, touched.get(i, [])) for i in ingresses]
                             if joined else touched.items(), now)
        for ingress in ingresses if changed else ():
            key = (ingress, svc.name)
            basis = self.bases.get(key)
            if (basis is None or basis.seen is not old or ingress in joined
                    or key not in self.engine.decisions):
                self.take(svc, view.seen, view.index, ingress, now)
            else:
                self._patch(svc, key, basis, (view.seen, changed, touched.get(ingress, [])),
                            now)
        if any(seen[j][3] != old[j][3] for j in changed):  # an instance moved
            view.at = _positions(seen)
            view.stamps = {at: self.costs.stamp(at) for at in view.at}

    def take(self, svc: Service, seen: Prepared, index: dict[str, int], ingress: int,
             now: float, given: tuple[list[CandidateInput], bool] | None = None) -> bool:
        """Take the service's decision at `ingress` again, from inputs looked up afresh, or
        from `given` (inputs whose UNPRICED parts are looked up; whether the caller knows the
        decision is significant). True if a new one is in force."""
        if given is None:
            nets = self.costs.row(ingress, (at for _, _, _, at in seen))
            inputs, significant = [_row(e, net) for e, net in zip(seen, nets, strict=True)], False
        else:
            inputs, significant = given
            get = self.costs.get
            for j, r in enumerate(inputs):
                if r[4] is UNPRICED:  # (network_parts)
                    entry = seen[j]
                    if entry[3] is not None:
                        inputs[j] = _row(entry, get(ingress, entry[3]))
        key = (ingress, svc.name)
        was = self.engine.decisions.get(key)
        changed = self.engine.update(ingress, svc.name, svc.weights, inputs, now,
                                     svc.delay_budget_ms, svc.policy, significant)
        self.bases[key] = Basis(seen, index, inputs, _held(self.engine.decisions[key], index))
        if changed:
            self.counters["decision_changes"] += 1
            self.change_log.append((ingress, svc.name, None if was is None else was.primary,
                                    self.engine.decisions[key].primary, now,
                                    "first decision" if was is None else
                                    "reported metrics or path costs changed"))
        return changed

    def _patch(self, svc: Service, key: tuple[int, str], basis: Basis,
               touched: tuple[Prepared, list[int], list[int]], now: float) -> None:
        """Bring one decision's inputs up to `seen` where they may differ (the instances that
        changed; the positions whose path may have: by cost alone); take the decision again
        only if that can change it (module docstring)."""
        seen, changed, network = touched
        ingress, cost, trees = key[0], self.costs.cost, self.costs.topology.trees
        inputs, held, was = basis.inputs, basis.held, basis.seen
        cost_of = COST_OF.get(svc.policy)
        weights, limit = svc.weights, self.engine.hysteresis
        structural = svc.delay_budget_ms is not None or cost_of is None
        significant = False
        work = [(j, False) for j in changed] if changed else []
        work += [(j, True) for j in network]
        for j, by_path in work:
            dbid, state, compute, at = seen[j]
            old = inputs[j]
            if by_path or at != was[j][3]:  # its path may be another: its cost looked up
                tree = None if at is None else trees.get(at)
                if tree is None:  # (`cost` computes the tree; a switch it has not: None)
                    net = None if at is None else cost(ingress, at)
                else:  # `cost`, inline: one look-up per touched candidate
                    dist = tree.dist.get(ingress)
                    net = None if dist is None else float(dist)
                parts = () if net is None else UNPRICED
            elif compute == old.compute_ms and state == old.state:
                continue
            else:
                net, parts = old.network_ms, old.network_parts
            if net == old.network_ms and compute == old.compute_ms and state == old.state:
                if parts is not old.network_parts:
                    inputs[j] = old._replace(network_parts=parts)  # only the parts may differ
                continue
            if state != old.state or (net is None) != (old.network_ms is None):
                structural = True
            inputs[j] = CandidateInput(dbid, state, net, compute, parts)
            h = held[j]
            if (not significant and h is not None and cost_of is not None
                    and abs(cost_of(net, compute, weights) - h) > limit * max(h, EPSILON)):
                significant = True
        basis.seen = seen
        if structural or significant:
            self.take(svc, seen, basis.index, ingress, now, (inputs, not structural))
        else:
            self.engine.kept()

    def _paths_only(self, svc: Service, view: View, joined: set[int],
                    work: Iterable[tuple[int, list[int]]], now: float) -> None:
        """Each decision of `work` (ingress, positions whose path may have changed there),
        where the instances are as the decisions' inputs saw them: taken again where it has no
        inputs yet (or its ingress joined); where the service's costs alone decide (no budget;
        a policy with a cost) and no candidate's reachability changed, the lean loop a link
        change runs for every touched decision (the look at each touched candidate's cost
        `_patch` makes, with what is the same for the service looked up once); `_patch`
        otherwise."""
        name, bases, decisions, seen = svc.name, self.bases, self.engine.decisions, view.seen
        cost_of = COST_OF.get(svc.policy)
        lean = cost_of is not None and svc.delay_budget_ms is None
        trees, weights, limit = self.costs.topology.trees, svc.weights, self.engine.hysteresis
        for ingress, network in work:
            key = (ingress, name)
            basis = bases.get(key)
            if (basis is None or basis.seen is not seen or ingress in joined
                    or key not in decisions):
                self.take(svc, seen, view.index, ingress, now)
                continue
            inputs = basis.inputs
            found = _dists(trees, seen, inputs, ingress, network) if lean else None
            if found is None or cost_of is None:
                self._patch(svc, key, basis, (seen, [], network), now)
                continue
            held, significant = basis.held, False
            for j, net in found:
                old = inputs[j]
                if net == old[2]:
                    if old[4] is not UNPRICED:  # only the parts may differ
                        inputs[j] = _repriced(old, net)
                    continue
                inputs[j] = _repriced(old, net)
                if not significant:
                    h = held[j]
                    if h is not None and abs(cost_of(net, old[3], weights) - h) > limit * max(
                            h, EPSILON):
                        significant = True
            if significant:
                self.take(svc, seen, basis.index, ingress, now, (inputs, True))
            else:
                self.engine.kept()

    def _touched(self, view: View, ingress_set: frozenset[int]) -> dict[int, list[int]]:
        """Ingress -> positions of the service's instances whose network cost or parts from
        there may have changed since the view's stamps (which are brought up to date)."""
        out: dict[int, list[int]] = {}
        stamp_of, stamps = self.costs.stamp, view.stamps
        for at, positions in view.at.items():
            stamp = stamp_of(at)
            was = stamps.get(at)
            if stamp == was:
                continue
            stamps[at] = stamp
            tree = stamp[0]
            if (was is not None and tree is not None and tree is was[0]
                    and stamp[1] == was[1] + 1 and stamp[2] == was[2] and stamp[3] == was[3]):
                hit = self._hit(tree, ingress_set)  # repaired once: it names what changed
            else:
                hit = ingress_set
            for ingress in hit:
                got = out.get(ingress)
                if got is None:
                    out[ingress] = positions[:]  # (a copy: others are added to it)
                else:
                    got.extend(positions)
        return out

    def _hit(self, tree: Tree, ingress_set: frozenset[int]) -> frozenset[int]:
        """The ingresses whose path towards the tree's destination its last repair may have
        changed (computed once per repair, for every service)."""
        cached = self._hits.get(tree.dst)
        if (cached is not None and cached[0] is tree and cached[1] == tree.version
                and cached[2] is ingress_set):
            return cached[3]
        hit = frozenset(tree.changed & ingress_set)
        self._hits[tree.dst] = (tree, tree.version, ingress_set, hit)
        return hit

    def compute_seen(self, key: tuple[int, str], dbid: str) -> float | None:
        """The compute cost of `dbid` that the decision at `key` last saw (None: none)."""
        basis = self.bases.get(key)
        j = None if basis is None else basis.index.get(dbid)
        return None if basis is None or j is None else basis.inputs[j].compute_ms

    def forget(self, ingress: int | None = None, service: str | None = None) -> None:
        """Drop the bases of a departed switch or a deleted service."""
        self.bases = {k: v for k, v in self.bases.items()
                      if not ((ingress is None or k[0] == ingress)
                              and (service is None or k[1] == service))}
        if service is not None:
            self.views.pop(service, None)
        elif ingress is None:
            self.views.clear()
