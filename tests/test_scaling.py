"""Reactivation and scale-in policy with a fake clock: holds, cool-downs, no flapping."""

from __future__ import annotations

import pytest

from controller.errors import ValidationError
from controller.instances.scaling import Member, Scaler, load_of
from controller.model import Metrics, ScalingPolicy, scaling_from_dict

POLICY = ScalingPolicy(high=0.8, low=0.2, hold_s=5.0, cooldown_s=30.0, scale_in=True,
                       min_active=1)


def members(a: float, b: float, spare: str = "inactive") -> list[Member]:
    """Two active instances at loads a and b, and a third in state `spare`."""
    return [Member("10.0.0.21", "active", a, 1.0), Member("10.0.0.31", "active", b, 0.5),
            Member("10.0.0.41", spare, None, -4.0), Member("10.0.0.51", "inactive", None, -9.0)]


def run(scaler: Scaler, loads: list[tuple[float, float]], step: float = 1.0,
        start: float = 0.0) -> list[tuple[float, str, str]]:
    """Feed one (load a, load b) per `step` seconds; return the actions taken."""
    out = []
    for i, (a, b) in enumerate(loads):
        now = start + i * step
        action = scaler.evaluate("svc1", POLICY, members(a, b), now)
        if action is not None:
            out.append((now, action.op, action.dbid))
    return out


def test_reactivates_the_best_inactive_instance_after_the_hold() -> None:
    """Both active instances above `high` for hold_s: the nearest inactive one is triggered."""
    assert run(Scaler(), [(0.9, 0.85)] * 7) == [(5.0, "reactivate", "10.0.0.41")]


def test_one_busy_instance_is_not_enough() -> None:
    """Only when every active instance is above the threshold does reactivation start."""
    assert run(Scaler(), [(0.95, 0.5)] * 20) == []


def test_load_oscillating_around_the_threshold_never_triggers() -> None:
    """Load crossing `high` back and forth, below it on average, triggers nothing; nor does a
    load whose average sits between `low` and `high`."""
    wave = [(0.9, 0.95), (0.9, 0.95), (0.5, 0.55)] * 20  # mean 0.79
    assert run(Scaler(), wave) == []
    assert run(Scaler(), [(0.9, 0.1), (0.1, 0.9)] * 30) == []


def test_overload_of_short_requests_reactivates_although_no_instance_stays_full() -> None:
    """Each instance swings between overloaded (requests queued) and momentarily empty, never
    above `high` for as long as hold_s; the service's mean load is 0.94: one reactivation,
    after hold_s, and the next only after the cool-down."""
    swing = [(1.6, 0.1), (0.1, 1.9), (1.8, 0.2), (0.0, 1.8)] * 15
    loads = [(a + b) / 2 for a, b in swing]
    assert abs(sum(loads) / len(loads) - 0.94) < 0.01
    assert run(Scaler(), swing) == [(5.0, "reactivate", "10.0.0.41"),
                                    (35.0, "reactivate", "10.0.0.41")]


def test_an_instance_without_a_report_restarts_the_window() -> None:
    """Nothing is judged on partial evidence: a missing report starts the hold again."""
    scaler = Scaler()
    assert run(scaler, [(0.9, 0.9)] * 4) == []
    gap = [Member("10.0.0.21", "active", None, 1.0), Member("10.0.0.41", "inactive", None, 0.0)]
    assert scaler.evaluate("svc1", POLICY, gap, 4.0) is None
    assert run(scaler, [(0.9, 0.9)] * 7, start=5.0) == [(10.0, "reactivate", "10.0.0.41")]


def test_cooldown_separates_two_reactivations() -> None:
    """Sustained overload wakes one instance, then waits cooldown_s before the next."""
    actions = run(Scaler(), [(0.9, 0.9)] * 60)
    assert [a[0] for a in actions] == [5.0, 35.0]


