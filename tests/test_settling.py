"""Hosts are not learned at a port that may be a link not seen yet (network/settling.py).

A cluster member restarted in a running network placed an instance at a switch port that was
in truth a link (a route miss of a packet that had crossed it), forgot it when the LLDP frame
came back a moment later and deleted its routes: held connections to it went silent for 6.5 s
(mininet_tests/test_cluster3.py, rolling restart). These replay that on Figure 2 (r1=1, r2=2,
r3=3 around x0=4; e31 lives at r3 port 1, r3 port 10 is the link to x0 port 3).
"""

from __future__ import annotations

from controller.config import ControllerConfig
from controller.core import Core
from controller.intents import TABLE_FORWARD, VIRTUAL_MAC, FlowMod, Intent, PacketOut
from controller.located import SETTLED_ROUTES
from controller.network.packet import ARP_REPLY, ARP_REQUEST, BROADCAST, build_arp, parse
from controller.network.settling import SIGHTINGS_MAX, Settling
from controller.views import stats_view
from tests.helpers import HOSTS, PORTS, SVC1, arp_request, figure2_core, see_links, tcp_frame

E31_IP, E31_MAC, E31_DPID, E31_PORT = HOSTS["e31"]
C1_IP, C1_MAC, C1_DPID, C1_PORT = HOSTS["c1"]
X0_TO_R3 = (4, 3)  # x0's port towards r3: a link port


def _started(now: float = 0.0) -> Core:
    """A controller (re)started at `now` in a running network: switches and ports known, no
    LLDP frame back yet, e31 registered (its place unknown)."""
    core = Core(ControllerConfig(services=(SVC1,)))
    for dpid, ports in PORTS.items():
        core.switch_connected(dpid)
        core.switch_ports(dpid, ports, now)
    core.register(SVC1.dsid, E31_IP, "dma", True, now)
    return core


def _routes_to(intents: list[Intent], ip: str) -> list[FlowMod]:
    """The host-route flow-mods (adds and deletes) for `ip` among `intents`."""
    return [i for i in intents if isinstance(i, FlowMod) and i.table == TABLE_FORWARD
            and dict(i.match).get("ipv4_dst") == ip]


def _transit(core: Core, now: float) -> list[Intent]:
    """A packet from e31 to c1 that crossed r3 -> x0 and missed a route at x0."""
    return core.packet_in(*X0_TO_R3, tcp_frame(E31_MAC, C1_MAC, E31_IP, C1_IP, 8000, 40000),
                          now)


def test_a_transit_packet_at_an_unseen_link_places_nothing_and_deletes_no_route() -> None:
    """The replayed restart: e31's packet at x0's port 3 before the link is seen. e31 is not
    placed there; the link is seen, e31 speaks at its own port (ARP) and lives there; at no
    step is a route to it pointed into the link or deleted."""
    core = _started()
    sent = _transit(core, 0.1)
    assert E31_IP not in core.topology.hosts and not _routes_to(sent, E31_IP)
    assert stats_view(core)["host_sightings_held"] == 1
    see_links(core, 0.2)
    _transit(core, 0.25)  # at what is now a known link port: not even held
    assert stats_view(core)["host_sightings_held"] == 1
    sent = core.packet_in(E31_DPID, E31_PORT, arp_request("e31", C1_IP), 0.3)
    assert core.topology.hosts[E31_IP].port == E31_PORT
    assert _routes_to(sent, E31_IP) and all(fm.command == "add" for fm in _routes_to(sent, E31_IP))
    for now in (1.0, 1.6, 2.6):  # past the settling: the held sighting is at a link port now
        sent = core.tick(now)
        assert not _routes_to(sent, E31_IP)
        assert (core.topology.hosts[E31_IP].dpid, core.topology.hosts[E31_IP].port) == (
            E31_DPID, E31_PORT)


