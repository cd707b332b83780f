"""The decision engine: joint choice, spread, hysteresis, staleness."""

from __future__ import annotations

from collections import Counter

import pytest

from controller.model import Metrics, Weights
from controller.selection.engine import (
    CandidateInput,
    Chooser,
    Engine,
    compute_ms,
    decide,
    estimate_compute_ms,
)
from controller.selection.scoring import ScoringConfig

# CATS worked example: (compute, network) delays in ms for three sites, 20 ms budget.
SITES = {"site1": (4.0, 9.0), "site2": (10.0, 4.0), "site3": (5.0, 5.0)}


def _inputs(states: dict[str, str] | None = None) -> list[CandidateInput]:
    states = states or {}
    return [CandidateInput(name, states.get(name, "active"), net, comp)
            for name, (comp, net) in SITES.items()]


def test_cats_example_compute_only_picks_site1() -> None:
    """Weighing compute alone, the least loaded site (site 1) is chosen."""
    d = decide(1, "svc", Weights(network=0.0, compute=1.0), _inputs(), 0.0, 4.0, 0.0)
    assert d.primary == "site1"
    assert set(d.shares) == {"site1"}


def test_cats_example_network_only_picks_site2() -> None:
    """Weighing network alone, the nearest site (site 2) is chosen."""
    d = decide(1, "svc", Weights(network=1.0, compute=0.0), _inputs(), 0.0, 4.0, 0.0)
    assert d.primary == "site2"


def test_cats_example_joint_choice_picks_site3() -> None:
    """Weighing both, site 3 (5 + 5 = 10 ms) wins over 13 and 14 ms, and within budget."""
    d = decide(1, "svc", Weights(), _inputs(), 0.0, 4.0, 0.0)
    assert d.primary == "site3"
    costs = {c.dbid: c.cost for c in d.candidates}
    assert costs == {"site1": 13.0, "site2": 14.0, "site3": 10.0}
    assert all(c <= 20.0 for c in costs.values() if c is not None)


def test_spread_shares_flows_among_good_instances_in_proportion() -> None:
    """Within `spread` of the best, instances share new flows by (best/cost)^sharpness."""
    d = decide(1, "svc", Weights(), _inputs(), 0.35, 4.0, 0.0)
    assert set(d.shares) == {"site1", "site3"}  # 13 <= 13.5, 14 > 13.5
    assert abs(d.shares["site1"] / d.shares["site3"] - (10 / 13) ** 4) < 1e-9


def test_many_new_flows_between_updates_are_spread_not_herded() -> None:
    """A burst of 1000 new flows lands on each instance in proportion to its share."""
    engine = Engine(spread=1.0, sharpness=1.0, hysteresis=0.1)
    inputs = [CandidateInput("a", "active", 1.0, 9.0), CandidateInput("b", "active", 1.0, 9.0)]
    engine.update(1, "svc", Weights(), inputs, 0.0)
    picks = Counter(engine.pick(1, "svc") for _ in range(1000))
    assert picks == {"a": 500, "b": 500}


def test_chooser_follows_unequal_shares_exactly() -> None:
    """Smooth weighted round robin serves 3:1 shares as 75/25 over any 4k picks."""
    chooser = Chooser({"a": 0.75, "b": 0.25})
    picks = Counter(chooser.pick() for _ in range(400))
    assert picks == {"a": 300, "b": 100}


def test_hysteresis_keeps_decision_under_small_changes() -> None:
    """A cost change smaller than the hysteresis leaves the decision in force unchanged."""
    engine = Engine(spread=0.3, sharpness=4.0, hysteresis=0.15)
    assert engine.update(1, "svc", Weights(), _inputs(), 0.0)
    first = engine.decisions[(1, "svc")]
    jitter = [CandidateInput(i.dbid, i.state, i.network_ms, i.compute_ms * 1.1)
              for i in _inputs()]
    assert not engine.update(1, "svc", Weights(), jitter, 1.0)
    assert engine.decisions[(1, "svc")] is first


def test_hysteresis_yields_to_a_large_change() -> None:
    """A cost change beyond the hysteresis replaces the decision."""
    engine = Engine(spread=0.3, sharpness=4.0, hysteresis=0.15)
    engine.update(1, "svc", Weights(), _inputs(), 0.0)
    loaded = [CandidateInput(i.dbid, i.state, i.network_ms,
                             i.compute_ms * (3 if i.dbid == "site3" else 1)) for i in _inputs()]
    assert engine.update(1, "svc", Weights(), loaded, 1.0)
    assert engine.decisions[(1, "svc")].primary == "site1"


def test_stale_instance_gets_no_flows_while_another_is_usable() -> None:
    """An instance in state `unknown` is skipped while an active one exists."""
    d = decide(1, "svc", Weights(), _inputs({"site3": "unknown"}), 0.3, 4.0, 0.0)
    assert "site3" not in d.shares and d.primary == "site1"


def test_stale_instances_are_a_fallback_when_nothing_else_is_usable() -> None:
    """When no instance is active, the unknown ones are used rather than dropping demands."""
    states = {"site1": "unknown", "site2": "inactive", "site3": "unknown"}
    d = decide(1, "svc", Weights(), _inputs(states), 0.3, 4.0, 0.0)
    assert d.primary == "site3" and "site2" not in d.shares


