"""The decision engine: per-ingress, per-service weighted choice among instances.

Costs are milliseconds: `network_ms` is the path cost from the ingress switch to the
instance's switch, `compute_ms` the processing delay predicted from the instance's metrics.
Per-service weights combine them: `cost = w_net * network_ms + w_compute * compute_ms`.

Among usable instances, those within `spread` of the best cost share new flows in proportion
to `(best / cost) ** sharpness`; shares are served by smooth weighted round robin, so a burst
of new flows between two updates is spread exactly in proportion rather than herded onto one
instance. A new decision replaces the previous one only when the usable set changed or some
cost moved by more than `hysteresis` (relative) since the decision in force was taken.

That joint, spread choice is the `dyncast` selection policy, every service's default. A service
may name another (`POLICIES`): `nearest` (lowest network cost only), `least-loaded` (lowest
compute cost only), `round-robin` (equal shares, served in turn) or `random` (a uniformly random
pick, from a generator seeded per engine), and three that choose per flow (policies.py,
choosers.py): `p2c` (the cheaper of two random instances by compute cost as of the pick),
`least-inflight` (the fewest flows in flight, no report read) and `consistent-hash` (a Maglev
table on the flow's key). All of them choose among the same usable instances: state,
reachability and the delay budget are applied before the policy.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass
from operator import itemgetter
from typing import Any, NamedTuple

from controller.model import Metrics, Weights
from controller.selection.choosers import AnyChooser, Chooser, Load, chooser_for
from controller.selection.policies import COST_OF, EPSILON, LEFT_OUT, POLICIES, Costs
from controller.selection.scoring import ScoringConfig, compute_ms_from_score, level2

MAX_UTILISATION = 0.95
__all__ = ["COST_OF", "EPSILON", "POLICIES", "CandidateInput", "Chooser", "Decision", "Engine",
           "compute_ms", "decide", "estimate_compute_ms"]


def estimate_compute_ms(metrics: Metrics | None, base_delay_ms: float) -> float:
    """Predict the processing delay of a new demand at an instance from its report.

    - Its state (`sessions` in service, `queue` waiting: counts, i.e. a snapshot, aged and with
      the flows placed since when the core counts them): a new demand starts at once while one
      of the `c = capacity` workers is free; otherwise `sessions + queue - c + 1` requests must
      finish first, and the `c` workers finish one every `s / c` on average (memoryless
      service): `s * (1 + (sessions + queue - c + 1) / c)`, `s` the time a request holds a
      worker (every worker busy is not 100 % utilisation: the next waits for the first).
    - `s` is the reported `service_ms` (the instance's own measure of a request's service time
      now, queue wait excluded) when given. Otherwise it is the service's base delay stretched
      by the CPU its busy workers do not explain: `u = cpu - sessions / c` (at most 0.95; the
      core moves `cpu` with the counts when it ages a report or adds placements) is other work
      sharing the processors: `1 / (1 - u)` (processor sharing; c = 1, a free worker: M/M/1).
    - A reported `processing_delay_ms` averages past requests' delays, queue wait included: it
      lags. With `service_ms` beside it the fresher counts price the queue and it is not used
      (a just-emptied instance is not pinned at its past queueing delay); without, it is the
      only sign of a slowness the counts do not show, so it raises the estimate when larger.
    Without metrics the base delay is assumed."""
    if metrics is None:
        return base_delay_ms
    servers = metrics.capacity
    ahead = 1.0 + max(0, metrics.sessions + metrics.queue - servers + 1) / servers
    if metrics.service_ms is not None:
        return metrics.service_ms * ahead
    other = min(MAX_UTILISATION, max(0.0, metrics.cpu - metrics.sessions / servers))
    model = base_delay_ms * ahead / (1.0 - other)
    if metrics.processing_delay_ms is not None:
        return max(model, metrics.processing_delay_ms)
    return model


def compute_ms(metrics: Metrics | None, base_delay_ms: float, scoring: ScoringConfig) -> float:
    """An instance's compute cost in ms from whatever level its D-MA reported.

    A level-2 score (0-10) maps to `base * 10 / score`; raw (level-0) metrics go through the
    configured normalisation and aggregation when scoring is enabled, else the default estimate.
    What the instance reports of its own speed is a floor: its service time with the queue
    ahead (`service_ms`) when given, else its processing delay.
    """
    if metrics is None:
        return base_delay_ms
    if metrics.score is not None:
        cost = compute_ms_from_score(metrics.score, base_delay_ms)
    elif scoring.enabled:
        cost = compute_ms_from_score(level2(metrics, base_delay_ms, scoring), base_delay_ms)
    else:
        return estimate_compute_ms(metrics, base_delay_ms)
    if metrics.service_ms is not None:
        return max(cost, estimate_compute_ms(metrics, base_delay_ms))
    return max(cost, metrics.processing_delay_ms or 0.0)


class CandidateInput(NamedTuple):
    """What the engine needs to know about one instance for one ingress (a named tuple: many
    are made per topology change, and a frozen dataclass costs twice as much to make)."""

    dbid: str
    state: str
    network_ms: float | None
    compute_ms: float
    network_parts: tuple[tuple[str, float], ...] = ()


class Candidate(NamedTuple):
    """One instance's place in a decision, with its cost breakdown and share of new flows."""

    dbid: str
    state: str
    network_ms: float | None
    compute_ms: float
    cost: float | None
    share: float
    reason: str
    predicted_ms: float | None = None
    network_parts: tuple[tuple[str, float], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Return the candidate as JSON-ready values."""
        return {"dbid": self.dbid, "state": self.state, "network_ms": self.network_ms,
                "compute_ms": round(self.compute_ms, 3),
                "predicted_ms": _round(self.predicted_ms),
                "network": {k: round(v, 3) for k, v in self.network_parts},
                "cost": None if self.cost is None else round(self.cost, 3),
                "share": round(self.share, 4), "reason": self.reason}


def _round(value: float | None) -> float | None:
    """Round for display, keeping None."""
    return None if value is None else round(value, 3)


@dataclass(frozen=True, slots=True)
class Decision:
    """Which instances new flows of `service` entering at `ingress` go to, and in what shares."""

    ingress: int
    service: str
    candidates: tuple[Candidate, ...]
    computed_at: float
    policy: str = "dyncast"

    @property
    def shares(self) -> dict[str, float]:
        """D-BID -> share of new flows, for the instances that get any."""
        return {c.dbid: c.share for c in self.candidates if c.share > 0}

    @property
    def primary(self) -> str | None:
        """The instance with the largest share (ties: lowest cost, then D-BID)."""
        best, rank = None, None  # (one pass: each changed decision's log entry asks twice)
        for c in self.candidates:
            if c.share > 0:
                key = (-c.share, c.cost or 0.0, c.dbid)
                if rank is None or key < rank:
                    best, rank = c.dbid, key
        return best

    def to_dict(self) -> dict[str, Any]:
        """Return the decision as JSON-ready values."""
        return {"ingress": self.ingress, "service": self.service, "policy": self.policy,
                "primary": self.primary, "computed_at": self.computed_at,
                "candidates": [c.to_dict() for c in self.candidates]}



def _usable(rows: list[CandidateInput],
            budget_ms: float | None) -> tuple[list[CandidateInput], set[str], Costs]:
    """The instances a policy may choose from, those left out by the budget, and every
    reachable instance's predicted delay (path + compute, unweighted)."""
    reachable = [r for r in rows if r.network_ms is not None]
    pool = [r for r in reachable if r.state == "active"]
    if not pool:
        pool = [r for r in reachable if r.state == "unknown"]
    predicted = {r.dbid: (r.network_ms or 0.0) + r.compute_ms for r in reachable}
    over = set()
    if budget_ms is not None and any(predicted[r.dbid] <= budget_ms for r in pool):
        over = {r.dbid for r in pool if predicted[r.dbid] > budget_ms}
        pool = [r for r in pool if r.dbid not in over]
    return pool, over, predicted


class Scored(NamedTuple):
    """A policy's view of one decision's candidates: the usable ones, those the budget left
    out, every reachable one's predicted delay, the costs and the shares."""

    pool: list[CandidateInput]
    over: set[str]
    predicted: Costs
    costs: Costs
    shares: Costs


def score(rows: list[CandidateInput], weights: Weights, shape: tuple[float, float],
          budget_ms: float | None, policy: str) -> Scored:
    """Apply the state, reachability and budget rules, then `policy` with (spread, sharpness)
    `shape`."""
    select = POLICIES.get(policy)
    if select is None:
        raise ValueError(f"unknown selection policy {policy!r} (known: {', '.join(POLICIES)})")
    pool, over, predicted = _usable(rows, budget_ms)
    costs, shares = select(pool, weights, *shape)
    return Scored(pool, over, predicted, costs, shares)


def decide(ingress: int, service: str, weights: Weights, inputs: Iterable[CandidateInput],
           spread: float, sharpness: float, now: float,
           budget_ms: float | None = None, policy: str = "dyncast") -> Decision:
    """Score every candidate and give shares as the service's `policy` says (module docstring).

    With a delay budget, instances whose predicted delay (path + compute, unweighted) misses it
    are left out as long as one instance meets it.
    """
    rows = list(inputs)
    scored = score(rows, weights, (spread, sharpness), budget_ms, policy)
    return Decision(ingress, service, _candidates(rows, scored, budget_ms, policy), now, policy)


def _candidates(rows: list[CandidateInput], scored: Scored, budget_ms: float | None,
                policy: str) -> tuple[Candidate, ...]:
    """Every candidate with its cost, share and the reason for it, by D-BID."""
    _, over, predicted, costs, shares = scored
    candidates, left_out = [], LEFT_OUT.get(policy, "left out by the policy")
    cost_of, share_of, predicted_of = costs.get, shares.get, predicted.get
    for dbid, state, network_ms, compute, parts in sorted(rows, key=itemgetter(0)):  # by D-BID
        cost, share = cost_of(dbid), share_of(dbid)  # (rows come sorted: cheap)
        if network_ms is None:
            reason = "unreachable from this ingress"
        elif dbid in over:
            reason = f"predicted {predicted[dbid]:.1f} ms misses the {budget_ms:g} ms budget"
        elif cost is None:
            reason = f"not usable: {state}"
        elif share is None:
            reason = left_out
        else:
            reason = "selected" if state == "active" else "selected (metrics stale: fallback)"
        # (tuple.__new__: the named tuple's own __new__ costs twice as much; a re-take makes 20)
        candidates.append(tuple.__new__(Candidate, (
            dbid, state, network_ms, compute, cost, share or 0.0, reason, predicted_of(dbid),
            parts)))
    return tuple(candidates)


def _moved(prev: Decision, new_costs: dict[str, float], new_states: dict[str, str],
           hysteresis: float) -> bool:
    """True when a new decision of `prev`'s policy, with these costs and states, should replace
    it: the usable set or a state changed, or a cost moved by more than `hysteresis`."""
    old_costs = {c.dbid: c.cost for c in prev.candidates if c.cost is not None}
    if old_costs.keys() != new_costs.keys():
        return True
    if {c.dbid: c.state for c in prev.candidates} != new_states:
        return True
    for dbid, old in old_costs.items():
        assert old is not None
        if abs(new_costs[dbid] - old) > hysteresis * max(old, EPSILON):
            return True
    return False


class Engine:
    """Holds the decision in force for every (ingress, service) and serves picks from it.

    `seed` seeds the generator of the `random` policy, so that a run can be repeated.
    """

    def __init__(self, spread: float, sharpness: float, hysteresis: float,
                 seed: int = 0) -> None:
        self.spread = spread
        self.sharpness = sharpness
        self.hysteresis = hysteresis
        self.decisions: dict[tuple[int, str], Decision] = {}
        self._choosers: dict[tuple[int, str], AnyChooser] = {}
        self._rng = random.Random(seed)
        self.recomputed = 0

    def update(self, ingress: int, service: str, weights: Weights,
               inputs: Iterable[CandidateInput], now: float,
               budget_ms: float | None = None, policy: str = "dyncast",
               significant: bool = False) -> bool:
        """Recompute one decision; install it if significant. Return True if it changed.
        The costs alone tell whether a new decision of the same policy would be significant:
        only then is it built in full. `significant`: the caller knows it is (a cost moved by
        more than the hysteresis), so it is installed without that check."""
        rows = list(inputs)
        self.recomputed += 1
        prev = self.decisions.get((ingress, service))
        scored = score(rows, weights, (self.spread, self.sharpness), budget_ms, policy)
        if not significant and prev is not None and prev.policy == policy and not _moved(
                prev, scored.costs, {r.dbid: r.state for r in rows}, self.hysteresis):
            return False  # the usable set, the states and every cost as in the one in force
        self._install(ingress, service, rows, scored, (now, budget_ms, policy))
        return True

    def kept(self) -> None:
        """Count a recompute that found, without taking the decision again, that the one in
        force stands (no candidate's cost moved by more than the hysteresis)."""
        self.recomputed += 1

    def _install(self, ingress: int, service: str, rows: list[CandidateInput], scored: Scored,
                 at: tuple[float, float | None, str]) -> None:
        """Put the decision built from `scored` in force; its chooser keeps earned credit."""
        now, budget_ms, policy = at
        key = (ingress, service)
        new = Decision(ingress, service, _candidates(rows, scored, budget_ms, policy), now,
                       policy)
        self.decisions[key] = new
        self._choosers[key] = chooser_for(policy, new.shares, scored.costs,
                                          self._choosers.get(key), self._rng)

    def pick(self, ingress: int, service: str, flow: object = None,
             load: Load | None = None) -> str | None:
        """The instance for the next new flow of `service` at `ingress`, or None. `flow`: the
        flow's key (`consistent-hash` hashes it); `load`: each instance's load as of now
        (`p2c`, `least-inflight` compare it); the other policies need neither."""
        chooser = self._choosers.get((ingress, service))
        return None if chooser is None else chooser.pick(flow, load)

    def forget(self, ingress: int | None = None, service: str | None = None) -> None:
        """Drop decisions of a departed switch or a deleted service."""
        doomed = [k for k in self.decisions
                  if (ingress is None or k[0] == ingress) and (service is None or k[1] == service)]
        for key in doomed:
            del self.decisions[key]
            self._choosers.pop(key, None)
