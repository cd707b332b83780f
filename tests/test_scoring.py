"""CATS metric levels: normalisers, aggregation, defaults, the cost they give, their config."""

from __future__ import annotations

import itertools
import math
from typing import Any

import pytest

from controller.errors import ValidationError
from controller.model import Metrics
from controller.selection.scoring import (
    DEFAULT_CATEGORIES,
    Category,
    Normaliser,
    ScoringConfig,
    compute_ms_from_score,
    level1,
    level2,
    raw_values,
    scoring_from_dict,
)

BASE = 20.0
IDLE = Metrics(cpu=0.0, sessions=0, queue=0, capacity=100)
LOADED = Metrics(cpu=0.9, sessions=100, queue=100, capacity=100, processing_delay_ms=5 * BASE)
WHERE = "controller.scoring"


def _cfg(aggregation: str = "weighted-mean", **weights: float) -> ScoringConfig:
    """Default categories with some weights replaced."""
    cats = tuple(Category(c.name, weights.get(c.name, c.weight), c.normaliser)
                 for c in DEFAULT_CATEGORIES)
    return ScoringConfig(enabled=True, aggregation=aggregation, categories=cats)


def test_minmax_is_10_at_best_0_at_worst_linear_between_and_clipped() -> None:
    """minmax maps best to 10, worst to 0, the middle to 5, and clips outside the bounds."""
    n = Normaliser("minmax", best=0.0, worst=2.0)
    assert (n.score(0.0), n.score(1.0), n.score(2.0), n.score(0.5)) == (10.0, 5.0, 0.0, 7.5)
    assert (n.score(-1.0), n.score(7.0)) == (10.0, 0.0)


def test_minmax_with_best_above_worst_scores_higher_values_better() -> None:
    """minmax also serves a raw value where higher is better (best > worst)."""
    n = Normaliser("minmax", best=100.0, worst=0.0)
    assert (n.score(100.0), n.score(50.0), n.score(0.0), n.score(200.0)) == (10.0, 5.0, 0.0, 10.0)


def test_sigmoid_is_5_at_midpoint_falls_with_value_and_stays_within_bounds() -> None:
    """sigmoid gives 5 at its midpoint, is symmetric around it, and never leaves 0..10."""
    n = Normaliser("sigmoid", midpoint=0.5, steepness=10.0)
    assert n.score(0.5) == 5.0
    assert n.score(0.3) + n.score(0.7) == pytest.approx(10.0)
    assert 10.0 > n.score(0.0) > n.score(0.3) > n.score(0.7) > n.score(1.0) > 0.0
    assert n.score(1e6) == 0.0 and n.score(-1e6) == 10.0  # no overflow at the extremes


def test_inverse_is_10_up_to_best_then_halves_when_the_value_doubles() -> None:
    """inverse gives 10 up to best and 10 * best / value beyond it."""
    n = Normaliser("inverse", best=1.0)
    assert (n.score(0.0), n.score(1.0), n.score(2.0), n.score(4.0)) == (10.0, 10.0, 5.0, 2.5)


def test_normaliser_refuses_parameters_that_leave_score_undefined() -> None:
    """A Normaliser built in code is checked too, not only one read from config."""
    for kwargs in ({"kind": "minmax", "best": 1.0, "worst": 1.0}, {"kind": "cubic"},
                   {"kind": "sigmoid", "steepness": 0.0}, {"kind": "inverse", "best": 0.0}):
        with pytest.raises(ValueError):
            Normaliser(**kwargs)


def test_raw_values_are_ratios_of_capacity_and_of_the_base_delay() -> None:
    """Level 0 becomes cpu, sessions and queue per capacity, and delay per base delay."""
    m = Metrics(cpu=0.4, sessions=25, queue=50, capacity=100, processing_delay_ms=30.0)
    assert raw_values(m, BASE) == {"cpu": 0.4, "sessions": 0.25, "queue": 0.5, "delay": 1.5}
    assert raw_values(IDLE, BASE)["delay"] == 1.0