def test_nothing_new_while_an_instance_is_activating_or_retiring() -> None:
    """One change at a time: an activating or retiring instance blocks further actions."""
    scaler = Scaler()
    busy = [Member("a", "active", 0.9, 1.0), Member("b", "activating", None, 0.0),
            Member("c", "inactive", None, 0.0)]
    assert all(scaler.evaluate("s", POLICY, busy, t) is None for t in range(0, 100, 5))
    retiring = [Member("a", "active", 0.9, 1.0), Member("b", "draining", 0.1, 0.0,
                                                            retiring=True),
                Member("c", "inactive", None, 0.0)]
    assert all(scaler.evaluate("t", POLICY, retiring, t) is None for t in range(0, 100, 5))


def test_scale_in_drains_the_least_useful_instance_when_load_stays_low() -> None:
    """All active below `low` for hold_s, more than min_active: the lowest-merit one drains."""
    assert run(Scaler(), [(0.1, 0.05)] * 7) == [(5.0, "drain", "10.0.0.31")]


def test_scale_in_respects_min_active_and_its_switch() -> None:
    """Never below min_active; nothing at all when scale_in is off."""
    one = [Member("a", "active", 0.0, 1.0), Member("b", "inactive", None, 0.0)]
    scaler = Scaler()
    assert all(scaler.evaluate("s", POLICY, one, t) is None for t in range(20))
    off = ScalingPolicy(hold_s=1.0, cooldown_s=0.0, scale_in=False)
    two = [Member("a", "active", 0.0, 1.0), Member("b", "active", 0.0, 0.5)]
    assert all(scaler.evaluate("s", off, two, t) is None for t in range(20))


def test_reactivation_then_low_load_waits_for_the_cooldown_before_scale_in() -> None:
    """A load that jumps from high to low right after a reactivation does not undo it at once."""
    loads = [(0.9, 0.9)] * 6 + [(0.05, 0.05)] * 40
    actions = run(Scaler(), loads)
    assert actions[0] == (5.0, "reactivate", "10.0.0.41")
    assert actions[1][1] == "drain" and actions[1][0] >= 35.0


def test_no_spare_no_action_and_unknown_load_is_not_busy() -> None:
    """Without an inactive instance (or with an unreported load) nothing happens."""
    scaler = Scaler()
    busy = [Member("a", "active", 0.9, 1.0), Member("b", "active", None, 1.0),
            Member("c", "inactive", None, 0.0)]
    assert all(scaler.evaluate("s", POLICY, busy, t) is None for t in range(20))
    no_spare = [Member("a", "active", 0.9, 1.0), Member("c", "inactive", None, 0.0,
                                                        can_start=False)]
    assert all(scaler.evaluate("u", POLICY, no_spare, t) is None for t in range(20))


def test_load_comes_from_raw_metrics_or_the_level2_score() -> None:
    """Load = max(cpu, sessions/capacity), or 1 - score/10."""
    assert load_of(Metrics(cpu=0.3, sessions=6, capacity=8)) == pytest.approx(0.75)
    assert load_of(Metrics(cpu=0.9, sessions=1, capacity=8)) == pytest.approx(0.9)
    assert load_of(Metrics(score=7.5)) == pytest.approx(0.25)
    assert load_of(None) is None


def test_policy_parsing_rejects_bad_values_naming_the_key() -> None:
    """Unknown keys, low >= high, and wrong types are errors that name the key."""
    assert scaling_from_dict({"high": 0.7, "scale_in": True}).scale_in
    for bad, key in (({"high": 0.5, "low": 0.6}, "scaling.low"), ({"hgh": 1}, "scaling.hgh"),
                     ({"scale_in": "yes"}, "scaling.scale_in"),
                     ({"min_active": 0}, "scaling.min_active"),
                     ({"cooldown_s": -1}, "scaling.cooldown_s")):
        with pytest.raises(ValidationError) as err:
            scaling_from_dict(bad)
        assert err.value.field == key
