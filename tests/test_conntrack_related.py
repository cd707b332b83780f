"""`conntrack` on Figure 2's fake switches: the packets beside a connection's own.

ICMP errors quoting a connection's packet (`+rel`), a known connection's invalid packets
(`+inv`: Open vSwitch's userspace tracker translates and marks them, the kernel's does not),
and a client that moves to another ingress (every bridge of one ovs-vswitchd shares its
tracker). The fake tracker (tests/fakeconntrack.py) decides what is related or invalid."""

from __future__ import annotations

import pytest

from controller.errors import ValidationError
from controller.intents import VIRTUAL_MAC, Ct
from controller.model import service_from_dict
from controller.network.packet import TCP_ACK, TCP_RST, TCP_SYN
from tests.fakeoftable import Hop
from tests.helpers import HOSTS, PORTS
from tests.test_conntrack_pipeline import SVC
from tests.test_pipelines import (
    ATTACHED,
    ATTACHED_PORT,
    DSID,
    E21,
    E31,
    FLOWS,
    Figure2,
    arp,
    connect,
    to_dsid,
)

C1_IP, C1_MAC = HOSTS["c1"][0], HOSTS["c1"][1]
UNREACHABLE, PORT_UNREACHABLE = 3, 3


def _icmp_error(src: str, src_mac: str, dst: str, dst_mac: str,
                quoted: dict[str, int | str]) -> dict[str, int | str]:
    """An ICMP destination-unreachable from `src` to `dst` quoting a TCP packet's headers."""
    return {"eth_src": src_mac, "eth_dst": dst_mac, "eth_type": 0x0800, "ipv4_src": src,
            "ipv4_dst": dst, "ip_proto": 1, "icmpv4_type": UNREACHABLE,
            "icmpv4_code": PORT_UNREACHABLE, "inner_ip_proto": 6,
            "inner_ipv4_src": quoted["ipv4_src"], "inner_ipv4_dst": quoted["ipv4_dst"],
            "inner_sport": quoted["tcp_src"], "inner_dport": quoted["tcp_dst"]}


def _at_instance(fig: Figure2, sport: int) -> Hop:
    """A packet of c1's connection from `sport` as its instance receives it."""
    return fig.send("c1", to_dsid("c1", sport)).only()


def test_an_instances_icmp_error_reaches_the_client_from_the_dsid_quoting_its_packet() -> None:
    """The instance answers a client's packet with an ICMP error (port unreachable, or
    fragmentation needed): the client gets it from the D-SID, quoting its packet as it sent it
    (to the D-SID), so its socket sees it; no packet-in."""
    fig = Figure2(SVC)
    placed = connect(fig, FLOWS)
    for sport in FLOWS[:4]:
        hop = _at_instance(fig, sport)
        err = _icmp_error(placed[sport], hop["eth_dst"], C1_IP, hop["eth_src"], hop.fields)
        res = fig.net.send(hop.dpid, hop.port, err, fig.now)
        assert not res.packet_ins
        back = res.only()
        assert (back.dpid, back.port) == HOSTS["c1"][2:]
        assert back.has(ipv4_src=DSID, eth_src=VIRTUAL_MAC, ipv4_dst=C1_IP,
                        inner_ipv4_src=C1_IP, inner_ipv4_dst=DSID, inner_sport=sport)


def test_a_clients_icmp_error_about_a_reply_reaches_the_instance_of_the_connection() -> None:
    """The client answers a reply (from the D-SID) with an ICMP error: it reaches the
    connection's instance, addressed to its D-BID and quoting the reply as the instance sent
    it, whatever the decision says now."""
    fig = Figure2(SVC)
    placed = connect(fig, FLOWS)
    fig.busy(E21)
    fig.busy(E31)
    for sport in FLOWS[:4]:
        reply = {"ipv4_src": DSID, "ipv4_dst": C1_IP, "tcp_src": 8000, "tcp_dst": sport}
        hop = fig.send("c1", _icmp_error(C1_IP, C1_MAC, DSID, VIRTUAL_MAC, reply)).only()
        assert ATTACHED[(hop.dpid, hop.port)] == placed[sport]
        assert hop.has(ipv4_dst=placed[sport], inner_ipv4_src=placed[sport], inner_sport=8000)
        assert hop["eth_dst"] == HOSTS[f"e{placed[sport].rsplit('.', 1)[1]}"][1]


