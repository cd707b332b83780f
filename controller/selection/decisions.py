"""Decisions per ingress and service: the inputs the formula gets, and when it is recomputed.

Boundary: for one service, it prices every instance from every ingress (the network cost of
the path plus the compute cost as of `now`) and hands those inputs to the engine; it keeps
which ingresses decide, which instance states and compute costs each decision last saw, and
the flows placed since each instance's last report. It reads the topology and the link
monitor; it never changes an instance's state or emits a flow entry.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from controller.model import Instance, Metrics, Service
from controller.network.costs import PathCosts
from controller.network.topology import Topology
from controller.selection import allowance, marginal, perflow, redecide
from controller.selection.engine import EPSILON, Engine, compute_ms
from controller.selection.incremental import Incremental, Prepared, what_of
from controller.selection.placements import Placements, as_of, hold_s, still_there, with_total
from controller.selection.queueing import Arrivals, queueing_ms, utilisation
from controller.selection.scoring import ScoringConfig

EJECTED = "ejected"  # an active instance passive health took out of new flows (health.py)
PER_FLOW_LOAD = frozenset({"p2c", "least-inflight"})  # policies that compare loads at the pick
COSTS_KEPT = 256  # compute costs kept per instance and report (placement counts seen)


def seen_state(inst: Instance, ejected: set[str]) -> str:
    """The instance's state as new flows see it: `ejected` for an active instance passive
    health ejected (instances/health.py), else its life-cycle state."""
    return EJECTED if ejected and inst.state == "active" and inst.dbid in ejected else inst.state


@dataclass(frozen=True, slots=True)
class SelectionConfig:
    """How the decision engine turns costs into a weighted choice (docs/decisions.md)."""

    spread: float = 0.3
    sharpness: float = 4.0
    hysteresis: float = 0.15
    hop_ms: float = 1.0
    placed_flows: bool = True  # count flows placed since an instance's last report as its load
    placed_grace_s: float = 0.02  # placements this recent still count after a report
    queueing: bool = False  # raise the default estimate to the M/M/c wait of the placement rate
    pick: str = "shares"  # dyncast: serve the shares, or "per-flow": the cheapest now (perflow.py)
    queue_price: str = "mean"  # dyncast: "marginal" or "allowance" re-price the queue
    wait_allowance: float = allowance.DEFAULT_ALLOWANCE  # "allowance": base delays of waiting
    allowance_price: float = allowance.DEFAULT_PRICE  # "allowance": per ms waited beyond it


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
        # flows placed on `least-inflight` services, whatever the reports say
        self.inflight = Placements(0.0)
        self.arrivals = Arrivals()  # flows placed in the last few seconds: the rate (queueing.py)
        self.router_of: dict[int, int] = {}  # D-Forwarder -> the D-Router deciding for it
        # whether the controller places a service's every new flow itself (dataplane mode)
        self.places_flows: Callable[[Service], bool] = lambda svc: True
        self._states: dict[str, str] = {}  # state of each instance the decisions last saw
        # active instances passive health ejected (instances/health.py): shown as "ejected",
        # given no new flows
        self.ejected: set[str] = set()
        # instance -> (its report, {(base delay, requests ageing left, placements, placements
        # in the rate's window, a dyncast service's: marginal.py): compute cost}): new flows move
        # the placements up and ageing moves them down, over a few values, so the costs of each
        # are kept (for one report)
        self._computed: dict[str, tuple[object, dict[tuple[float, int | None, int, int, bool],
                                                     float]]] = {}
        # what each decision was last taken from (incremental.py)
        self.bases = Incremental(self.engine, self.costs, counters)
        self.redecisions = redecide.Redecisions(self.bases)  # a pick's re-decisions (redecide.py)
        self._demand_seen: set[int] = set()  # switches outside `ingresses` where demand arrived
        self._ingresses: tuple[object, tuple[int, ...], frozenset[int]] = (None, (), frozenset())

    # --- which switches decide ------------------------------------------------------------
    def decider(self, dpid: int) -> int:
        """The switch whose decision applies at `dpid` (a D-Forwarder's D-Router)."""
        return self.router_of.get(dpid, dpid)

    def ingresses(self) -> list[int]:
        """Switches that keep decisions: the configured ingresses (plus any where demand has
        arrived), or every switch when none are configured."""
        return list(self._ingress_set()[0])

    def _ingress_set(self) -> tuple[tuple[int, ...], frozenset[int]]:
        """`ingresses()` as a tuple and a set, computed again only when the switches, the
        D-Forwarders or the switches where demand arrived changed."""
        key = (self.topology.switches_version, tuple(self.router_of.items()),
               len(self._demand_seen))
        if self._ingresses[0] != key:
            routers = set(self.topology.ports) - set(self.router_of)
            if self.configured_ingresses:
                routers &= set(self.configured_ingresses) | self._demand_seen
            self._ingresses = (key, tuple(sorted(routers)), frozenset(routers))
        return self._ingresses[1], self._ingresses[2]

    def saw(self, inst: Instance) -> str | None:
        """The state of `inst` when the decisions last saw it (None: never)."""
        return self._states.get(inst.dbid)

    # --- recomputing --------------------------------------------------------------------
    def recompute(self, svc: Service, insts: list[Instance], now: float) -> list[str]:
        """Recompute the service's decision at every ingress (looking only at what changed
        since its last recompute); return the instances that went down since the decisions
        last saw them."""
        states = {i.dbid: i.state for i in insts}
        went_down = [d for d, s in states.items() if s == "down" and self._states.get(d) != s]
        self._states.update(states)
        ingresses, ingress_set = self._ingress_set()
        self.bases.recompute(svc, self._prepare(svc, insts, now), ingresses, ingress_set, now)
        return went_down

    def _prepare(self, svc: Service, insts: list[Instance], now: float) -> Prepared:
        """Each instance's D-BID, state, compute cost as of `now` and attachment switch."""
        hosts, places, ejected = self.topology.hosts, self.places_flows(svc), self.ejected
        return tuple((i.dbid, seen_state(i, ejected), self._compute_ms(svc, i, now, places),
                      hosts[i.dbid].dpid if i.dbid in hosts else None) for i in insts)

    def decide(self, svc: Service, insts: list[Instance], ingress: int, now: float) -> bool:
        """Take one service's decision at one ingress again; True if a new one is in force."""
        seen = self._prepare(svc, insts, now)
        view = self.bases.views.get(svc.name)
        if view is not None and view.what == what_of(svc, seen):
            index = view.index
            if seen == view.seen:
                seen = view.seen  # as the service's last recompute saw them: it stays current
        else:
            index = {d: j for j, (d, _, _, _) in enumerate(seen)}
        return self.bases.take(svc, seen, index, ingress, now)

    def demand_at(self, decider: int, svc: Service, source: InstanceSource, now: float) -> None:
        """Demand arrived at a switch: decide there first if it has no decision yet (a switch
        not configured as an ingress becomes one)."""
        if (decider, svc.name) not in self.engine.decisions:
            self._demand_seen.add(decider)
            self.decide(svc, source.of_service(svc.name), decider, now)

    # --- picking ------------------------------------------------------------------------
    def pick(self, svc: Service, decider: int, source: InstanceSource, now: float,
             flow: object = None) -> str | None:
        """The instance the decider's decision picks for the new flow `flow` (its key). With
        placed flows counted, a pick whose compute cost has moved by more than the hysteresis
        since this ingress's decision saw it (flows placed since its last report, from any
        ingress) makes this ingress decide again first: lazily, one ingress at a time, only
        where a stale cost is about to be used. `p2c` and `least-inflight` read every
        instance's compute cost as of `now` at the pick itself instead."""
        if svc.policy in PER_FLOW_LOAD:
            return self._by_load(svc, decider, source, now, flow)
        if svc.policy == "dyncast" and self.selection.pick == "per-flow":
            return self._per_flow(svc, decider, source, now)
        dbid = self.engine.pick(decider, svc.name, flow)
        if dbid is None or not self.selection.placed_flows:
            return dbid
        inst = source.instances.get(dbid)
        seen = None if inst is None else self.bases.compute_seen((decider, svc.name), dbid)
        if inst is None or seen is None:
            return dbid
        cost = self._compute_ms(svc, inst, now, self.places_flows(svc))
        if abs(cost - seen) <= self.selection.hysteresis * max(seen, EPSILON):
            return dbid
        return self._redecide(svc, decider, source, now, flow, dbid)

    def _redecide(self, svc: Service, decider: int, source: InstanceSource, now: float,
                  flow: object, dbid: str) -> str | None:
        """`pick`'s re-decision (its decision saw a stale cost of `dbid`, the pick so far)."""
        self.counters["placement_redecisions"] += 1
        places = self.places_flows(svc)
        if not self.redecisions.retake(  # redecide.py: its reachable candidates re-priced
                svc, decider, source.instances, lambda i: self._compute_ms(svc, i, now, places),
                lambda: self.decide(svc, source.of_service(svc.name), decider, now), now):
            return dbid  # within the hysteresis after all: the pick stands
        return self.engine.pick(decider, svc.name, flow)

    def _by_load(self, svc: Service, decider: int, source: InstanceSource, now: float,
                 flow: object) -> str | None:
        """`p2c` and `least-inflight`: each instance's compute cost as of `now` at the pick."""
        instances = source.instances

        def load(dbid: str) -> float:
            inst = instances.get(dbid)
            return float("inf") if inst is None else self.compute_ms(svc, inst, now)
        return self.engine.pick(decider, svc.name, flow, load)

    def _per_flow(self, svc: Service, decider: int, source: InstanceSource,
                  now: float) -> str | None:
        """`pick = "per-flow"`: the decision's cheapest candidate re-priced now (perflow.py)."""
        decision = self.engine.decisions.get((decider, svc.name))
        if decision is None:
            return None
        instances = source.instances

        def compute_now(dbid: str) -> float | None:
            inst = instances.get(dbid)
            return None if inst is None else self.compute_ms(svc, inst, now)
        return perflow.pick(decision, svc.weights, compute_now)

    def placed(self, svc: Service, dbid: str, now: float) -> None:
        """A new flow of `svc` was placed on `dbid` (it counts as load until a report shows
        it). `least-inflight` keeps the flows placed within the service's base delay, and
        only those (the count drops older ones, so what is kept stays bounded)."""
        if svc.policy == "least-inflight":
            self.inflight.add(dbid, now)
            self.inflight.count(dbid, now, svc.base_delay_ms / 1000.0)
        if self.selection.placed_flows:
            self.placements.add(dbid, now)
            if self.selection.queueing:
                self.arrivals.add(dbid, now)

    # --- costs --------------------------------------------------------------------------
    def compute_ms(self, svc: Service, inst: Instance, now: float) -> float:
        """An instance's compute cost: its last report, and when `placed_flows` is on, that
        report aged to `now` (its requests finish) plus the flows placed on it since. Only
        where the controller places every new flow itself (`reactive`) does it know what came
        since: in the switch-driven modes the report stands as it was."""
        return self._compute_ms(svc, inst, now, self.places_flows(svc))

    def _compute_ms(self, svc: Service, inst: Instance, now: float, places: bool) -> float:
        """`compute_ms`, told whether the controller places the service's every new flow.
        The cost depends on the report, how many of its requests ageing leaves and how many
        flows were placed since, so it is kept per instance for those (every recompute prices
        every instance of the service; most are as they were)."""
        metrics = inst.metrics
        if svc.policy == "least-inflight":  # no report: the base delay per flow in flight
            base = svc.base_delay_ms
            return base * (1 + self.inflight.count(inst.dbid, now, base / 1000.0))
        if not self.selection.placed_flows:
            return self._priced(svc, metrics, compute_ms(metrics, svc.base_delay_ms, self.scoring))
        hold = hold_s(metrics, svc.base_delay_ms)
        age = now - inst.metrics_at if inst.metrics_at is not None and places else None
        queued = self._queued(inst, now, hold, places)
        # the requests left: the report's and the placements' apart, or (queued) together
        key = (svc.base_delay_ms,
               still_there(metrics, age, hold) if queued is None else queued[0],
               self.placements.count(inst.dbid, now, hold) if queued is None else -1,
               self.arrivals.count(inst.dbid, now) if places and self.selection.queueing else 0,
               svc.policy == "dyncast")
        kept = self._computed.get(inst.dbid)
        if kept is None or kept[0] is not metrics:
            kept = self._computed[inst.dbid] = (metrics, {})
        costs = kept[1]
        known = costs.get(key)
        if known is not None:
            return known
        current = (as_of(metrics, hold, key[2], age) if queued is None or metrics is None
                   else with_total(metrics, queued[0]))
        cost = compute_ms(current, svc.base_delay_ms, self.scoring)
        if (key[3] and self.selection.queueing and metrics is not None and metrics.score is None
                and not self.scoring.enabled):
            # the default estimate: at least the wait the rate of placements makes (queueing.py)
            rho = utilisation(key[3], hold, metrics.capacity)
            cost = max(cost, queueing_ms(rho, hold * 1000.0, metrics.capacity))
        cost = self._priced(svc, current, cost)
        if len(costs) < COSTS_KEPT:
            costs[key] = cost
        return cost

    def _priced(self, svc: Service, metrics: Metrics | None, cost: float) -> float:
        """A dyncast service's queue priced at its marginal cost (`queue_price = "marginal"`)
        or its wait beyond the allowance priced steeply (`"allowance"`)."""
        price = self.selection.queue_price
        if price == "mean" or not marginal.applies(svc.policy, metrics, self.scoring.enabled):
            return cost
        if price == "marginal":
            return marginal.marginal_ms(cost, metrics)
        sel = self.selection
        return allowance.allowance_ms(cost, metrics, sel.wait_allowance * svc.base_delay_ms,
                                      sel.allowance_price)

    def _queued(self, inst: Instance, now: float, hold: float,
                places: bool) -> tuple[int, int] | None:
        """Where the report is aged (the controller places every new flow): the requests at
        the instance now and how many are placements, its report's and the placements sharing
        its workers (workers.py). None otherwise, or with no placement to queue: the report
        aged alone, or as it came, plus the placements younger than `hold`."""
        if not places or inst.metrics_at is None:
            return None
        return self.placements.queued(inst.dbid, inst.metrics, inst.metrics_at, hold, now)

    def placed_count(self, svc: Service, inst: Instance, now: float) -> int:
        """New flows placed on `inst` that no report shows yet and that are likely still at
        the instance: waiting behind the requests ahead of them, or served within one holding
        time."""
        hold = hold_s(inst.metrics, svc.base_delay_ms)
        queued = self._queued(inst, now, hold, self.places_flows(svc))
        return self.placements.count(inst.dbid, now, hold) if queued is None else queued[1]

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
        self.bases.forget(ingress=dpid)

    def forget_all(self) -> None:
        """Forget every decision and what it was taken from: the next recompute of each service
        takes every one again from scratch."""
        self.engine.forget()
        self.bases.forget()

    def forget_service(self, name: str, dbids: list[str]) -> None:
        """A service was deleted with these instances."""
        self.engine.forget(service=name)
        self.bases.forget(service=name)
        for dbid in dbids:
            self._states.pop(dbid, None)
            self._computed.pop(dbid, None)
            self.arrivals.forget(dbid)

    def forget_instance(self, dbid: str) -> None:
        """An instance was withdrawn."""
        self._states.pop(dbid, None)
        self._computed.pop(dbid, None)
        self.placements.forget(dbid)
        self.inflight.forget(dbid)
        self.arrivals.forget(dbid)
