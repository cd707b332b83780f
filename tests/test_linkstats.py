"""Link measurements: counter deltas with wrap and reset, utilisation, delay, cost."""

from __future__ import annotations

import pytest

from controller.network.linkstats import (
    PortRates,
    counter_delta,
    link_cost_ms,
    link_delay_ms,
    utilisation,
)

TOP = 1 << 64


def test_counter_delta_plain_wrap_and_reset() -> None:
    """A rising counter gives its difference; a wrap near the top counts through zero;
    a drop from the middle of the range is a reset (None)."""
    assert counter_delta(100, 250) == 150
    assert counter_delta(TOP - 10, 5) == 15
    assert counter_delta(5_000_000, 1000) is None


def test_rates_from_successive_samples() -> None:
    """1,250,000 bytes in one second is 10 Mbit/s."""
    rates = PortRates()
    rates.update(1, 2, 0, 0, 10.0)
    assert rates.tx_bps(1, 2) is None  # one sample is no rate yet
    rates.update(1, 2, 1_250_000, 625_000, 11.0)
    assert rates.rates[(1, 2)] == (10_000_000.0, 5_000_000.0)


def test_rate_across_a_counter_wrap() -> None:
    """A 64-bit wrap between samples still gives the true rate."""
    rates = PortRates()
    rates.update(1, 1, TOP - 500, 0, 0.0)
    rates.update(1, 1, 500, 0, 1.0)
    assert rates.tx_bps(1, 1) == 8000.0


def test_switch_reset_starts_a_new_baseline() -> None:
    """After a reset the port has no rate until the next interval, then a correct one."""
    rates = PortRates()
    rates.update(1, 1, 9_000_000, 0, 0.0)
    rates.update(1, 1, 10_000_000, 0, 1.0)
    rates.update(1, 1, 100, 0, 2.0)  # the switch restarted
    assert rates.tx_bps(1, 1) is None
    rates.update(1, 1, 1100, 0, 3.0)
    assert rates.tx_bps(1, 1) == 8000.0


def test_utilisation_needs_a_capacity() -> None:
    """Utilisation is the rate over the capacity; unknown capacity gives None."""
    assert utilisation(5e6, 10e6) == 0.5
    assert utilisation(5e6, None) is None and utilisation(5e6, 0.0) is None


def test_link_delay_subtracts_half_of_each_control_round_trip() -> None:
    """12 ms transit with 4 ms and 6 ms control round trips leaves 7 ms on the link."""
    assert link_delay_ms(100.0, 100.012, 0.004, 0.006) == pytest.approx(7.0)
    assert link_delay_ms(100.0, 100.001, 0.004, 0.006) == 0.0  # never negative
    assert link_delay_ms(100.0, 100.012, None, 0.006) is None


def test_link_cost_grows_with_congestion() -> None:
    """An idle link costs its delay; a half-full one adds congestion_ms; it is capped near full."""
    assert link_cost_ms(2.0, 0.0, 10.0) == 2.0
    assert link_cost_ms(2.0, 0.5, 10.0) == pytest.approx(12.0)
    assert link_cost_ms(2.0, 3.0, 10.0) == pytest.approx(2.0 + 10.0 * 19.0)
    assert link_cost_ms(2.0, None, 10.0) == 2.0
