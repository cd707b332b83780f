"""Pricing the wait beyond an allowance steeply (`[controller.selection] queue_price`).

Boundary: a compute cost in ms, the report it was priced from (aged, with the flows placed
since: placements.py) and the service's base delay in, a cost in ms out. No clock, no state;
decisions.py calls it for `dyncast` services only, through marginal.applies.

The default estimate (engine.py, `estimate_compute_ms`) prices a new request at the time it
would itself take, `s * (1 + ahead / c)`: its service time `s` and the wait `w = s * ahead / c`
behind the requests ahead of it. Choosing by that cost equalises it (marginal.py): new flows go
to a near site until its queue costs as much as a farther or slower site, so near saturation
every request waits about as long as the worst candidate takes, and the 95th percentile is that
worst candidate's time. What a percentile needs instead is that most requests wait little and
the few that cannot be served fast are the ones sent away. With `queue_price = "allowance"` the
first `wait_allowance` base delays of waiting cost what they take; every ms beyond costs
`allowance_price` ms:

    cost = s + min(w, W) + allowance_price * max(0, w - W),   W = wait_allowance * base delay

A site whose queue is within its allowance is priced as before. One whose queue has grown past
it is priced as if its extra wait fell on every request queued behind it (the marginal price's
reasoning, marginal.py, kept to the part of the queue that takes requests past the allowance):
new flows go to a farther site that can start them, and the near site's queue drains back to the
allowance. The network term is not touched: a congested path's queue is the bulk traffic's, to
which one request barely adds.

Only the default estimate from a raw report is re-priced (a level-2 score or `[controller.scoring]`
carries no counts to price), for `dyncast` services only (`p2c` and `least-loaded` stand for
what other balancers do).

It is off by default (`"mean"`): on the steering benchmark's load sweep it sent more requests
across the congested path than the mean and met issue 22's targets in no more cells
(docs/results/steering.md, "A wait allowance, measured").
"""

from __future__ import annotations

from controller.model import Metrics
from controller.selection.marginal import queue_factor

DEFAULT_ALLOWANCE = 1.0  # base delays of waiting priced at what they take
DEFAULT_PRICE = 5.0  # ms of cost per ms waited beyond the allowance
MAX_ALLOWANCE = 100.0
MAX_PRICE = 1000.0


def wait_ms(cost_ms: float, metrics: Metrics | None) -> float:
    """The part of a default-estimate cost that is waiting: `cost - cost / (1 + ahead / c)`."""
    return cost_ms - cost_ms / queue_factor(metrics)


def allowance_ms(cost_ms: float, metrics: Metrics | None, allowed_ms: float,
                 price: float) -> float:
    """`cost_ms` with the wait beyond `allowed_ms` priced at `price` ms per ms."""
    over = wait_ms(cost_ms, metrics) - allowed_ms
    if over <= 0:
        return cost_ms
    return cost_ms + (price - 1.0) * over