def test_weighted_mean_weighs_categories_and_min_takes_the_worst() -> None:
    """weighted-mean averages level-1 scores by weight; min is the worst category."""
    m = Metrics(cpu=0.5, sessions=0, queue=0, capacity=10)  # cpu 5, others 10
    assert level1(m, BASE, _cfg()) == {"cpu": 5.0, "sessions": 10.0, "queue": 10.0, "delay": 10.0}
    assert level2(m, BASE, _cfg()) == pytest.approx(8.75)
    assert level2(m, BASE, _cfg(cpu=3.0)) == pytest.approx((15.0 + 30.0) / 6.0)
    assert level2(m, BASE, _cfg("min")) == 5.0


def test_a_category_with_weight_0_is_ignored() -> None:
    """A zero-weight category is left out of level 1 and cannot pull level 2 down."""
    m = Metrics(cpu=1.0, sessions=0, queue=0, capacity=10)
    for aggregation in ("weighted-mean", "min"):
        cfg = _cfg(aggregation, cpu=0.0)
        assert "cpu" not in level1(m, BASE, cfg)
        assert level2(m, BASE, cfg) == 10.0


def test_idle_instance_scores_10_and_costs_the_base_delay() -> None:
    """With the defaults an idle instance scores 10, which costs exactly the base delay."""
    for aggregation in ("weighted-mean", "min"):
        score = level2(IDLE, BASE, _cfg(aggregation))
        assert score == 10.0
        assert compute_ms_from_score(score, BASE) == BASE


def test_loaded_instance_scores_low_and_costs_more() -> None:
    """With the defaults a heavily loaded instance scores under 3 and costs several base delays."""
    score = level2(LOADED, BASE, _cfg())
    assert score < 3.0
    assert compute_ms_from_score(score, BASE) > 3 * BASE


def test_compute_ms_is_inverse_in_the_score_and_capped() -> None:
    """Score 10 costs the base delay, 5 twice it, and nothing costs more than 20 base delays."""
    assert compute_ms_from_score(5.0, BASE) == 2 * BASE
    assert compute_ms_from_score(0.5, BASE) == compute_ms_from_score(0.0, BASE) == 20 * BASE
    assert compute_ms_from_score(11.0, BASE) == BASE
    u = 0.6  # agrees with the M/M/1 base / (1 - u) when score = 10 * (1 - u)
    assert compute_ms_from_score(10 * (1 - u), BASE) == pytest.approx(BASE / (1 - u))


@pytest.mark.parametrize("aggregation", ["weighted-mean", "min"])
def test_more_load_never_gives_a_higher_score(aggregation: str) -> None:
    """Raising any one raw metric over a grid never raises the level-2 score."""
    cfg = _cfg(aggregation)
    cpus, counts, delays = (0.0, 0.3, 0.7, 1.0), (0, 20, 60, 100, 250), (None, 10.0, 40.0, 200.0)

    def score(c: float, s: int, q: int, d: float | None) -> float:
        return level2(Metrics(c, s, q, 100, processing_delay_ms=d), BASE, cfg)

    for c, s, q in itertools.product(cpus, counts, counts):
        ordered = [score(c, s, q, d) for d in (0.0, *delays[1:])]
        assert ordered == sorted(ordered, reverse=True)
        assert score(c, s, q, None) >= score(c, s, q, 40.0)
    for s, q, d in itertools.product(counts, counts, delays):
        ordered = [score(c, s, q, d) for c in cpus]
        assert ordered == sorted(ordered, reverse=True)
        ordered = [score(0.3, n, q, d) for n in counts]
        assert ordered == sorted(ordered, reverse=True)
        ordered = [score(0.3, s, n, d) for n in counts]
        assert ordered == sorted(ordered, reverse=True)


def test_empty_table_gives_the_defaults_disabled() -> None:
    """An absent [controller.scoring] table means scoring off with the documented defaults."""
    cfg = scoring_from_dict({})
    assert cfg == ScoringConfig()
    assert (cfg.enabled, cfg.aggregation, cfg.categories) == (False, "weighted-mean",
                                                              DEFAULT_CATEGORIES)


