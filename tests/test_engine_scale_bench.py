"""The engine-scale benchmark checks what it measures: every instance attached and reachable,
every decision sharing flows, every figure there."""

from __future__ import annotations

import pytest

from bench.engine_scale import check, geometric_case, measure, populate, slope, topology


def test_a_generated_network_is_connected_and_every_figure_is_measured() -> None:
    """A small generated case runs through every column with positive figures."""
    case = geometric_case(30, 2, 3)
    figures = measure(case, repeat=1, link_repeat=3)  # (each change runs a full gc.collect)
    assert figures["decisions"] == 30 * 2
    assert all(v > 0 for v in figures.values())


def test_an_unattached_instance_fails_the_benchmark() -> None:
    """An instance the network does not know (no path from any ingress) exits 1."""
    case = geometric_case(20, 1, 3)
    core = topology(case)
    dbids = populate(core, case)
    core._recompute_all(1.0)
    check(core, case)  # all attached: passes
    del core.topology.hosts[dbids[0]]
    core._recompute_all(2.0)
    with pytest.raises(SystemExit) as stop:
        check(core, case)
    assert stop.value.code == 1


def test_the_growth_exponent_is_the_log_log_slope() -> None:
    """y = x^2 has slope 2."""
    assert slope([10.0, 100.0, 1000.0], [100.0, 1e4, 1e6]) == pytest.approx(2.0)
