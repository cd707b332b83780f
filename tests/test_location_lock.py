"""A registered instance's location is locked: packets from another port do not move it."""

from __future__ import annotations

from controller.network.packet import ARP_REQUEST, BROADCAST, build_arp
from controller.views import stats_view
from tests.helpers import HOSTS, arp_request, figure2_core

E21 = "10.0.0.21"


def _forged_arp(dpid: int, port: int, ip: str = E21) -> tuple[int, int, bytes]:
    """An ARP request claiming `ip` from an attacker's MAC, arriving at (dpid, port)."""
    return dpid, port, build_arp(ARP_REQUEST, "00:00:00:00:00:66", ip, BROADCAST, "10.0.0.254")


def test_forged_arp_from_another_port_does_not_move_an_instance() -> None:
    """c1's port claims e2's D-BID: the instance stays at (2, 2), the attempt is counted."""
    core = figure2_core()
    core.packet_in(2, 2, arp_request("e21", "10.0.0.254"), 1.0)  # seen where it registered
    dpid, port, frame = _forged_arp(*HOSTS["c1"][2:])
    core.packet_in(dpid, port, frame, 2.0)
    loc = core.topology.hosts[E21]
    assert (loc.dpid, loc.port, loc.mac) == (2, 2, HOSTS["e21"][1])
    assert stats_view(core)["host_moves_refused"] == 1


def test_after_its_agent_re_registers_the_instance_may_move() -> None:
    """Re-registration lets the next sighting place the instance anew (it moved), then locks
    it there again."""
    core = figure2_core()
    core.packet_in(2, 2, arp_request("e21", "10.0.0.254"), 1.0)
    core.register("10.0.100.1", E21, "dma", True, 2.0)
    core.packet_in(3, 1, build_arp(ARP_REQUEST, HOSTS["e21"][1], E21, BROADCAST,
                                   "10.0.0.254"), 3.0)
    assert (core.topology.hosts[E21].dpid, core.topology.hosts[E21].port) == (3, 1)
    dpid, port, frame = _forged_arp(2, 2)
    core.packet_in(dpid, port, frame, 4.0)
    assert (core.topology.hosts[E21].dpid, core.topology.hosts[E21].port) == (3, 1)


def test_an_unregistered_host_still_moves_freely() -> None:
    """A client is not locked: it is learned where it is seen last."""
    core = figure2_core()
    ip, mac, _, _ = HOSTS["c1"]
    core.packet_in(2, 1, build_arp(ARP_REQUEST, mac, ip, BROADCAST, "10.0.0.254"), 1.0)
    assert (core.topology.hosts[ip].dpid, core.topology.hosts[ip].port) == (2, 1)
    assert stats_view(core)["host_moves_refused"] == 0


def test_a_withdrawn_instance_is_no_longer_locked() -> None:
    """Once withdrawn, its address is an ordinary host again."""
    core = figure2_core()
    core.packet_in(2, 2, arp_request("e21", "10.0.0.254"), 1.0)
    core.withdraw(E21, 2.0)
    dpid, port, frame = _forged_arp(1, 1)
    core.packet_in(dpid, port, frame, 3.0)
    assert core.topology.hosts[E21].dpid == 1
