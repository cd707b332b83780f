"""Selection policies: the usable instances of a decision -> each one's cost and share.

Boundary: plain rows (D-BID, network and compute cost) and the service's weights in, costs and
shares of new flows out; the engine (engine.py) applies state, reachability and the delay
budget before a policy sees the rows, and serves the shares (choosers.py). The policies that
choose per flow (`p2c`, `least-inflight`, `consistent-hash`) give here the shares a switch
that places flows itself (learn, bucket) is given; docs/decisions.md#selection-policies.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from controller.model import Weights

EPSILON = 1e-9


class Row(Protocol):
    """What a policy reads of a usable candidate (engine.CandidateInput)."""

    @property
    def dbid(self) -> str: ...

    @property
    def network_ms(self) -> float | None: ...

    @property
    def compute_ms(self) -> float: ...


Costs = dict[str, float]
Policy = Callable[[Sequence[Row], Weights, float, float], tuple[Costs, Costs]]


def _joint(network_ms: float | None, compute: float, weights: Weights) -> float:
    """`w_net * network_ms + w_compute * compute_ms`."""
    return weights.network * (network_ms or 0.0) + weights.compute * compute


def _network(network_ms: float | None, compute: float, weights: Weights) -> float:
    """The network cost alone."""
    return network_ms or 0.0


def _compute(network_ms: float | None, compute: float, weights: Weights) -> float:
    """The compute cost alone."""
    return compute


# the cost each policy gives a usable candidate (network_ms, compute_ms): what its decision
# shows and `_moved` compares
COST_OF: dict[str, Callable[[float | None, float, Weights], float]] = {
    "dyncast": _joint, "nearest": _network, "least-loaded": _compute, "round-robin": _joint,
    "random": _joint, "p2c": _compute, "least-inflight": _compute, "consistent-hash": _joint}


def _costs(pool: Sequence[Row], weights: Weights, policy: str) -> Costs:
    """Each usable instance's cost as `policy` gives it."""
    cost = COST_OF[policy]
    return {r.dbid: cost(r.network_ms, r.compute_ms, weights) for r in pool}


def _lowest(costs: Costs) -> Costs:
    """Equal shares among the instances of lowest cost (exact ties share)."""
    if not costs:
        return {}
    best = min(costs.values())
    chosen = [d for d, c in costs.items() if c <= best * (1.0 + EPSILON) + EPSILON]
    return dict.fromkeys(chosen, 1.0 / len(chosen))


def _dyncast(pool: Sequence[Row], weights: Weights, spread: float,
             sharpness: float) -> tuple[Costs, Costs]:
    """Joint cost; instances within `spread` of the best share by `(best/cost)^sharpness`."""
    costs = _costs(pool, weights, "dyncast")
    if not costs:
        return costs, {}
    best = min(costs.values())
    limit = best * (1.0 + spread) + EPSILON
    raw = {d: (1.0 if c <= EPSILON else (best / c) ** sharpness)
           for d, c in costs.items() if c <= limit}
    total = sum(raw.values())
    return costs, {d: w / total for d, w in raw.items()}


def _nearest(pool: Sequence[Row], weights: Weights, spread: float,
             sharpness: float) -> tuple[Costs, Costs]:
    """Network cost only: the nearest instance(s) take every new flow."""
    costs = _costs(pool, weights, "nearest")
    return costs, _lowest(costs)


def _least_loaded(pool: Sequence[Row], weights: Weights, spread: float,
                  sharpness: float) -> tuple[Costs, Costs]:
    """Compute cost only: the least loaded instance(s) take every new flow."""
    costs = _costs(pool, weights, "least-loaded")
    return costs, _lowest(costs)


def _even(pool: Sequence[Row], weights: Weights, spread: float,
          sharpness: float) -> tuple[Costs, Costs]:
    """Equal shares among all usable instances, whatever they cost (joint cost shown)."""
    costs = _costs(pool, weights, "round-robin")
    return costs, {d: 1.0 / len(costs) for d in costs}


def _p2c(pool: Sequence[Row], weights: Weights, spread: float,
         sharpness: float) -> tuple[Costs, Costs]:
    """Power of two choices on the compute cost (the last report plus the flows placed since):
    each new flow draws two distinct usable instances at random and takes the cheaper. As
    shares, the chance of each instance under those draws with the costs frozen: beating
    each of the `n - 1` others it can be paired with (an exact tie: half), over `n (n - 1) / 2`
    pairs."""
    costs = _costs(pool, weights, "p2c")
    n = len(costs)
    if n <= 1:
        return costs, dict.fromkeys(costs, 1.0)
    pairs = n * (n - 1) / 2.0
    shares = {}
    for dbid, cost in costs.items():
        wins = sum(1.0 if cost < other - EPSILON else 0.5 if abs(cost - other) <= EPSILON
                   else 0.0 for d, other in costs.items() if d != dbid)
        if wins > 0:
            shares[dbid] = wins / pairs
    return costs, shares


def _least_inflight(pool: Sequence[Row], weights: Weights, spread: float,
                    sharpness: float) -> tuple[Costs, Costs]:
    """The fewest flows in flight (the compute column holds the service's base delay for each,
    plus one: no report is read): the least busy instance(s) take every new flow."""
    costs = _costs(pool, weights, "least-inflight")
    return costs, _lowest(costs)


POLICIES: dict[str, Policy] = {
    "dyncast": _dyncast,
    "nearest": _nearest,
    "least-loaded": _least_loaded,
    "round-robin": _even,
    "random": _even,  # same shares as round-robin; the engine picks at random among them
    "p2c": _p2c,
    "least-inflight": _least_inflight,
    "consistent-hash": _even,  # equal shares; where the controller picks per flow, the hash does
}
LEFT_OUT = {"dyncast": "more than spread above the best", "nearest": "not the nearest",
            "least-loaded": "not the least loaded", "p2c": "loses every pair (the most loaded)",
            "least-inflight": "not the fewest flows in flight"}

