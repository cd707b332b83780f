"""`[controller.selection] pick = "per-flow"`: the dyncast policy sends each new flow to the
decision's cheapest candidate re-priced at the pick (controller/selection/perflow.py); the
default serves the decision's shares (docs/results/steering.md, "Choosing per flow")."""

from __future__ import annotations

from collections import Counter

from controller.config import ControllerConfig, SelectionConfig
from controller.core import Core
from controller.intents import VIRTUAL_MAC
from controller.model import Weights
from controller.selection import perflow
from controller.selection.engine import Candidate, Decision
from tests.fakeoftable import FakeNetwork
from tests.helpers import HOSTS, LINKS, PORTS, SVC1, SVC2, figure2_core, report, tcp_frame

E21, E31 = "10.0.0.21", "10.0.0.31"


def _burst(pick: str, hysteresis: float = 0.15, n: int = 10) -> list[str]:
    """svc1's two instances report at t = 1, both idle with two workers (e21 at the base
    delay, 10 ms; e31 reporting 20 ms); then `n` new TCP flows from c1 arrive at t = 1.01,
    before the next report. Each is sent through the switches' tables (a packet-in goes to
    the core, its intents into the tables, the packet again). Returns the instance each
    flow's packet reached."""
    core: Core = figure2_core(ControllerConfig(services=(SVC1, SVC2), selection=SelectionConfig(
        spread=0.3, sharpness=4.0, hysteresis=hysteresis, pick=pick)))
    net = FakeNetwork(LINKS)
    for dpid in PORTS:
        net.apply(core.switch_connected(dpid))
    net.apply(core.forwarding.sync_routes())
    report(core, E21, 1.0, sessions=0, capacity=2)
    report(core, E31, 1.0, sessions=0, capacity=2, delay=20.0)
    ip, mac, dpid, port = HOSTS["c1"]
    out = []
    for sport in range(30000, 30000 + n):
        fields = {"eth_type": 0x800, "ip_proto": 6, "eth_src": mac, "eth_dst": VIRTUAL_MAC,
                  "ipv4_src": ip, "ipv4_dst": SVC1.dsid, "tcp_src": sport, "tcp_dst": 8000}
        res = net.send(dpid, port, fields, 1.01)
        assert res.to_controller  # a new flow: the controller places it
        frame = tcp_frame(mac, VIRTUAL_MAC, ip, SVC1.dsid, sport, 8000)
        net.apply(core.packet_in(dpid, port, frame, 1.01), 1.01)
        out.append(str(net.send(dpid, port, fields, 1.01).only()["ipv4_dst"]))
    return out


def test_a_burst_between_two_reports_spreads_as_the_repriced_costs_say() -> None:
    """Both instances are two hops from c1 (equal network cost). With k flows placed since
    the report, two workers, the default estimate prices e21 at 10 * (1 + max(0, k - 1) / 2):
    10, 10, 15, 20, 25, 30 ms; e31 at max(that, its reported 20 ms): 20 until its fourth flow,
    then 25. The decision gives e21 the only share (e31 is 1.8x its cost, past the 0.3 spread),
    so the two cheapest usable are the candidates. Each flow goes to the cheaper as of its
    pick, a tie to the one with the share: e21 takes four (its fourth at 20 = e31's 20), then
    e31 four (20 < e21's 25), then e21 (25 = 25) and e31 (25 < 30)."""
    assert _burst("per-flow") == [E21] * 4 + [E31] * 4 + [E21, E31]


def test_the_default_serves_the_decisions_shares() -> None:
    """Same burst with the default pick and a hysteresis no placement exceeds (10): the
    decision in force is never taken again between the reports, and its one share takes every
    flow (per flow, e31 would have taken five of the ten)."""
    assert Counter(_burst("shares", hysteresis=10.0)) == Counter({E21: 10})
    assert Counter(_burst("per-flow", hysteresis=10.0)) == Counter({E21: 5, E31: 5})


def _candidate(dbid: str, network_ms: float, cost: float | None, share: float) -> Candidate:
    return Candidate(dbid, "active", network_ms, 0.0, cost, share, "selected")


def test_the_candidates_are_those_with_a_share_and_the_joint_cost_decides() -> None:
    """With two shares, a cheaper instance without one is not chosen; the network cost
    counts with its weight; a gone instance (no cost now) is skipped; ties go to the larger
    share."""
    d = Decision(1, "svc", (_candidate("a", 5.0, 15.0, 0.6), _candidate("b", 1.0, 16.0, 0.4),
                            _candidate("c", 1.0, 12.0, 0.0)), 0.0)
    now = {"a": 10.0, "b": 15.0, "c": 1.0}
    assert [c.dbid for c in perflow.candidates(d)] == ["a", "b"]
    assert perflow.pick(d, Weights(1.0, 1.0), now.get) == "a"  # 15 < 16
    assert perflow.pick(d, Weights(3.0, 1.0), now.get) == "b"  # 25 > 18
    assert perflow.pick(d, Weights(1.0, 1.0), {"b": 15.0}.get) == "b"
    assert perflow.pick(d, Weights(1.0, 1.0), {"a": 11.0, "b": 15.0}.get) == "a"  # 16 = 16
    assert perflow.pick(d, Weights(1.0, 1.0), {}.get) is None