def test_a_sender_first_seen_at_a_port_that_settles_as_an_edge_is_learned_then() -> None:
    """c1 sends IP (no ARP) at its own port of a new switch: held until the port has had its
    round of discovery (1.5 LLDP intervals), then learned with its routes, without another
    packet from it."""
    core = _started()
    see_links(core, 0.1)
    frame = tcp_frame(C1_MAC, "02:00:00:00:00:99", C1_IP, "10.0.0.99", 40000, 80)
    assert not _routes_to(core.packet_in(C1_DPID, C1_PORT, frame, 0.5), C1_IP)
    assert C1_IP not in core.topology.hosts
    assert not _routes_to(core.tick(1.0), C1_IP) and C1_IP not in core.topology.hosts
    sent = core.tick(1.6)
    assert (core.topology.hosts[C1_IP].dpid, core.topology.hosts[C1_IP].port) == (C1_DPID,
                                                                                    C1_PORT)
    assert {fm.dpid for fm in _routes_to(sent, C1_IP)} == set(PORTS)


def test_a_packet_at_a_settled_port_learns_at_once_and_drops_what_was_held() -> None:
    """After the settling, a sender is learned at its first packet; a sighting held of it at
    a port that turned out to be a link never moves it."""
    core = _started()
    _transit(core, 0.1)  # held at x0:3
    see_links(core, 0.2)
    frame = tcp_frame(E31_MAC, C1_MAC, E31_IP, C1_IP, 8000, 40001)
    sent = core.packet_in(E31_DPID, E31_PORT, frame, 2.0)  # r3's ports have settled
    assert core.topology.hosts[E31_IP].port == E31_PORT and _routes_to(sent, E31_IP)
    assert not core.network.settling.sightings
    core.tick(2.5)
    assert core.topology.hosts[E31_IP].dpid == E31_DPID


def test_an_arp_is_learned_at_once_unless_it_is_a_flood_coming_back() -> None:
    """A host's ARP at a settling port places it at once (ARP is punted where it comes in);
    the controller floods the request (target unknown) out of every edge port, x0's port 3
    among them while the link is unseen; the copy that comes back in at r3's port 10 is held,
    and dropped when the link is seen."""
    core = _started()
    frame = arp_request("c1", "10.0.0.77")
    sent = core.packet_in(C1_DPID, C1_PORT, frame, 0.1)
    assert core.topology.hosts[C1_IP].port == C1_PORT
    floods = [i for i in sent if isinstance(i, PacketOut) and i.data == frame]
    assert any(i.dpid == 4 and any(getattr(a, "port", None) == 3 for a in i.actions)
               for i in floods)  # out of x0:3, a link port not seen yet
    back = core.packet_in(3, 10, frame, 0.15)  # the copy, in at r3 port 10
    assert core.topology.hosts[C1_IP].port == C1_PORT and not _routes_to(back, C1_IP)
    see_links(core, 0.2)
    assert not _routes_to(core.tick(2.0), C1_IP)
    assert (core.topology.hosts[C1_IP].dpid, core.topology.hosts[C1_IP].port) == (C1_DPID,
                                                                                    C1_PORT)
    assert parse(frame) is not None


def test_a_port_known_before_a_reconnect_does_not_settle_again() -> None:
    """A switch that reconnects with the ports it had: sightings there are learned at once;
    a port it did not have settles."""
    core = _started()
    core.tick(2.0)
    core.switch_connected(1)
    core.switch_ports(1, PORTS[1] | {5}, 3.0)
    frame = tcp_frame(C1_MAC, "02:00:00:00:00:99", C1_IP, "10.0.0.99", 40000, 80)
    core.packet_in(1, C1_PORT, frame, 3.1)
    assert core.topology.hosts[C1_IP].port == C1_PORT
    core.packet_in(1, 5, tcp_frame("00:00:00:00:00:05", "02:00:00:00:00:99", "10.0.0.5",
                                   "10.0.0.99", 40000, 80), 3.1)
    assert "10.0.0.5" not in core.topology.hosts
    core.tick(4.6)
    assert core.topology.hosts["10.0.0.5"].port == 5


def test_the_held_sightings_are_bounded() -> None:
    """At most SIGHTINGS_MAX addresses are held; others are counted, not held; a held one's
    later sighting replaces it."""
    s = Settling()
    s.begin(1, {1}, 0.0, 1.5)
    for k in range(SIGHTINGS_MAX + 3):
        assert s.hold(f"10.1.{k // 256}.{k % 256}", "m", 1, 1, 0.5, True, False)
    assert len(s.sightings) == SIGHTINGS_MAX and s.refused == 3
    assert s.hold("10.1.0.0", "m2", 1, 1, 0.6, True, False) and s.refused == 3
    assert not s.hold("10.1.0.1", "m", 1, 1, 0.6, True, True)  # sure: not held, and dropped
    assert "10.1.0.1" not in s.sightings
    assert s.settled(1.0) == [] and len(s.settled(1.5)) == SIGHTINGS_MAX - 1
    assert not s.until and not s.sightings and not s._at and s.due == float("inf")


