"""A switch away longer than `switch_grace_s` is forgotten with its hosts; when it comes back,
the hosts it had are put back where they were (controller/network/network.py, `_recall`).

Found in Mininet on an unseen mesh: a `reactive` ingress whose control channel was closed for
20 s (grace 15 s). Its clients only received on held connections: their ACKs match their
bindings and never reach the controller, so after the switch came back nothing placed them
again, and the instances' data found no route to them until the sender's TCP, backed off, hit
a route miss that probed them: 13-16 s of silence after the switch was back.
"""

from __future__ import annotations

from controller.config import ControllerConfig
from controller.network.packet import BROADCAST
from tests.fakeoftable import FakeOFTable, frame_of
from tests.helpers import HOSTS, PORTS
from tests.test_pipelines import DSID, E21, FLOWS, SERVICES, Figure2, arp, connect, to_dsid
from tests.test_reconcile import reconcile

C1_INGRESS = 1
GRACE_S = ControllerConfig().switch_grace_s


def _forgotten_and_back(fig: Figure2, dpid: int, placed: dict[int, str],
                        table: FakeOFTable | None = None) -> None:
    """`dpid`'s control channel closes for longer than the grace period, its data plane
    forwarding on (the held flows' packets every second, until the last second); then it
    reconnects, its table read and repaired."""
    fig.apply(fig.core.switch_left(dpid, fig.now))
    end = fig.now + GRACE_S + 1
    while fig.now < end - 2:
        fig.advance(fig.now + 1)
        assert {s: fig.go(s)[0] for s in placed} == placed
    fig.advance(end)
    assert dpid not in fig.core.topology.ports  # forgotten
    if table is not None:
        fig.net.switches[dpid] = table
    fig.apply(fig.core.switch_connected(dpid, reads_table=True))
    fig.apply(fig.core.switch_ports(dpid, PORTS[dpid], fig.now))
    reconcile(fig, dpid)


def test_a_client_that_only_receives_hears_its_instance_as_soon_as_its_switch_is_back() -> None:
    """The instances' data on held connections reaches the client again, from the D-SID, once
    its ingress is back after its grace period, before the client sends anything."""
    fig = Figure2(SERVICES["reactive"])
    placed = connect(fig, FLOWS[:4])
    at_instance = {s: fig.send("c1", to_dsid("c1", s)).only() for s in placed}
    _forgotten_and_back(fig, C1_INGRESS, placed)
    c1_ip, _, dpid, port = HOSTS["c1"]
    for sport, hop in at_instance.items():
        res = fig.reply(hop)
        assert res.is_output(port, dpid, ipv4_src=DSID, ipv4_dst=c1_ip, tcp_dst=sport), (
            sport, res)
        assert not res.to_controller, sport
    assert {s: fig.go(s)[0] for s in placed} == placed  # and the bindings held


def test_an_emptied_switch_back_after_its_grace_gets_its_clients_routes_too() -> None:
    """The same when the switch comes back emptied (restarted): the client's routes are in
    its table again, with the bindings."""
    fig = Figure2(SERVICES["reactive"])
    placed = connect(fig, FLOWS[:4])
    at_instance = {s: fig.send("c1", to_dsid("c1", s)).only() for s in placed}
    _forgotten_and_back(fig, C1_INGRESS, placed, FakeOFTable(C1_INGRESS))
    c1_ip, _, dpid, port = HOSTS["c1"]
    for sport, hop in at_instance.items():
        assert fig.reply(hop).is_output(port, dpid, ipv4_src=DSID, ipv4_dst=c1_ip,
                                        tcp_dst=sport), sport


def test_a_host_seen_elsewhere_meanwhile_and_an_instance_are_not_put_back() -> None:
    """A host seen at another switch while its old one was forgotten stays where it was seen;
    an instance behind the forgotten switch stays down until it is seen again."""
    fig = Figure2(SERVICES["reactive"])
    c1_ip, c1_mac, _, _ = HOSTS["c1"]
    e21_dpid = 2
    fig.apply(fig.core.switch_left(C1_INGRESS, fig.now))
    fig.apply(fig.core.switch_left(e21_dpid, fig.now))
    fig.advance(fig.now + GRACE_S + 1)
    assert fig.core.catalogue.instances[E21].state == "down"
    moved = frame_of(arp(c1_mac, c1_ip, BROADCAST, c1_ip))  # c1 moved to switch 3, port 1
    fig.apply(fig.core.packet_in(3, 1, moved, fig.now))
    for dpid in (C1_INGRESS, e21_dpid):
        fig.apply(fig.core.switch_connected(dpid, reads_table=True))
        fig.apply(fig.core.switch_ports(dpid, PORTS[dpid], fig.now))
    hosts = fig.core.topology.hosts
    assert (hosts[c1_ip].dpid, hosts[c1_ip].port) == (3, 1)
    assert E21 not in hosts and fig.core.catalogue.instances[E21].state == "down"
    assert hosts[HOSTS["c2"][0]].dpid == e21_dpid  # c2, a client there, is back
