"""Serving a decision's shares one new flow at a time.

Boundary: given the shares of new flows a decision gives (D-BID -> share), pick the instance
for each next flow: in exact proportion by smooth weighted round robin, or at random in
proportion (the `random` policy). Nothing here knows costs, states or the network.
"""

from __future__ import annotations

import random


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

    def pick(self) -> str | None:
        """Return the next instance, or None when the decision has none."""
        if not self._weights:
            return None
        for dbid, weight in self._weights.items():
            self._current[dbid] += weight
        # rounded, so that float noise does not break ties (equal shares rotate in turn)
        chosen = max(self._current, key=lambda d: round(self._current[d], 9))
        self._current[chosen] -= self._total
        return chosen


class RandomChooser:
    """Independent random picks in proportion to a decision's shares (the `random` policy)."""

    def __init__(self, shares: dict[str, float], rng: random.Random) -> None:
        self._dbids = sorted(shares)
        self._weights = [shares[d] for d in self._dbids]
        self._rng = rng

    def pick(self) -> str | None:
        """Return a random instance, or None when the decision has none."""
        if not self._dbids:
            return None
        return self._rng.choices(self._dbids, self._weights)[0]