def test_icmp_errors_of_no_connection_and_echoes_are_left_as_they_are() -> None:
    """An instance's ICMP error about a packet that is no connection of the service (its own
    traffic) goes on unchanged; an echo request to the D-SID is handled as before (not
    translated, not committed)."""
    fig = Figure2(SVC)
    quoted = {"ipv4_src": C1_IP, "ipv4_dst": E21, "tcp_src": 45000, "tcp_dst": 9}
    at = ATTACHED_PORT[E21]
    mac = HOSTS["e21"][1]
    err = _icmp_error(E21, mac, C1_IP, HOSTS["c1"][1], quoted)
    back = fig.net.send(*at, err, fig.now).only()
    assert back.has(ipv4_src=E21, eth_src=mac, inner_ipv4_dst=E21)
    echo = {"eth_src": C1_MAC, "eth_dst": VIRTUAL_MAC, "eth_type": 0x0800, "ipv4_src": C1_IP,
            "ipv4_dst": DSID, "ip_proto": 1, "icmpv4_type": 8, "icmpv4_code": 0}
    fig.send("c1", echo)
    assert not fig.net.conntrack.entries()


def _stale(pkt: dict[str, int]) -> bool:
    """What the tracker judges invalid here: the RSTs and the instance's bare ACKs (a
    challenge ACK of a stale socket at the instance, out of the connection's window)."""
    flags = pkt.get("tcp_flags", 0)
    return bool(flags & TCP_RST) or (pkt.get("tcp_src") == 8000 and flags == TCP_ACK)


def _bare_ack(hop: Hop, sport: int) -> dict[str, int | str]:
    """The instance's bare ACK to the client, for the packet it received (`hop`)."""
    return {**hop.fields, "eth_src": hop["eth_dst"], "eth_dst": hop["eth_src"],
            "ipv4_src": hop["ipv4_dst"], "ipv4_dst": C1_IP, "tcp_src": 8000,
            "tcp_dst": sport, "tcp_flags": TCP_ACK}


def test_invalid_packets_of_a_known_connection_reach_the_other_end_translated() -> None:
    """A client reuses the port of a connection its instance still believes open: the stale
    socket's challenge ACK reaches the client from the D-SID and the client's RST reaches the
    stale socket at the instance, both invalid to the tracker but translated by it (userspace
    datapath), so the socket is reset and the client's next SYN connects, as in the other
    modes; dropping them left the connect hanging until the stale socket timed out."""
    fig = Figure2(SVC)
    placed = connect(fig, FLOWS)
    fig.net.conntrack.invalid = _stale
    for sport in FLOWS[:4]:
        hop = _at_instance(fig, sport)
        ack = _bare_ack(hop, sport)
        back = fig.net.send(hop.dpid, hop.port, ack, fig.now).only()
        assert back.has(ipv4_src=DSID, eth_src=VIRTUAL_MAC, tcp_dst=sport)
        assert (back.dpid, back.port) == HOSTS["c1"][2:]
        rst = fig.send("c1", to_dsid("c1", sport, TCP_RST | TCP_ACK)).only()
        assert ATTACHED[(rst.dpid, rst.port)] == placed[sport]
        assert rst.has(ipv4_dst=placed[sport], tcp_flags=TCP_RST | TCP_ACK)


