"""The dyncast policy choosing per flow (`[controller.selection] pick = "per-flow"`, opt-in).

Boundary: a decision in force, the service's weights and each instance's compute cost as of the
pick in; one D-BID out. Nothing here reads a report, a clock or the network.

By default a dyncast decision's shares are served by smooth weighted round robin (choosers.py):
the shares stay fixed between recomputes, and the flows placed since an instance's last report
change its price only when a decision is taken again. With `pick = "per-flow"` each new flow
goes to the cheapest of the decision's candidates re-priced at the pick:

    cost_now = w_net * network_ms + w_compute * compute_ms(now)

`network_ms` is the path cost the decision saw; `compute_ms(now)` is the cost every recompute
uses (decisions.py): the last report aged to now plus the flows placed on the instance since.
The candidates are those with a share; when fewer than two have one, the two cheapest usable
ones by the decision's cost (p2c-style: a flow always has a second place to go). Ties: the
larger share, then the D-BID. Each placement raises the cost of the instance it went to, so a
burst between two reports spreads as the re-priced costs say.
"""

from __future__ import annotations

from collections.abc import Callable

from controller.model import Weights
from controller.selection.engine import Candidate, Decision

PICKS = ("shares", "per-flow")


def candidates(decision: Decision) -> list[Candidate]:
    """The candidates a per-flow pick chooses among (module docstring)."""
    shared = [c for c in decision.candidates if c.share > 0]
    if len(shared) >= 2:
        return shared
    usable = sorted((c for c in decision.candidates if c.cost is not None),
                    key=lambda c: (c.cost or 0.0, c.dbid))
    return usable[:2] if usable else shared


def pick(decision: Decision, weights: Weights,
         compute_now: Callable[[str], float | None]) -> str | None:
    """The cheapest candidate as of now (`compute_now`: its compute cost now, None when the
    instance is gone), or None when there is none."""
    best: tuple[float, float, str] | None = None
    for c in candidates(decision):
        compute = compute_now(c.dbid)
        if compute is None:
            continue
        cost = weights.network * (c.network_ms or 0.0) + weights.compute * compute
        key = (cost, -c.share, c.dbid)
        if best is None or key < best:
            best = key
    return None if best is None else best[2]
