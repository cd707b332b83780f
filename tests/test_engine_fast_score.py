"""The one-pass scoring of the default policy gives what the general path gives."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from controller.model import Weights
from controller.selection import engine
from controller.selection.engine import CandidateInput, Scored
from controller.selection.policies import POLICIES

COSTS = st.one_of(st.none(), st.sampled_from([0.0, 1.0, 2.5]),
                  st.floats(0.0, 50.0, allow_nan=False))
ROWS = st.lists(st.tuples(st.sampled_from(["active", "unknown", "draining", "down", "ejected"]),
                          COSTS, st.floats(0.0, 80.0, allow_nan=False)), max_size=8)


def general(rows: list[CandidateInput], weights: Weights, shape: tuple[float, float]) -> Scored:
    """`score` of `dyncast` through `_usable` and the policy table (no budget)."""
    pool, over, predicted = engine._usable(rows, None)
    costs, shares = POLICIES["dyncast"](pool, weights, *shape)
    return Scored(pool, over, predicted, costs, shares)


@settings(max_examples=300, deadline=None)
@given(ROWS, st.sampled_from([(1.0, 1.0), (0.0, 1.0), (1.0, 0.0), (0.3, 2.0)]),
       st.sampled_from([(0.3, 4.0), (0.0, 1.0), (1.0, 8.0)]))
def test_one_pass_dyncast_score_equals_the_general_path(
        rows: list[tuple[str, float | None, float]], w: tuple[float, float],
        shape: tuple[float, float]) -> None:
    """Pool, predicted delays, costs and shares (and their order) are the same, bit for bit,
    whatever the states, reachability and weights."""
    inputs = [CandidateInput(f"i{k}", state, net, compute)
              for k, (state, net, compute) in enumerate(rows)]
    weights = Weights(*w)
    fast = engine.score(inputs, weights, shape, None, "dyncast")
    want = general(inputs, weights, shape)
    assert fast.pool == want.pool and fast.over == want.over
    assert list(fast.predicted.items()) == list(want.predicted.items())
    assert list(fast.costs.items()) == list(want.costs.items())
    assert list(fast.shares.items()) == list(want.shares.items())
