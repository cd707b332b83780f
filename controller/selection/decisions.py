"""Decisions per ingress and service: the inputs the formula gets, and when it is recomputed.

Boundary: for one service, it prices every instance from every ingress (the network cost of
the path plus the compute cost as of `now`) and hands those inputs to the engine; it keeps
which ingresses decide, which instance states and compute costs each decision last saw, and
the flows placed since each instance's last report. It reads the topology and the link
monitor; it never changes an instance's state or emits a flow entry.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from controller.model import Instance, Service
from controller.network.costs import PathCost, PathCosts
from controller.network.paths import Tree
from controller.network.topology import Topology
from controller.selection.engine import EPSILON, CandidateInput, Engine, compute_ms
from controller.selection.placements import Placements, as_of, hold_s
from controller.selection.scoring import ScoringConfig


@dataclass(frozen=True, slots=True)
class SelectionConfig:
    """How the decision engine turns costs into a weighted choice (docs/decisions.md)."""

    spread: float = 0.3
    sharpness: float = 4.0
    hysteresis: float = 0.15
    hop_ms: float = 1.0
    placed_flows: bool = True  # count flows placed since an instance's last report as its load
    placed_grace_s: float = 0.02  # placements this recent still count after a report


Prepared = tuple[tuple[str, str, float, int | None], ...]  # (D-BID, state, compute, switch)


Nets = tuple[PathCost | None, ...]
Stamp = tuple[Tree | None, int, int, int]
Recomputed = tuple[Prepared, object, float | None, str]  # instances, weights, budget, policy
Basis = tuple[tuple[Prepared, Nets, object, object, str], list[CandidateInput]]


def _inputs(seen: Prepared, nets: Nets, last: Basis | None) -> list[CandidateInput]:
    """The engine's inputs; where an instance and its network part are as in the last
    decision's, its input from then (most of them, after a metric report or a link change)."""
    old: Iterable[tuple[object, object, CandidateInput | None]] = (
        zip(last[0][0], last[0][1], last[1], strict=True)
        if last is not None and len(last[1]) == len(seen) else [(None, None, None)] * len(seen))
    inputs = []
    for (dbid, state, compute, at), net, (was, was_net, row) in zip(seen, nets, old,
                                                                   strict=True):
        if row is not None and was == (dbid, state, compute, at) and was_net == net:
            inputs.append(row)
        elif net is None:
            inputs.append(CandidateInput(dbid, state, None, compute, ()))
        else:
            inputs.append(CandidateInput(dbid, state, net[0], compute, net[1]))
    return inputs


class InstanceSource(Protocol):
    """Where the instances are looked up (the catalogue)."""

    @property
    def instances(self) -> dict[str, Instance]: ...

    def of_service(self, name: str) -> list[Instance]: ...


