"""`[controller.selection] queue_price = "marginal"`: a dyncast service prices an instance's
queue at its marginal cost, `mean * (1 + ahead / c)` (controller/selection/marginal.py); the
default (`"mean"`) prices it at the time a new request itself would take."""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path

import pytest

from apps.configfile import load_config
from controller.config import SelectionConfig
from controller.errors import ConfigError
from controller.model import Metrics
from controller.selection.marginal import applies, marginal_ms, queue_factor
from tests.pricing import E21, E31, slow_path_core, stream


def _metrics(sessions: int, queue: int, capacity: int, score: float | None = None) -> Metrics:
    return Metrics(cpu=0.0, sessions=sessions, queue=queue, capacity=capacity, score=score)


def test_the_marginal_cost_is_the_mean_times_the_queue_factor_the_mm1_t_over_1_minus_rho() -> None:
    """One worker with L requests there (one in service, L - 1 waiting): a new one takes
    s * (1 + L), which is the M/M/1 mean T = s / (1 - rho) at the mean count L = rho / (1 - rho);
    its marginal cost is T / (1 - rho) = s * (1 + L) ** 2. A free worker costs the mean; three
    workers, all busy and two waiting: three ahead, 1 + 3/3."""
    s = 10.0
    for rho in (0.5, 0.8, 0.9):
        count = rho / (1 - rho)  # the mean count in M/M/1 (an integer for these three)
        m = _metrics(1, round(count) - 1, 1)
        mean = s * queue_factor(m)
        assert mean == pytest.approx(s / (1 - rho))
        assert marginal_ms(mean, m) == pytest.approx(mean / (1 - rho))
    assert marginal_ms(30.0, _metrics(2, 0, 3)) == 30.0  # a worker is free: the mean
    assert queue_factor(_metrics(3, 2, 3)) == pytest.approx(2.0)
    assert marginal_ms(20.0, _metrics(3, 2, 3)) == pytest.approx(40.0)
    assert queue_factor(None) == 1.0


def test_only_a_dyncast_services_default_estimate_is_repriced() -> None:
    """p2c and least-loaded stand for other balancers and keep the mean; a score carries no
    counts; [controller.scoring] normalises the report its own way."""
    m = _metrics(3, 2, 3)
    assert applies("dyncast", m, False)
    for policy in ("p2c", "least-loaded", "nearest", "round-robin", "least-inflight"):
        assert not applies(policy, m, False)
    assert not applies("dyncast", _metrics(3, 2, 3, score=5.0), False)
    assert not applies("dyncast", m, True)
    assert not applies("dyncast", None, False)


def test_a_stream_that_fills_the_near_site_spills_across_the_slow_path_earlier() -> None:
    """e21 is near (2 ms) and e31 behind a 30 ms path, both 10 ms a request, two workers. With
    k flows placed on e21 since the report a new one there costs 10 * (1 + (k - 1) / 2) on
    average, that times (1 + (k - 1) / 2) at the margin; e31 costs 41 and gets a share once
    e21's cost is within the 0.3 spread of it (31.5 ms or more): after five flows on e21 at the
    mean (32 ms: the decision taken again gives e31 a share, served from the seventh flow),
    after three at the margin (42 ms: e31 is then the cheaper, from the fourth flow)."""
    mean = stream(*slow_path_core("mean"), 12)
    marg = stream(*slow_path_core("marginal"), 12)
    assert mean[:7] == [E21] * 6 + [E31]
    assert marg[:4] == [E21] * 3 + [E31]
    assert Counter(marg)[E31] > Counter(mean)[E31]


@pytest.mark.parametrize("policy", ["p2c", "least-loaded"])
def test_p2c_and_least_loaded_place_the_same_flows_with_either_price(policy: str) -> None:
    """The same stream under the baselines: the setting changes nothing they do (the compute
    cost they compare is the mean in both cases)."""
    assert stream(*slow_path_core("mean", policy), 12) == \
        stream(*slow_path_core("marginal", policy), 12)
    for price, dyncast_ms in (("mean", 25.0), ("marginal", 62.5)):
        for p, expected in ((policy, 25.0), ("dyncast", dyncast_ms)):
            core, _ = slow_path_core(price, p)
            core.report(E21, _metrics(2, 2, 2), 1.0)  # three ahead of a new one: 10 * 2.5
            svc, inst = core.catalogue.service("svc1"), core.catalogue.instances[E21]
            assert core.decisions.compute_ms(svc, inst, 1.0) == pytest.approx(expected)


def test_the_setting_is_validated_and_named(tmp_path: Path) -> None:
    """A value other than "mean" or "marginal" is refused naming the key."""
    path = tmp_path / "c.toml"
    path.write_text('[controller.selection]\nqueue_price = "average"\n')
    with pytest.raises(ConfigError, match=r"controller\.selection\.queue_price"):
        load_config(path)
    path.write_text('[controller.selection]\nqueue_price = "marginal"\n')
    assert load_config(path).selection.queue_price == "marginal"
    assert SelectionConfig().queue_price == "mean"


def test_a_service_changed_to_another_policy_is_priced_at_the_mean_at_once() -> None:
    """The compute costs kept per instance and report tell a dyncast service's from another's:
    a service changed from dyncast to p2c after its instance was priced reads the mean."""
    core, _ = slow_path_core("marginal")
    core.report(E21, _metrics(2, 2, 2), 1.0)
    svc, inst = core.catalogue.service("svc1"), core.catalogue.instances[E21]
    assert core.decisions.compute_ms(svc, inst, 1.0) == pytest.approx(62.5)
    core.put_service(dataclasses.replace(svc, policy="p2c"), False, 1.0)
    svc = core.catalogue.service("svc1")
    assert core.decisions.compute_ms(svc, inst, 1.0) == pytest.approx(25.0)