def test_one_category_is_overridden_and_the_others_keep_their_defaults() -> None:
    """A category table replaces only what it names; other categories stay as they were."""
    cfg = scoring_from_dict({"enabled": True, "aggregation": "min", "categories": {
        "cpu": {"weight": 2.0, "normaliser": {"kind": "sigmoid", "midpoint": 0.6,
                                              "steepness": 8}},
        "queue": {"weight": 0}}})
    cats = {c.name: c for c in cfg.categories}
    assert (cfg.enabled, cfg.aggregation) == (True, "min")
    assert cats["cpu"] == Category("cpu", 2.0, Normaliser("sigmoid", midpoint=0.6, steepness=8.0))
    assert cats["queue"].weight == 0.0
    assert cats["queue"].normaliser == DEFAULT_CATEGORIES[2].normaliser
    assert cats["sessions"] == DEFAULT_CATEGORIES[1] and cats["delay"] == DEFAULT_CATEGORIES[3]


def _cat(name: str, table: dict[str, Any]) -> dict[str, Any]:
    """A scoring table with one category set to `table`."""
    return {"categories": {name: table}}


MINMAX = {"kind": "minmax", "best": 0.0, "worst": 1.0}
BAD: list[tuple[dict[str, Any], str]] = [
    ({"colour": 1}, WHERE + ".colour"),
    ({"enabled": "yes"}, WHERE + ".enabled"),
    ({"aggregation": "median"}, WHERE + ".aggregation"),
    ({"categories": []}, WHERE + ".categories"),
    ({"categories": {"gpu": {"weight": 1.0}}}, WHERE + ".categories.gpu"),
    (_cat("cpu", {"wieght": 1.0}), WHERE + ".categories.cpu.wieght"),
    (_cat("cpu", {"weight": -1.0}), WHERE + ".categories.cpu.weight"),
    (_cat("cpu", {"weight": math.nan}), WHERE + ".categories.cpu.weight"),
    (_cat("cpu", {"weight": "1"}), WHERE + ".categories.cpu.weight"),
    (_cat("cpu", {"normaliser": "minmax"}), WHERE + ".categories.cpu.normaliser"),
    (_cat("cpu", {"normaliser": {"kind": "cubic"}}), WHERE + ".categories.cpu.normaliser.kind"),
    (_cat("cpu", {"normaliser": {"best": 0.0}}), WHERE + ".categories.cpu.normaliser.kind"),
    (_cat("cpu", {"normaliser": {**MINMAX, "worst": 0.0}}),
     WHERE + ".categories.cpu.normaliser.worst"),
    (_cat("cpu", {"normaliser": {"kind": "minmax", "best": 0.0}}),
     WHERE + ".categories.cpu.normaliser.worst"),
    (_cat("cpu", {"normaliser": {**MINMAX, "midpoint": 0.5}}),
     WHERE + ".categories.cpu.normaliser.midpoint"),
    (_cat("cpu", {"normaliser": {"kind": "sigmoid", "midpoint": 0.5, "steepness": 0}}),
     WHERE + ".categories.cpu.normaliser.steepness"),
    (_cat("delay", {"normaliser": {"kind": "inverse", "best": -1.0}}),
     WHERE + ".categories.delay.normaliser.best"),
    ({"categories": {name: {"weight": 0} for name in ("cpu", "sessions", "queue", "delay")}},
     WHERE + ".categories"),
]


@pytest.mark.parametrize(("table", "key"), BAD, ids=[key.removeprefix(WHERE + ".") + f"-{i}"
                                                     for i, (_, key) in enumerate(BAD)])
def test_every_bad_input_is_rejected_naming_its_full_key(table: dict[str, Any], key: str) -> None:
    """Unknown keys and bad values raise ValidationError with the full dotted key."""
    with pytest.raises(ValidationError) as err:
        scoring_from_dict(table)
    assert err.value.field == key


def test_errors_use_the_callers_prefix() -> None:
    """The `where` argument prefixes every key an error names."""
    with pytest.raises(ValidationError) as err:
        scoring_from_dict({"aggregation": "max"}, where="scoring")
    assert err.value.field == "scoring.aggregation"
