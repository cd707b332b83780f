"""Smooth weighted round robin picks, one loop per pick, the instances that taking the
maximum of the rounded credits over all of them (its first form) picked, in the same order."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from controller.selection.choosers import Chooser

SHARES = st.dictionaries(st.sampled_from([f"10.0.0.{n}" for n in range(1, 9)]),
                         st.sampled_from((0.0, 0.1, 0.125, 0.25, 1 / 3, 0.5, 0.7, 1.0)),
                         max_size=8)


def reference_pick(weights: dict[str, float], current: dict[str, float],
                   total: float) -> str | None:
    """The pick as it was written first: add every weight, then max() of rounded credits."""
    if not weights:
        return None
    for dbid, weight in weights.items():
        current[dbid] += weight
    chosen = max(current, key=lambda d: round(current[d], 9))
    current[chosen] -= total
    return chosen


@settings(max_examples=200, deadline=None)
@given(SHARES, SHARES, st.integers(0, 40), st.integers(1, 60))
def test_picks_equal_the_max_of_rounded_credits(first: dict[str, float],
                                                second: dict[str, float], warm: int,
                                                n: int) -> None:
    """Same instances in the same order, equal shares in turn, after a decision change that
    keeps earned credit too."""
    before = Chooser(first)
    for _ in range(warm):
        before.pick()
    chooser = Chooser(second, before)
    weights, current = dict(chooser._weights), dict(chooser._current)
    total = chooser._total
    assert [chooser.pick() for _ in range(n)] == [reference_pick(weights, current, total)
                                                  for _ in range(n)]