def test_invalid_packets_the_tracker_could_not_translate_are_dropped() -> None:
    """The kernel's tracker gives an invalid packet no connection: untranslated, it would
    reach the client from the D-BID (which resets it) or the D-SID's nowhere: dropped, as
    kube-proxy drops them. Valid packets of the same connections still pass."""
    fig = Figure2(SVC)
    placed = connect(fig, FLOWS)
    fig.net.conntrack.invalid = _stale
    fig.net.conntrack.kernel = True
    for sport in FLOWS[:4]:
        hop = _at_instance(fig, sport)
        ack = _bare_ack(hop, sport)
        assert not fig.net.send(hop.dpid, hop.port, ack, fig.now).outputs
        res = fig.send("c1", to_dsid("c1", sport, TCP_RST | TCP_ACK))
        assert not res.outputs and not res.packet_ins
        assert fig.go(sport)[0] == placed[sport]


def test_a_client_moved_to_another_ingress_keeps_its_connections_and_their_instances() -> None:
    """c1 moves from r1 to a new port of r3 after the decision has moved every new flow to
    e31: its connections reach the instances they were committed to (r3 shares the tracker:
    its packets are `+est`, not decided again), replies follow it to r3 from the D-SID, and
    its new connections go where the decision says."""
    fig = Figure2(SVC)
    placed = connect(fig, FLOWS)
    assert set(placed.values()) == {E21, E31}
    fig.busy(E21)
    moved = 3, 5
    fig.apply(fig.core.switch_ports(1, PORTS[1] - {1}, fig.now))
    fig.apply(fig.core.switch_ports(3, PORTS[3] | {moved[1]}, fig.now))
    fig._answer(fig.net.send(*moved, arp(C1_MAC, C1_IP, "ff:ff:ff:ff:ff:ff", "10.0.0.254"),
                             fig.now))
    for sport, dbid in placed.items():
        hop = fig._answer(fig.net.send(*moved, to_dsid("c1", sport), fig.now)).only()
        assert fig.instance(hop) == dbid
        back = fig.reply(hop).only()
        assert (back.dpid, back.port) == moved and back.has(ipv4_src=DSID, tcp_dst=sport)
    new = {fig.instance(fig._answer(fig.net.send(*moved, to_dsid("c1", s, TCP_SYN),
                                                 fig.now)).only()) for s in range(42000, 42016)}
    assert new == {E31}


def _tracked_at(fig: Figure2) -> dict[int, int]:
    """Packets each switch has sent through its tracker so far (entries with a `ct`)."""
    return {dpid: sum(e.packets for t in sw.tables.values() for e in t
                      if any(isinstance(a, Ct) for a in e.fm.actions))
            for dpid, sw in fig.net.switches.items()}


def test_only_the_ingress_tracks_a_clients_packets_and_only_the_instances_switch_its_replies(
        ) -> None:
    """Per packet, the tracker runs once (twice for a new connection: lookup, then commit)
    at the client's ingress and once for a reply at the instance's switch; the transit
    switch (r4) and the other end forward on plain entries, as the static rewrite does."""
    fig = Figure2(SVC)
    before = _tracked_at(fig)
    hop = fig.send("c1", to_dsid("c1", FLOWS[0], TCP_SYN)).only()
    syn = {d: n - before[d] for d, n in _tracked_at(fig).items()}
    assert syn == {1: 2, 2: 0, 3: 0, 4: 0}
    fig.reply(hop)
    fig.send("c1", to_dsid("c1", FLOWS[0]))
    both = {d: n - before[d] - syn[d] for d, n in _tracked_at(fig).items()}
    at = ATTACHED_PORT[fig.instance(hop)][0]
    assert both == {d: (1 if d == 1 else 0) + (1 if d == at else 0) for d in PORTS}


def test_an_ipv6_service_is_refused_naming_the_field() -> None:
    """The pipeline tracks IPv4 only (its entries match eth_type IPv4): an IPv6 D-SID is
    refused with the field named, as for every mode."""
    base = {"name": "s", "protocol": "tcp", "port": 80, "dataplane": "conntrack"}
    with pytest.raises(ValidationError) as err:
        service_from_dict({**base, "dsid": "fd00::1"})
    assert err.value.field == "dsid"
