"""`[controller.selection] queue_price = "allowance"`: a dyncast service prices the first
`wait_allowance` base delays of an instance's queue at what they take and every ms beyond at
`allowance_price` ms (controller/selection/allowance.py)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from apps.configfile import load_config
from controller.config import ControllerConfig, SelectionConfig
from controller.core import Core
from controller.errors import ConfigError
from controller.intents import VIRTUAL_MAC
from controller.model import Metrics, Service
from controller.network.monitor import LinkConfig
from controller.selection.allowance import allowance_ms, wait_ms
from tests.fakeoftable import FakeNetwork
from tests.helpers import HOSTS, LINKS, PORTS, SVC1, SVC2, figure2_core, tcp_frame

E21, E31 = "10.0.0.21", "10.0.0.31"


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


def _core(queue_price: str, policy: str = "dyncast", **selection: float) -> tuple[Core,
                                                                                  FakeNetwork]:
    """Figure 2 with r3's uplink (3-4) at 30 ms: c1 reaches e21 in 2 ms (two hops) and e31 in
    31 ms. svc1 (base delay 10 ms) with `policy`; both instances report two idle workers at
    t = 1, each serving in the base delay."""
    svc1 = Service(SVC1.name, SVC1.dsid, SVC1.protocol, SVC1.port, SVC1.affinity, policy=policy)
    cfg = ControllerConfig(services=(svc1, SVC2), links=(LinkConfig(3, 4, delay_ms=30.0),),
                           selection=SelectionConfig(spread=0.3, sharpness=4.0, hysteresis=0.15,
                                                     queue_price=queue_price, **selection))
    core = figure2_core(cfg)
    net = FakeNetwork(LINKS)
    for dpid in PORTS:
        net.apply(core.switch_connected(dpid))
    net.apply(core.forwarding.sync_routes())
    for dbid in (E21, E31):
        core.report(dbid, _metrics(0, 0, 2), 1.0)
    return core, net


def _stream(core: Core, net: FakeNetwork, n: int) -> list[str]:
    """`n` new TCP flows from c1 at t = 1.01, before the next report, each sent through the
    switches' tables (a packet-in to the core, its intents into the tables, the packet again).
    Returns the instance each flow's packet reached."""
    ip, mac, dpid, port = HOSTS["c1"]
    out = []
    for sport in range(30000, 30000 + n):
        fields = {"eth_type": 0x800, "ip_proto": 6, "eth_src": mac, "eth_dst": VIRTUAL_MAC,
                  "ipv4_src": ip, "ipv4_dst": SVC1.dsid, "tcp_src": sport, "tcp_dst": 8000}
        assert net.send(dpid, port, fields, 1.01).to_controller  # the controller places it
        frame = tcp_frame(mac, VIRTUAL_MAC, ip, SVC1.dsid, sport, 8000)
        net.apply(core.packet_in(dpid, port, frame, 1.01), 1.01)
        out.append(str(net.send(dpid, port, fields, 1.01).only()["ipv4_dst"]))
    return out


def test_a_near_queue_past_its_allowance_sends_new_flows_across_the_slow_path() -> None:
    """With k flows placed on e21 since the report a new one waits 5 * (k - 1) ms there. At the
    mean e31 (41 ms) shares new flows only once e21 costs within the 0.3 spread of it (after
    five flows). With one base delay (10 ms) allowed, the fourth flow's 15 ms wait is 5 beyond:
    2 + 25 + 4 * 5 = 47 ms, and e31, the cheaper, takes the fifth; the near queue stays within
    what it is allowed, so more of the stream crosses."""
    mean = _stream(*_core("mean"), 12)
    allowed = _stream(*_core("allowance"), 12)
    assert mean[:7] == [E21] * 6 + [E31]
    assert allowed[:5] == [E21] * 4 + [E31]
    assert Counter(allowed)[E31] > Counter(mean)[E31]


def test_an_allowance_longer_than_any_queue_is_the_mean() -> None:
    """Allowed 100 base delays, no queue of the stream reaches it: the same flows as the mean."""
    assert _stream(*_core("allowance", wait_allowance=100.0), 12) == _stream(*_core("mean"), 12)


@pytest.mark.parametrize("policy", ["p2c", "least-loaded"])
def test_p2c_and_least_loaded_place_the_same_flows_with_an_allowance(policy: str) -> None:
    """The baselines compare the mean estimate whatever `queue_price` says."""
    assert _stream(*_core("allowance", policy), 12) == _stream(*_core("mean", policy), 12)
    core, _ = _core("allowance", policy)
    core.report(E21, _metrics(2, 2, 2), 1.0)  # three ahead of a new one: 10 * 2.5
    svc, inst = core.catalogue.service("svc1"), core.catalogue.instances[E21]
    assert core.decisions.compute_ms(svc, inst, 1.0) == pytest.approx(25.0)
    core, _ = _core("allowance")
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
