"""bench/intake_margin.py's search finds the highest offered rate a controller sustains (to
within its refinement), above its start or below it, and counts a step short of its rate or
with a refused POST as not held."""

from __future__ import annotations

import pytest

from bench.intake_margin import Step, best, search


def capacity(limit: float, refused_above: float = float("inf")):  # type: ignore[no-untyped-def]
    """A fake controller: accepts up to `limit` reports/s; refuses POSTs above a rate."""
    asked: list[float] = []

    def measure(rate: float) -> Step:
        asked.append(rate)
        return Step(rate, min(rate, limit), refused=int(rate > refused_above))

    return measure, asked


def test_a_step_holds_only_within_tolerance_and_with_nothing_refused() -> None:
    assert Step(2000, 1961).held and not Step(2000, 1959).held
    assert not Step(2000, 2000, refused=1).held
    assert Step(2000, 1900, tolerance=0.05).held


@pytest.mark.parametrize("limit", [2100.0, 2600.0, 3333.0, 5000.0])
def test_the_search_brackets_the_capacity(limit: float) -> None:
    measure, asked = capacity(limit)
    steps = search(measure, 2000.0, 1.25, 12000.0, refine=3)
    top = best(steps)
    assert top <= limit / 0.98  # never a rate it did not sustain
    failed = min(s.offered for s in steps if not s.held)
    assert failed > top and (failed - top) <= 0.25 * top / 8 + 1  # gap halved three times
    assert asked == [s.offered for s in steps]


def test_a_refused_post_ends_the_rise() -> None:
    measure, _ = capacity(10_000.0, refused_above=3000.0)
    assert best(search(measure, 2000.0, 1.25, 12000.0, refine=0)) == 2500.0


def test_below_the_start_the_rate_falls_until_a_step_holds_and_the_top_caps_the_rise(
        ) -> None:
    measure, asked = capacity(1500.0)
    steps = search(measure, 2000.0, 1.25, 12000.0, refine=2)
    assert asked[:3] == [2000.0, 1600.0, 1280.0] and best(steps) == 1520.0  # held: 1280, 1440, 1520
    measure, asked = capacity(10.0)
    assert best(search(measure, 2000.0, 2.0, 12000.0, refine=2)) == 0.0
    assert asked == [2000.0, 1000.0, 500.0, 250.0]  # down to start / 8, then no refinement
    measure, asked = capacity(1e9)
    steps = search(measure, 2000.0, 2.0, 5000.0, refine=2)
    assert best(steps) == 5000.0 and asked == [2000.0, 4000.0, 5000.0]