def test_unreachable_instance_is_never_chosen() -> None:
    """An instance with no path from the ingress gets no share."""
    inputs = [CandidateInput("a", "active", None, 1.0), CandidateInput("b", "active", 50.0, 50.0)]
    d = decide(1, "svc", Weights(), inputs, 0.3, 4.0, 0.0)
    assert d.shares == {"b": 1.0}


def test_compute_estimate_grows_with_the_backlog_and_honours_reported_delay() -> None:
    """A snapshot with a free worker costs the base delay; once every worker is busy each
    request ahead adds base / c (the c workers finish one every base / c); a reported delay
    is a floor."""
    loads = [estimate_compute_ms(Metrics(0.0, s, 0, 10), 10.0) for s in range(11)]
    assert loads == [10.0] * 10 + [11.0]
    queued = [estimate_compute_ms(Metrics(0.0, 10, q, 10), 10.0) for q in range(4)]
    assert queued == pytest.approx([11.0, 12.0, 13.0, 14.0])
    assert estimate_compute_ms(Metrics(0.0, 3, 2, 3), 100.0) == pytest.approx(200.0)
    assert estimate_compute_ms(Metrics(0.0, 0, 0, 10, processing_delay_ms=70.0), 10.0) == 70.0
    assert estimate_compute_ms(Metrics(0.0, 10, 5, 10, processing_delay_ms=12.0), 10.0) == 16.0
    assert estimate_compute_ms(None, 7.0) == 7.0


def test_an_emptied_instance_with_a_high_lagging_average_is_priced_below_a_full_one() -> None:
    """Issue 17: an instance whose queue just emptied still reports the average delay of its
    queued past (1,200 ms), a full one a low average (142 ms) of requests that did not wait
    yet; with the service time beside them the counts decide: the emptied one is cheaper, by
    the queue the full one has."""
    emptied = Metrics(0.0, 1, 0, 4, processing_delay_ms=1200.0, service_ms=700.0)
    full = Metrics(1.0, 4, 9, 4, processing_delay_ms=142.0, service_ms=700.0)
    assert estimate_compute_ms(emptied, 10.0) == pytest.approx(700.0)
    assert estimate_compute_ms(full, 10.0) == pytest.approx(700.0 * (1 + 10 / 4))
    assert estimate_compute_ms(emptied, 10.0) < estimate_compute_ms(full, 10.0)
    # the service time prices every request ahead; the CPU is not counted again (the service
    # time was measured under it)
    assert estimate_compute_ms(Metrics(0.9, 0, 0, 4, service_ms=50.0), 10.0) == 50.0
    assert estimate_compute_ms(Metrics(0.0, 4, 3, 4, service_ms=40.0), 10.0) == 80.0


def test_service_time_raises_score_based_costs_as_a_floor() -> None:
    """A level-2 score is floored by what the instance's own service time and queue imply."""
    m = Metrics(0.0, 2, 2, 2, score=10.0, service_ms=30.0)
    assert compute_ms(m, 10.0, ScoringConfig()) == pytest.approx(30.0 * 2.5)
    assert compute_ms(Metrics(score=5.0, service_ms=1.0), 10.0, ScoringConfig()) == 20.0


@pytest.mark.parametrize("cpu", [0.0, 0.3, 0.6, 0.9, 1.0])
def test_one_server_is_the_m_m_1_estimate(cpu: float) -> None:
    """With capacity 1 (a D-MA that reports CPU only) the estimate is base / (1 - u), u capped
    at 0.95."""
    u = min(0.95, cpu)
    assert estimate_compute_ms(Metrics(cpu, 0, 0, 1), 10.0) == pytest.approx(10.0 / (1 - u))


def test_cpu_the_busy_workers_do_not_explain_stretches_the_service() -> None:
    """CPU that the busy workers account for (sessions / c) is counted once, by the state;
    the rest is other work sharing the processors: the service takes 1 / (1 - rest) longer."""
    # two workers, one busy: 50 % is that worker, nothing else
    assert estimate_compute_ms(Metrics(0.5, 1, 0, 2), 100.0) == pytest.approx(100.0)
    # the same with 80 %: 30 % is other work
    assert estimate_compute_ms(Metrics(0.8, 1, 0, 2), 100.0) == pytest.approx(100.0 / 0.7)
    # every worker busy and 100 %: the wait for the first to finish, not a saturated queue
    assert estimate_compute_ms(Metrics(1.0, 2, 1, 2), 100.0) == pytest.approx(200.0)
    # a free worker and 20 % other work: 1 / (1 - 0.2)
    assert estimate_compute_ms(Metrics(0.7, 1, 0, 2), 100.0) == pytest.approx(125.0)
    # CPU below the busy workers' share (a sample taken between them) counts nothing extra
    assert estimate_compute_ms(Metrics(0.1, 2, 0, 4), 100.0) == pytest.approx(100.0)


def test_a_snapshot_of_every_worker_busy_is_not_a_full_utilisation() -> None:
    """Three workers all busy in the report: the next request waits for the first to finish
    (a third of the base delay), not the ~6 base delays of an M/M/3 queue at 95 %."""
    assert estimate_compute_ms(Metrics(0.0, 3, 0, 3), 100.0) == pytest.approx(133.3, abs=0.1)
    assert estimate_compute_ms(Metrics(0.0, 1, 0, 1), 100.0) == pytest.approx(200.0)