def test_held_sightings_follow_their_address_and_go_with_their_port() -> None:
    """An address held at one port and then another is held at the second only; a port
    that goes takes its sightings with it; a port begun again settles at its new end."""
    s = Settling()
    s.begin(1, {1, 2}, 0.0, 1.5)
    s.begin(2, {1}, 0.5, 1.5)
    assert s.hold("10.0.0.9", "m", 1, 1, 0.1, True, False)
    assert s.hold("10.0.0.9", "m", 1, 2, 0.2, False, False)
    assert s.hold("10.0.0.8", "m", 2, 1, 0.6, True, False)
    assert s.settled(1.5) == [("10.0.0.9", "m", 1, 2, False)]
    assert s.due == 2.0
    s.forget(2, 1)
    assert s.settled(2.0) == [] and not s.sightings and s.due == float("inf")
    s.begin(3, {1}, 3.0, 1.5)
    s.begin(3, {1}, 4.0, 1.5)  # (a port that went and came back)
    assert s.hold("10.0.0.7", "m", 3, 1, 4.6, True, False)
    assert s.settled(4.6) == [] and s.settled(5.5) == [("10.0.0.7", "m", 3, 1, True)]


def test_held_sightings_are_handed_out_in_slices_and_a_port_gone_takes_its_rest() -> None:
    """Settled ports hand out their held sightings `limit` at a time, oldest port first;
    `due` stays passed while some are left; a port forgotten meanwhile takes the rest of its
    own; one back and settling again keeps its new sightings until it settles."""
    s = Settling()
    s.begin(1, {1}, 0.0, 1.5)
    s.begin(1, {2}, 0.1, 1.5)
    s.begin(2, {1}, 0.2, 1.5)
    for k in range(5):
        assert s.hold(f"10.1.0.{k}", "m", 1, 1, 0.5, True, False)
        assert s.hold(f"10.2.0.{k}", "m", 1, 2, 0.5, True, False)
        assert s.hold(f"10.3.0.{k}", "m", 2, 1, 0.5, True, False)
    first = s.settled(2.0, 3)
    assert [(ip, port) for ip, _, _, port, _ in first] == [(f"10.1.0.{k}", 1) for k in range(3)]
    assert s.due == -float("inf")
    assert [ip for ip, *_ in s.settled(2.0, 4)] == ["10.1.0.3", "10.1.0.4", "10.2.0.0",
                                                    "10.2.0.1"]
    s.forget(1, 2)  # its three left go with it
    s.forget(2, 1)  # port 1 of switch 2 went (its five go) and came back: settling again
    s.begin(2, {1}, 2.0, 1.5)
    assert s.hold("10.4.0.1", "m", 2, 1, 2.1, True, False)
    assert s.settled(2.2, 10) == [] and s.due == 3.5 and len(s.sightings) == 1
    assert [ip for ip, *_ in s.settled(3.5, 10)] == ["10.4.0.1"]
    assert not s.sightings and not s._at and not s.ready and s.due == float("inf")


