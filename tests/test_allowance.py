"""`[controller.selection] queue_price = "allowance"`: a dyncast service prices the first
`wait_allowance` base delays of an instance's queue at what they take and every ms beyond at
`allowance_price` ms (controller/selection/allowance.py)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from apps.configfile import load_config
from controller.errors import ConfigError
from controller.model import Metrics
from controller.selection.allowance import allowance_ms, wait_ms
from tests.pricing import E21, E31, slow_path_core, stream


def _metrics(sessions: int, queue: int, capacity: int) -> Metrics:
    return Metrics(cpu=0.0, sessions=sessions, queue=queue, capacity=capacity)


def test_the_wait_within_the_allowance_costs_what_it_takes_and_beyond_it_the_price() -> None:
    """Three workers, all busy and two waiting: a new request waits three of the 10 ms service
    times over three workers, 10 ms, and costs 20. Within an allowance of 10 ms or more it
    costs 20; with 4 ms allowed the 6 ms beyond cost 5 each: 20 + 4 * 6. A free worker: no
    wait, no change whatever the allowance."""
    busy = _metrics(3, 2, 3)
    assert wait_ms(20.0, busy) == pytest.approx(10.0)
    assert allowance_ms(20.0, busy, 10.0, 5.0) == pytest.approx(20.0)
    assert allowance_ms(20.0, busy, 4.0, 5.0) == pytest.approx(44.0)
    assert allowance_ms(20.0, busy, 0.0, 1.0) == pytest.approx(20.0)  # price 1: the mean
    assert allowance_ms(10.0, _metrics(2, 0, 3), 0.0, 5.0) == 10.0
    assert wait_ms(10.0, None) == 0.0


def test_a_near_queue_past_its_allowance_sends_new_flows_across_the_slow_path() -> None:
    """With k flows placed on e21 since the report a new one waits 5 * (k - 1) ms there. At the
    mean e31 (41 ms) shares new flows only once e21 costs within the 0.3 spread of it (after
    five flows). With one base delay (10 ms) allowed, the fourth flow's 15 ms wait is 5 beyond:
    2 + 25 + 4 * 5 = 47 ms, and e31, the cheaper, takes the fifth; the near queue stays within
    what it is allowed, so more of the stream crosses."""
    mean = stream(*slow_path_core("mean"), 12)
    allowed = stream(*slow_path_core("allowance"), 12)
    assert mean[:7] == [E21] * 6 + [E31]
    assert allowed[:5] == [E21] * 4 + [E31]
    assert Counter(allowed)[E31] > Counter(mean)[E31]


def test_an_allowance_longer_than_any_queue_is_the_mean() -> None:
    """Allowed 100 base delays, no queue of the stream reaches it: the same flows as the mean."""
    assert stream(*slow_path_core("allowance", wait_allowance=100.0), 12) == \
        stream(*slow_path_core("mean"), 12)


@pytest.mark.parametrize("policy", ["p2c", "least-loaded"])
def test_p2c_and_least_loaded_place_the_same_flows_with_an_allowance(policy: str) -> None:
    """The baselines compare the mean estimate whatever `queue_price` says."""
    assert stream(*slow_path_core("allowance", policy), 12) == \
        stream(*slow_path_core("mean", policy), 12)
    core, _ = slow_path_core("allowance", policy)
    core.report(E21, _metrics(2, 2, 2), 1.0)  # three ahead of a new one: 10 * 2.5
    svc, inst = core.catalogue.service("svc1"), core.catalogue.instances[E21]
    assert core.decisions.compute_ms(svc, inst, 1.0) == pytest.approx(25.0)
    core, _ = slow_path_core("allowance")
    core.report(E21, _metrics(2, 2, 2), 1.0)  # 15 ms waited, 5 beyond: 25 + 4 * 5
    svc, inst = core.catalogue.service("svc1"), core.catalogue.instances[E21]
    assert core.decisions.compute_ms(svc, inst, 1.0) == pytest.approx(45.0)


@pytest.mark.parametrize(("text", "key"), [
    ('queue_price = "tail"', "queue_price"),
    ("wait_allowance = -1", "wait_allowance"),
    ("wait_allowance = 101", "wait_allowance"),
    ('wait_allowance = "one"', "wait_allowance"),
    ("allowance_price = 0.5", "allowance_price"),
    ("allowance_price = true", "allowance_price"),
])
def test_a_bad_setting_is_refused_naming_its_key(tmp_path: Path, text: str, key: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(f"[controller.selection]\n{text}\n")
    with pytest.raises(ConfigError, match=rf"controller\.selection\.{key}"):
        load_config(path)


def test_the_settings_are_read(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[controller.selection]\nqueue_price = "allowance"\nwait_allowance = 0.5\n'
                    "allowance_price = 8\n")
    sel = load_config(path).selection
    assert (sel.queue_price, sel.wait_allowance, sel.allowance_price) == ("allowance", 0.5, 8.0)
