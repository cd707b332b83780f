"""Shared by the tests of a dyncast service's queue prices (test_marginal.py, test_allowance.py):
Figure 2 with a slow path to e31, and a stream of new flows from c1 sent through the tables."""

from __future__ import annotations

from controller.config import ControllerConfig, SelectionConfig
from controller.core import Core
from controller.intents import VIRTUAL_MAC
from controller.model import Metrics, Service
from controller.network.monitor import LinkConfig
from tests.fakeoftable import FakeNetwork
from tests.helpers import HOSTS, LINKS, PORTS, SVC1, SVC2, figure2_core, tcp_frame

E21, E31 = "10.0.0.21", "10.0.0.31"


def slow_path_core(queue_price: str, policy: str = "dyncast",
                   **selection: float) -> tuple[Core, FakeNetwork]:
    """Figure 2 with r3's uplink (3-4) at 30 ms: c1 reaches e21 in 2 ms (two hops) and e31 in
    31 ms. svc1 (base delay 10 ms) with `policy` and `queue_price` (and any other selection
    setting); both instances report two idle workers at t = 1, each serving in the base
    delay."""
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
        core.report(dbid, Metrics(cpu=0.0, sessions=0, queue=0, capacity=2), 1.0)
    return core, net


def stream(core: Core, net: FakeNetwork, n: int) -> list[str]:
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
