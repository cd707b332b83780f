"""Serving a decision's shares one new flow at a time.

Boundary: given the shares of new flows a decision gives (D-BID -> share), pick the instance
for each next flow: in exact proportion by smooth weighted round robin, or at random in
proportion (the `random` policy), or per flow (`p2c`, `least-inflight`: by the instances' loads
asked at the pick; `consistent-hash`: by the flow's key). Nothing here knows states or the
network.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from controller.selection.hashing import maglev_table, stable_hash

Load = Callable[[str], float]  # an instance's load asked at the pick (lower is better)


class Chooser:
    """Smooth weighted round robin over a decision's shares: exact proportions, no herding.

    A chooser built from `previous` (the one it replaces) keeps the credit each instance had
    earned, so that frequent decision updates do not restart the rotation at the same instance.
    """

    def __init__(self, shares: dict[str, float], previous: Chooser | None = None) -> None:
        self._weights = dict(sorted(shares.items()))
        self._total = sum(self._weights.values())
        earned: dict[str, float] = previous._current if previous is not None else {}
        current = {d: earned.get(d, 0.0) for d in self._weights}
        mean = sum(current.values()) / len(current) if current else 0.0
        self._current: dict[str, float] = {d: c - mean for d, c in current.items()}

    def pick(self, flow: object = None, load: Load | None = None) -> str | None:
        """Return the next instance, or None when the decision has none."""
        if not self._weights:
            return None
        current = self._current
        chosen: str | None = None
        best = 0.0
        for dbid, weight in self._weights.items():  # (in the order of `current`'s keys)
            credit = current[dbid] = current[dbid] + weight
            # rounded, so that float noise does not break ties (equal shares rotate in turn);
            # the first of equals wins, as with max()
            rounded = round(credit, 9)
            if chosen is None or rounded > best:
                chosen, best = dbid, rounded
        assert chosen is not None  # (weights are not empty)
        current[chosen] -= self._total
        return chosen


class RandomChooser:
    """Independent random picks in proportion to a decision's shares (the `random` policy)."""

    def __init__(self, shares: dict[str, float], rng: random.Random) -> None:
        self._dbids = sorted(shares)
        self._weights = [shares[d] for d in self._dbids]
        self._rng = rng

    def pick(self, flow: object = None, load: Load | None = None) -> str | None:
        """Return a random instance, or None when the decision has none."""
        if not self._dbids:
            return None
        return self._rng.choices(self._dbids, self._weights)[0]


class PairChooser:
    """Power of two choices (the `p2c` policy, Envoy's least request with equal weights): two
    distinct instances drawn at random, the one with the lower load takes the flow (a tie: the
    first drawn). The load is asked at the pick (`load`: the compute cost as of now); without
    it, the decision's costs stand."""

    def __init__(self, costs: dict[str, float], rng: random.Random) -> None:
        self._costs = dict(sorted(costs.items()))
        self._dbids = list(self._costs)
        self._rng = rng

    def pick(self, flow: object = None, load: Load | None = None) -> str | None:
        """Return the lighter of two random instances, or None when the decision has none."""
        if len(self._dbids) < 2:
            return self._dbids[0] if self._dbids else None
        first, second = self._rng.sample(self._dbids, 2)
        of = load or self._costs.__getitem__
        return second if of(second) < of(first) else first


class LeastChooser:
    """The lowest load takes the flow (the `least-inflight` policy), asked at the pick; ties
    are served in turn, so equal instances share a burst evenly."""

    def __init__(self, costs: dict[str, float]) -> None:
        self._costs = dict(sorted(costs.items()))
        self._dbids = list(self._costs)
        self._turn = 0

    def pick(self, flow: object = None, load: Load | None = None) -> str | None:
        """Return the least loaded instance, or None when the decision has none."""
        if not self._dbids:
            return None
        of, n, turn = load or self._costs.__getitem__, len(self._dbids), self._turn
        self._turn += 1
        return min(enumerate(self._dbids), key=lambda p: (of(p[1]), (p[0] - turn) % n))[1]


class HashChooser:
    """The flow's key picks (the `consistent-hash` policy): a Maglev lookup table over the
    instances (hashing.py), so a key keeps its instance while the set is unchanged, and when
    an instance joins or leaves only about 1/n of the keys move. No key: in turn."""

    def __init__(self, dbids: list[str]) -> None:
        self._table = maglev_table(tuple(sorted(dbids)))
        self._dbids = sorted(dbids)
        self._turn = 0

    def pick(self, flow: object = None, load: Load | None = None) -> str | None:
        """Return the key's instance, or None when the decision has none."""
        if not self._dbids:
            return None
        if flow is None:
            self._turn += 1
            return self._dbids[(self._turn - 1) % len(self._dbids)]
        return self._table[stable_hash(repr(flow)) % len(self._table)]


AnyChooser = Chooser | RandomChooser | PairChooser | LeastChooser | HashChooser


def chooser_for(policy: str, shares: dict[str, float], costs: dict[str, float],
                previous: AnyChooser | None, rng: random.Random) -> AnyChooser:
    """The chooser that serves a decision of `policy`: `shares` (the instances with a share),
    `costs` (every usable instance's cost: p2c draws from all of them), `previous` (the one
    it replaces: smooth round robin keeps its credit)."""
    if policy == "random":
        return RandomChooser(shares, rng)
    if policy == "p2c":
        return PairChooser(costs, rng)
    if policy == "least-inflight":
        return LeastChooser(costs)
    if policy == "consistent-hash":
        return HashChooser(list(shares))
    return Chooser(shares, previous if isinstance(previous, Chooser) else None)