def test_thousands_of_held_senders_are_learned_in_bounded_tick_steps() -> None:
    """4,000 clients speak IP (no ARP) at r1's edge ports before those settle: the tick that
    finds them settled learns them over several steps, none placing more than its share of
    routes (SETTLED_ROUTES); in the end every one lives at its port with a route at every
    switch, and a packet-in meanwhile learns a slice of its own."""
    core = _started()
    see_links(core, 0.1)
    senders = [(f"10.9.{k // 200}.{k % 200 + 1}", f"02:09:00:00:{k // 256:02x}:{k % 256:02x}")
               for k in range(4000)]
    for ip, mac in senders:
        core.packet_in(C1_DPID, C1_PORT, tcp_frame(mac, "02:00:00:00:00:99", ip, "10.0.0.99",
                                                   40000, 80), 0.5)
    assert stats_view(core)["host_sightings_held"] == 4000
    assert not any(ip in core.topology.hosts for ip, _ in senders)
    per = SETTLED_ROUTES // len(PORTS)
    core.packet_in(C1_DPID, C1_PORT, arp_request("c1", "10.0.0.99"), 1.6)
    early = {ip for ip, _ in senders if ip in core.topology.hosts}
    first = len(early)
    assert first == per // 4
    steps = [[fm for fm in step if isinstance(fm, FlowMod) and fm.table == TABLE_FORWARD]
             for step in core.tick_steps(1.6)]
    learned = [len({dict(fm.match)["ipv4_dst"] for fm in step} - {C1_IP}) for step in steps]
    assert max(learned) <= per and first + sum(learned) == 4000, learned
    assert len([n for n in learned if n]) >= 4000 // per
    routes = {(fm.dpid, dict(fm.match)["ipv4_dst"]) for step in steps for fm in step}
    assert routes - {(d, C1_IP) for d in PORTS} == {(d, ip) for d in PORTS for ip, _ in senders
                                                     if ip not in early}
    assert all(core.topology.hosts[ip].port == C1_PORT for ip, _ in senders)


def _arp_replies(intents: list[Intent]) -> list[PacketOut]:
    """The packet-outs among `intents` that carry an ARP reply."""
    out = []
    for i in intents:
        if isinstance(i, PacketOut):
            pkt = parse(i.data)
            if pkt is not None and pkt.arp_op == ARP_REPLY:
                out.append(i)
    return out


def test_a_probe_is_never_answered_by_proxy() -> None:
    """A controller that knows e31 gets another member's liveness probe for it (the copy that
    came through a link that member had not seen yet): it floods it for e31 to answer, and
    sends no reply back out of the port it came in by (that reply placed e31 at the other
    member's link port, in CI). A host checking that its address is free (a probe too) is not
    told it is in use by the controller either."""
    other = figure2_core()  # knows every host
    probe = build_arp(ARP_REQUEST, VIRTUAL_MAC, "0.0.0.0", BROADCAST, E31_IP)
    sent = other.packet_in(3, 10, probe, 5.0)
    assert not _arp_replies(sent)
    assert any(isinstance(i, PacketOut) and i.data == probe and i.dpid == E31_DPID
               for i in sent)  # flooded: e31 hears it at its own port
    dad = build_arp(ARP_REQUEST, C1_MAC, "0.0.0.0", BROADCAST, E31_IP)
    assert not _arp_replies(other.packet_in(C1_DPID, C1_PORT, dad, 5.1))
    ask = arp_request("c1", E31_IP)  # an ordinary request is still answered by proxy
    assert _arp_replies(other.packet_in(C1_DPID, C1_PORT, ask, 5.2))


def test_a_reply_to_a_request_we_flooded_is_held_at_a_settling_port() -> None:
    """We flood c1's request for e31 (unknown to us) out of x0:3 before its link is seen;
    another member answers the copy by proxy, back through the link: the reply, in at x0:3,
    is held (not learned at once, as an ARP otherwise is) and dropped when the link is seen.
    e31's own reply to our probe, at its port, is learned at once."""
    core = _started()
    sent = core.packet_in(C1_DPID, C1_PORT, arp_request("c1", E31_IP), 0.1)
    assert any(isinstance(i, PacketOut) and i.dpid == 4 for i in sent)  # flooded, x0 too
    proxied = build_arp(ARP_REPLY, E31_MAC, E31_IP, C1_MAC, C1_IP)
    core.packet_in(*X0_TO_R3, proxied, 0.15)
    assert E31_IP not in core.topology.hosts
    see_links(core, 0.2)
    answer = build_arp(ARP_REPLY, E31_MAC, E31_IP, VIRTUAL_MAC, "0.0.0.0")
    core.packet_in(E31_DPID, E31_PORT, answer, 0.3)
    assert core.topology.hosts[E31_IP].port == E31_PORT
    core.tick(2.0)
    assert (core.topology.hosts[E31_IP].dpid, core.topology.hosts[E31_IP].port) == (
        E31_DPID, E31_PORT)