class Decisions:
    """The engine's inputs and the bookkeeping around its decisions."""

    def __init__(self, selection: SelectionConfig, scoring: ScoringConfig,
                 network: tuple[Topology, PathCosts], ingresses: tuple[int, ...],
                 counters: Counter[str]) -> None:
        self.selection = selection
        self.scoring = scoring
        self.topology, self.costs = network
        self.configured_ingresses = ingresses
        self.counters = counters
        self.engine = Engine(selection.spread, selection.sharpness, selection.hysteresis)
        self.placements = Placements(selection.placed_grace_s)  # placements.py
        self.router_of: dict[int, int] = {}  # D-Forwarder -> the D-Router deciding for it
        # whether the controller places a service's every new flow itself (dataplane mode)
        self.places_flows: Callable[[Service], bool] = lambda svc: True
        # (ingress, service) -> instance -> the compute cost its decision last saw
        self._seen_compute: dict[tuple[int, str], dict[str, float]] = {}
        self._states: dict[str, str] = {}  # state of each instance the decisions last saw
        # (ingress, service) -> what its last decision was taken from, and the engine's inputs
        self._basis: dict[tuple[int, str], Basis] = {}
        # service -> its instances and the stamp of each one's switch at its last recompute
        self._stamps: dict[str, tuple[Recomputed, list[Stamp | None]]] = {}
        self._demand_seen: set[int] = set()  # switches outside `ingresses` where demand arrived

    # --- which switches decide ------------------------------------------------------------
    def decider(self, dpid: int) -> int:
        """The switch whose decision applies at `dpid` (a D-Forwarder's D-Router)."""
        return self.router_of.get(dpid, dpid)

    def ingresses(self) -> list[int]:
        """Switches that keep decisions: the configured ingresses (plus any where demand has
        arrived), or every switch when none are configured."""
        routers = set(self.topology.ports) - set(self.router_of)
        if not self.configured_ingresses:
            return sorted(routers)
        return sorted((set(self.configured_ingresses) | self._demand_seen) & routers)

    def saw(self, inst: Instance) -> str | None:
        """The state of `inst` when the decisions last saw it (None: never)."""
        return self._states.get(inst.dbid)

    # --- recomputing --------------------------------------------------------------------
    def recompute(self, svc: Service, insts: list[Instance], now: float) -> list[str]:
        """Recompute the service's decision at every ingress; return the instances that went
        down since the decisions last saw them."""
        states = {i.dbid: i.state for i in insts}
        went_down = [d for d, s in states.items() if s == "down" and self._states.get(d) != s]
        self._states.update(states)
        seen = self._prepare(svc, insts, now)  # the same at every ingress
        what = (seen, svc.weights, svc.delay_budget_ms, svc.policy)
        dirty = self._dirty(svc.name, what)
        for ingress in self.ingresses():
            if (dirty is None or ingress in dirty
                    or (ingress, svc.name) not in self.engine.decisions):
                self.decide(svc, insts, ingress, now, seen)
        self._stamps[svc.name] = (what, [None if at is None else self.costs.stamp(at)
                                         for _, _, _, at in seen])
        return went_down

    def _dirty(self, name: str, what: Recomputed) -> set[int] | None:
        """The ingresses where the service's inputs may differ from its last recompute's (None:
        any): where the service, its instances and their compute costs are the same, only
        those whose path to an instance's switch changed since (a tree repaired once names
        them)."""
        last = self._stamps.get(name)
        if last is None or last[0] != what:
            return None
        dirty: set[int] = set()
        for (_, _, _, at), was in zip(what[0], last[1], strict=True):
            if at is None or was is None:
                continue
            now = self.costs.stamp(at)
            if now == was:
                continue
            if now[0] is not was[0] or now[1] != was[1] + 1 or now[2:] != was[2:]:
                return None
            assert now[0] is not None
            dirty |= now[0].changed
        return dirty

    def _prepare(self, svc: Service, insts: list[Instance], now: float) -> Prepared:
        """Each instance's D-BID, state, compute cost as of `now` and attachment switch."""
        hosts = self.topology.hosts
        return tuple((i.dbid, i.state, self.compute_ms(svc, i, now),
                      hosts[i.dbid].dpid if i.dbid in hosts else None) for i in insts)

    def decide(self, svc: Service, insts: list[Instance], ingress: int, now: float,
               seen: Prepared | None = None) -> bool:
        """Recompute one service's decision at one ingress; True if a new one is in force.
        `seen`: the instances as `_prepare` gives them, when the caller has it."""
        if seen is None:  # one ingress alone: the service's next recompute looks everywhere
            seen = self._prepare(svc, insts, now)
            self._stamps.pop(svc.name, None)
        # the network part of each candidate, shared by every service
        nets = self.costs.row(ingress, (at for _, _, _, at in seen))
        key = (ingress, svc.name)
        basis = (seen, nets, svc.weights, svc.delay_budget_ms, svc.policy)
        last = self._basis.get(key)
        if last is not None and key in self.engine.decisions and last[0] == basis:
            return False  # the inputs of the last decision taken: it would be taken again
        inputs = _inputs(seen, nets, last)
        self._basis[key] = (basis, inputs)
        self._seen_compute[key] = {r.dbid: r.compute_ms for r in inputs}
        if self.engine.update(ingress, svc.name, svc.weights, inputs, now, svc.delay_budget_ms,
                              svc.policy):
            self.counters["decision_changes"] += 1
            return True
        return False

    def demand_at(self, decider: int, svc: Service, source: InstanceSource, now: float) -> None:
        """Demand arrived at a switch: decide there first if it has no decision yet (a switch
        not configured as an ingress becomes one)."""
        if (decider, svc.name) not in self.engine.decisions:
            self._demand_seen.add(decider)
            self.decide(svc, source.of_service(svc.name), decider, now)

    # --- picking ------------------------------------------------------------------------
    def pick(self, svc: Service, decider: int, source: InstanceSource,
             now: float) -> str | None:
        """The instance the decider's decision picks. With placed flows counted, a pick whose
        compute cost has moved by more than the hysteresis since this ingress's decision saw it
        (flows placed since its last report, from any ingress) makes this ingress decide again
        first: lazily, one ingress at a time, only where a stale cost is about to be used."""
        dbid = self.engine.pick(decider, svc.name)
        inst = None if dbid is None else source.instances.get(dbid)
        if inst is None or not self.selection.placed_flows:
            return dbid
        seen = self._seen_compute.get((decider, svc.name), {}).get(inst.dbid)
        if seen is None:
            return dbid
        cost = self.compute_ms(svc, inst, now)
        if abs(cost - seen) <= self.selection.hysteresis * max(seen, EPSILON):
            return dbid
        self.counters["placement_redecisions"] += 1
        if not self.decide(svc, source.of_service(svc.name), decider, now):
            return dbid  # within the hysteresis after all: the pick stands
        return self.engine.pick(decider, svc.name)

    def placed(self, dbid: str, now: float) -> None:
        """A new flow was placed on `dbid` (it counts as load until a report shows it)."""
        if self.selection.placed_flows:
            self.placements.add(dbid, now)

    # --- costs --------------------------------------------------------------------------
    def compute_ms(self, svc: Service, inst: Instance, now: float) -> float:
        """An instance's compute cost: its last report, and when `placed_flows` is on, that
        report aged to `now` (its requests finish) plus the flows placed on it since. Only
        where the controller places every new flow itself (`reactive`) does it know what came
        since: in the switch-driven modes the report stands as it was."""
        metrics = inst.metrics
        if self.selection.placed_flows:
            hold = hold_s(metrics, svc.base_delay_ms)
            age = (now - inst.metrics_at if inst.metrics_at is not None
                   and self.places_flows(svc) else None)
            metrics = as_of(metrics, hold, self.placements.count(inst.dbid, now, hold), age)
        return compute_ms(metrics, svc.base_delay_ms, self.scoring)

    def placed_count(self, svc: Service, inst: Instance, now: float) -> int:
        """New flows placed on `inst` that are likely still being served (younger than its
        holding time) and no report shows yet."""
        return self.placements.count(inst.dbid, now, hold_s(inst.metrics, svc.base_delay_ms))

    def merit(self, inst: Instance) -> float:
        """How useful an instance is: for an active one, its summed share of new flows over the
        ingresses; for any other, minus its mean network cost from the ingresses."""
        if inst.state == "active":
            return sum(d.shares.get(inst.dbid, 0.0) for (_, name), d in
                       self.engine.decisions.items() if name == inst.service)
        host = self.topology.hosts.get(inst.dbid)
        costs = [] if host is None else [self.topology.cost_ms(i, host.dpid)
                                         for i in self.ingresses()]
        known = [c for c in costs if c is not None]
        return -(sum(known) / len(known)) if known else -1e9

    # --- forgetting ---------------------------------------------------------------------
    def forget_switch(self, dpid: int) -> None:
        """A switch left: its decisions go."""
        self.engine.forget(ingress=dpid)
        self._seen_compute = {k: v for k, v in self._seen_compute.items() if k[0] != dpid}
        self._basis = {k: v for k, v in self._basis.items() if k[0] != dpid}

    def forget_service(self, name: str, dbids: list[str]) -> None:
        """A service was deleted with these instances."""
        self.engine.forget(service=name)
        self._seen_compute = {k: v for k, v in self._seen_compute.items() if k[1] != name}
        self._basis = {k: v for k, v in self._basis.items() if k[1] != name}
        self._stamps.pop(name, None)
        for dbid in dbids:
            self._states.pop(dbid, None)

    def forget_instance(self, dbid: str) -> None:
        """An instance was withdrawn."""
        self._states.pop(dbid, None)
        self.placements.forget(dbid)
