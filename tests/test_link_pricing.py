"""How a congested link is priced: the congestion part `scale * u / (1 - u)`, with `scale` a
fixed `congestion_ms` or, with `congestion_ms = "packet"`, the time to send one full-size
packet at the link's capacity (the M/M/1 queue's mean wait), checked against the formula."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from apps.configfile import load_config
from controller.errors import ConfigError
from controller.network.linkstats import packet_ms
from controller.network.monitor import LinkConfig, MonitorSettings, NetworkMonitor
from tests.helpers import FAILURES_CFG, all_fresh, figure2_core


def test_one_packet_takes_1_2_ms_at_10_mbit_and_a_hundredth_of_that_at_1_gbit() -> None:
    assert packet_ms(10e6) == pytest.approx(1.2)
    assert packet_ms(1e9) == pytest.approx(0.012)
    assert packet_ms(None) is None and packet_ms(0.0) is None


def _loaded(settings: MonitorSettings, bps: float) -> NetworkMonitor:
    """A monitor that has seen port 1 of switches 1 and 3 send `bps` for one second."""
    monitor = NetworkMonitor(settings)
    for dpid in (1, 3):
        monitor.rates.update(dpid, 1, 0, 0, 0.0)
        monitor.rates.update(dpid, 1, int(bps / 8), 0, 1.0)
    return monitor


def test_per_packet_pricing_scales_each_link_by_its_own_capacity() -> None:
    """Two links at 90 % of their capacity: the 10 Mbit/s one's queue costs ten times the
    100 Mbit/s one's (1.2 ms x 9 against 0.12 ms x 9); a fixed congestion_ms prices both alike."""
    links = (LinkConfig(1, 2, capacity_mbps=10.0), LinkConfig(3, 4, capacity_mbps=100.0))
    slow = _loaded(MonitorSettings(links=links, congestion_ms=None), 9e6)
    fast = _loaded(MonitorSettings(links=links, congestion_ms=None), 90e6)
    assert slow.parts(((1, 1), (2, 1)))["congestion_ms"] == pytest.approx(1.2 * 9)
    assert fast.parts(((3, 1), (4, 1)))["congestion_ms"] == pytest.approx(0.12 * 9)
    fixed = _loaded(MonitorSettings(links=links, congestion_ms=10.0), 9e6)
    assert fixed.parts(((1, 1), (2, 1)))["congestion_ms"] == pytest.approx(90.0)
    unknown = _loaded(MonitorSettings(congestion_ms=None), 9e6)  # no capacity: no congestion
    assert unknown.parts(((1, 1), (2, 1)))["congestion_ms"] == 0.0


def test_a_decision_prices_a_busy_10_mbit_uplink_at_nine_packets() -> None:
    """r1's uplink at 90 % (9 Mbit/s of 10): the paths across it carry the M/M/1 wait of
    one-packet jobs, 1.2 ms x 0.9 / 0.1, in the decision's network parts and its network_ms."""
    core = figure2_core(dataclasses.replace(FAILURES_CFG, congestion_ms=None))
    all_fresh(core, 1.0)
    core.port_stats(1, [(10, 0, 0)], 1.0)
    core.port_stats(1, [(10, 1_125_000, 0)], 2.0)
    core.flush(2.0)
    rows = {c.dbid: c.to_dict() for c in core.engine.decisions[(1, "svc1")].candidates}
    far = rows["10.0.0.31"]
    assert far["network"]["congestion_ms"] == pytest.approx(1.2 * 0.9 / 0.1)
    assert far["network_ms"] == pytest.approx(sum(v for k, v in far["network"].items()
                                                  if k != "hops"))


@pytest.mark.parametrize(("value", "expected"), [('"packet"', None), ("3", 3.0), ("0", 0.0)])
def test_congestion_ms_is_a_number_or_packet(tmp_path: Path, value: str,
                                             expected: float | None) -> None:
    path = tmp_path / "dyncast.toml"
    path.write_text(f"[controller]\ncongestion_ms = {value}\n")
    assert load_config(path).congestion_ms == expected


@pytest.mark.parametrize("value", ['"fast"', "-1", "true"])
def test_a_bad_congestion_ms_names_the_key(tmp_path: Path, value: str) -> None:
    path = tmp_path / "dyncast.toml"
    path.write_text(f"[controller]\ncongestion_ms = {value}\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert err.value.field == "controller.congestion_ms"
