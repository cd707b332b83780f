"""Pricing an instance's queue at its marginal cost (`[controller.selection] queue_price`).

Boundary: a compute cost in ms and the report it was priced from (aged, with the flows placed
since: placements.py) in, a cost in ms out. No clock, no state; decisions.py calls it for
`dyncast` services only.

The default estimate (engine.py, `estimate_compute_ms`) prices a new request at the time it
would itself take: `s * (1 + ahead / c)`, its service time `s` behind the `ahead` requests the
`c` workers must finish first. Choosing every instance by that *average* cost is a user-optimal
(Wardrop) split: new flows go to a site until its queue costs as much as the next site's, so
the good sites' queues grow to the price of a worse path. A request that joins a queue also
delays every request that comes after it while that queue lasts. For an M/M/1 queue the cost to
everyone of one more request (the derivative of the total delay in the arrival rate) is
`T / (1 - rho)`, `T` the mean time in the system; with the count-based estimate
(`1 + ahead ~ 1 / (1 - rho)`) that is

    marginal_ms = mean_ms * (1 + ahead / c)        ~ s * (1 + ahead / c) ** 2

the system optimum's price. An idle worker (`ahead = 0`) leaves the cost as it is; a queue is
priced quadratically. The network term is not touched: a congested path's queue is made by the
traffic that shares it (a bulk transfer), to which one request barely adds, so its average is
its marginal cost.

Only the default estimate from a raw report is re-priced (a level-2 score or
`[controller.scoring]` carries no counts to price). Only the `dyncast` policy reads it: `p2c`
and `least-loaded` stand for what other balancers do (Envoy compares requests in flight) and keep
the average estimate, so a benchmark of `queue_price = "marginal"` compares it against them
unchanged.

It is off by default (`"mean"`): on the steering benchmark's load sweep it helped in hot-site at
0.95 of the capacity and made load-step at 0.6 worse, meeting issue 22's targets in no more cells
than the mean (docs/results/steering.md, "Pricing the queue at its marginal cost, measured").
"""

from __future__ import annotations

from controller.model import Metrics

QUEUE_PRICES = ("mean", "marginal", "allowance")  # "allowance": allowance.py


def queue_factor(metrics: Metrics | None) -> float:
    """`1 + ahead / c`: how many service times a new request at the instance takes, from the
    report's counts (the requests that must finish before it starts, over the workers)."""
    if metrics is None or metrics.capacity <= 0:
        return 1.0
    servers = metrics.capacity
    return 1.0 + max(0, metrics.sessions + metrics.queue - servers + 1) / servers


def marginal_ms(mean_ms: float, metrics: Metrics | None) -> float:
    """The marginal cost of one more request at an instance whose average cost is `mean_ms`
    (priced from `metrics`): `mean_ms` times the queue factor."""
    return mean_ms * queue_factor(metrics)


def applies(policy: str, metrics: Metrics | None, scoring_enabled: bool) -> bool:
    """Whether a `queue_price` other than "mean" re-prices this compute cost: a `dyncast`
    service's instance priced by the default estimate from a raw report."""
    return (policy == "dyncast" and metrics is not None and metrics.score is None
            and not scoring_enabled)
