"""Where packets go, for every dataplane mode: Figure 2 run by the core over fake switches.

Every intent the core returns is loaded into `tests/fakeoftable.py`'s switches, every packet
they send to the controller goes back to the core as a packet-in, and every entry that times
out with its removal flag goes back as a flow-removed event, as the shell would do. The tests
then ask where a client's packets go and how they arrive, not which entries were emitted.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Mapping, Sequence

import pytest

from controller.config import ControllerConfig
from controller.core import Core
from controller.dataplane.nudges import NUDGE_DELAY_S
from controller.instances.health import HealthConfig
from controller.intents import TABLE_AFFINITY, VIRTUAL_MAC, CookieKind, Intent, cookie_kind
from controller.limits import Limits
from controller.model import AffinityPolicy, Metrics, Service
from controller.network.packet import (
    ARP_REPLY,
    ARP_REQUEST,
    BROADCAST,
    TCP_ACK,
    TCP_RST,
    TCP_SYN,
)
from controller.views import stats_view
from tests.fakeoftable import FakeNetwork, FakeOFTable, Hop, Result, frame_of
from tests.helpers import HOSTS, LINKS, PORTS, SVC1, SVC2

DSID = SVC1.dsid
E21, E31 = "10.0.0.21", "10.0.0.31"
IDLE_S = 5  # the services' affinity idle timeout
BUSY = 10  # sessions and queue of a busy instance (capacity 10): new flows avoid it
INSTANCES = (("10.0.100.1", E21), ("10.0.100.1", E31), ("10.0.100.2", "10.0.0.22"),
             ("10.0.100.2", "10.0.0.32"))
# where each svc1 instance is attached: (dpid, port) -> D-BID
ATTACHED = {(2, 2): E21, (3, 1): E31}
ATTACHED_PORT = {dbid: at for at, dbid in ATTACHED.items()}
SERVICES = {
    name: dataclasses.replace(SVC1, affinity=AffinityPolicy("5-tuple", IDLE_S, 0),
                              dataplane=name.split("-")[0], overlay=name.endswith("-overlay"),
                              buckets=8)
    for name in ("reactive", "learn", "bucket", "learn-overlay", "bucket-overlay", "conntrack",
                 "conntrack-overlay")}
ALL = sorted(SERVICES)
SWITCH_DECIDES = [m for m in ALL if m != "reactive"]
# a decision change moves no live flow
KEEPS_FLOWS = ["reactive", "learn", "learn-overlay", "conntrack", "conntrack-overlay"]
BUCKETS = ["bucket", "bucket-overlay"]
# flows whose end the controller sees (conntrack: tests/test_conntrack_pipeline.py)
TABLE_KEPT = [m for m in ALL if not m.startswith("conntrack")]
SYN_DELAY_S = 1.0  # controller/dataplane/rules.py: new connections move this long into a move


class Figure2:
    """Figure 2 under one core and fake switches; time moves only when a test says so."""

    def __init__(self, svc1: Service, limits: Limits | None = None,
                 health: HealthConfig | None = None,
                 links: Sequence[tuple[tuple[int, int], tuple[int, int]]] = LINKS,
                 ports: Mapping[int, set[int]] = PORTS) -> None:
        self.svc = svc1
        config = ControllerConfig(services=(svc1, SVC2))  # default selection
        if health is not None:
            config = dataclasses.replace(config, health=health)
        self.core = Core(config if limits is None else dataclasses.replace(config, limits=limits))
        self.net = FakeNetwork(links)
        self.now = 0.0
        self.load = dict.fromkeys((dbid for _, dbid in INSTANCES), 0)
        for dpid, held in ports.items():
            self.apply(self.core.switch_connected(dpid))
            self.apply(self.core.switch_ports(dpid, held, self.now))
        self.apply(self.core.tick(self.now))  # LLDP out of every port: the links
        for name, (ip, mac, _, _) in HOSTS.items():
            self.send(name, arp(mac, ip, BROADCAST, "10.0.0.254"))
        for dsid, dbid in INSTANCES:
            self.apply(self.core.register(dsid, dbid, "dma", True, self.now)[1])
        self.report()
        self.advance(IDLE_S + 2.0)  # bucket mode: the moves made as instances appeared end

    def apply(self, intents: list[Intent]) -> Result:
        """Load intents into the switches; packet-ins and flow removals go back to the core."""
        return self._answer(self.net.apply(intents, self.now))

    def _answer(self, res: Result) -> Result:
        """Give the core what reached the controller; merge where its answers went."""
        out = res
        for hop in res.packet_ins:
            if (cookie_kind(hop.cookie) or (None,))[0] == CookieKind.HEALTH:  # the shell's split
                out = out.merge(self.apply(self.core.health.reset(
                    hop.cookie, hop.dpid, hop.port, frame_of(hop.fields), self.now)))
                continue
            out = out.merge(self.apply(self.core.packet_in(hop.dpid, hop.port,
                                                           frame_of(hop.fields), self.now,
                                                           hop.cookie)))
        for dpid, ck, reason in self.net.take_removed(self.now):
            out = out.merge(self.apply(self.core.flow_removed(dpid, ck, reason, self.now)))
        return out

    def send(self, host: str, fields: dict[str, int | str]) -> Result:
        """A host sends a packet: where it (and the controller's answer) went."""
        _, _, dpid, port = HOSTS[host]
        return self._answer(self.net.send(dpid, port, fields, self.now))

    def report(self) -> None:
        """Every instance's D-MA reports its load."""
        for dbid, load in self.load.items():
            self.apply(self.core.report(dbid, Metrics(sessions=load, queue=load, capacity=10),
                                        self.now))

    def advance(self, to: float) -> None:
        """Move the clock to `to` in steps of at most a second: reports, ticks, timeouts."""
        while self.now < to:
            self.now = min(to, self.now + 1.0)
            self.report()
            self.apply(self.core.tick(self.now))
            self._answer(Result())  # entries that timed out
            for dpid, sw in sorted(self.net.switches.items()):  # the shell's table-2 poll
                self.core.learned_entries(dpid, sw.flow_stats(TABLE_AFFINITY, self.now), self.now)

    def busy(self, dbid: str) -> None:
        """The instance reports itself busy: new flows go elsewhere."""
        self.load[dbid] = BUSY
        self.report()

    def go(self, sport: int, flags: int = TCP_ACK, client: str = "c1") -> tuple[str, bool]:
        """A packet of the client's flow from `sport`: (instance reached, controller saw it)."""
        res = self.send(client, to_dsid(client, sport, flags))
        return self.instance(res.only()), res.to_controller

    def instance(self, hop: Hop) -> str:
        """The instance a packet reached, checking it arrived as that instance expects it."""
        dbid = ATTACHED[(hop.dpid, hop.port)]
        assert hop["eth_dst"] == HOSTS[f"e{dbid.rsplit('.', 1)[1]}"][1]
        assert hop["eth_type"] == 0x0800  # no MPLS label left on it
        assert hop["ipv4_dst"] == (DSID if self.svc.overlay else dbid)
        return dbid

    def reply(self, hop: Hop) -> Result:
        """The instance answers the packet it received, from where it is attached."""
        back = {"eth_src": hop["eth_dst"], "eth_dst": hop["eth_src"], "eth_type": 0x0800,
                "ipv4_src": hop["ipv4_dst"], "ipv4_dst": hop["ipv4_src"], "ip_proto": 6,
                "tcp_src": hop["tcp_dst"], "tcp_dst": hop["tcp_src"],
                "tcp_flags": TCP_SYN | TCP_ACK}
        return self._answer(self.net.send(hop.dpid, hop.port, back, self.now))


def to_dsid(client: str, sport: int, flags: int = TCP_ACK) -> dict[str, int | str]:
    """A TCP packet from a client to svc1's D-SID (the client ARPed it: the virtual MAC)."""
    ip, mac, _, _ = HOSTS[client]
    return {"eth_src": mac, "eth_dst": VIRTUAL_MAC, "eth_type": 0x0800, "ipv4_src": ip,
            "ipv4_dst": DSID, "ip_proto": 6, "tcp_src": sport, "tcp_dst": SVC1.port or 0,
            "tcp_flags": flags}


def arp(mac: str, ip: str, dst_mac: str, target: str, op: int = ARP_REQUEST
        ) -> dict[str, int | str]:
    """An ARP packet's headers."""
    return {"eth_src": mac, "eth_dst": dst_mac, "eth_type": 0x0806, "arp_op": op,
            "arp_sha": mac, "arp_spa": ip, "arp_tpa": target}


def connect(fig: Figure2, sports: range) -> dict[int, str]:
    """Open a connection from each source port (SYN, then ACK): the instance each reached."""
    placed = {}
    for sport in sports:
        placed[sport], _ = fig.go(sport, TCP_SYN)
        assert fig.go(sport)[0] == placed[sport]
    return placed


FLOWS = range(40000, 40032, 2)  # 16 connections, two in each of the 8 buckets
NEW_FLOWS = range(41000, 41032, 2)


def test_reactive_first_packet_goes_to_the_controller_and_the_next_ones_do_not() -> None:
    """reactive: a flow's first packet goes via the controller, later ones via the switch alone."""
    fig = Figure2(SERVICES["reactive"])
    first = fig.send("c1", to_dsid("c1", 40000, TCP_SYN))
    assert [(h.dpid, h.port) for h in first.packet_ins] == [(1, 1)]
    dbid = fig.instance(first.only())
    for _ in range(3):
        later = fig.send("c1", to_dsid("c1", 40000))
        assert not later.to_controller and fig.instance(later.only()) == dbid
    assert later.is_output(ATTACHED_PORT[dbid][1], dpid=ATTACHED_PORT[dbid][0], ipv4_dst=dbid)


@pytest.mark.parametrize("mode", SWITCH_DECIDES)
def test_switch_forwards_new_flows_without_the_controller(mode: str) -> None:
    """learn/bucket: the switch alone spreads new flows by the decision's shares, and keeps them."""
    fig = Figure2(SERVICES[mode])
    seen = [fig.go(sport, TCP_SYN) for sport in FLOWS]
    assert not any(punted for _, punted in seen)
    assert Counter(dbid for dbid, _ in seen) == {E21: 8, E31: 8}
    assert [fig.go(sport)[0] for sport in FLOWS] == [dbid for dbid, _ in seen]


@pytest.mark.parametrize("client", ["c1", "c2"])
@pytest.mark.parametrize("mode", ALL)
def test_reply_comes_back_from_the_dsid(mode: str, client: str) -> None:
    """An instance's reply reaches the client from the D-SID (and the virtual MAC if translated)."""
    fig = Figure2(SERVICES[mode])
    ip, mac, dpid, port = HOSTS[client]
    for sport in FLOWS[:4]:
        fig.send(client, to_dsid(client, sport, TCP_SYN))
        hop = fig.send(client, to_dsid(client, sport)).only()
        back = fig.reply(hop)
        assert not back.to_controller
        assert back.only().dpid == dpid and back.only().port == port
        assert back.only().has(ipv4_src=DSID, ipv4_dst=ip, tcp_src=8000, tcp_dst=sport,
                               eth_dst=mac)
        if not fig.svc.overlay:
            assert back.only()["eth_src"] == VIRTUAL_MAC


@pytest.mark.parametrize("mode", KEEPS_FLOWS)
def test_established_flows_keep_their_instance_when_the_decision_moves(mode: str) -> None:
    """When a report moves the decision, established flows keep their instance, new ones follow."""
    fig = Figure2(SERVICES[mode])
    placed = connect(fig, FLOWS)
    assert set(placed.values()) == {E21, E31}
    fig.busy(E21)
    assert set(connect(fig, NEW_FLOWS).values()) == {E31}
    assert {sport: fig.go(sport)[0] for sport in FLOWS} == placed


@pytest.mark.parametrize("mode", BUCKETS)
def test_bucket_move_pins_live_flows_and_sends_new_connections_on_after_the_syn_delay(
        mode: str) -> None:
    """bucket: a moving bucket pins live flows, then SYNs, then points to the new instance."""
    fig = Figure2(SERVICES[mode])
    placed = connect(fig, FLOWS)
    on_e21 = [s for s, d in placed.items() if d == E21]
    idle = on_e21.pop()  # this one sends nothing from now on
    early = on_e21[0] + 4096  # same bucket (bits 1-3 of the port) as an e21 flow
    fig.busy(E21)  # the move starts: e21's buckets go to e31
    assert fig.go(early, TCP_SYN)[0] == E21  # phase 1a: everything is pinned to the old one
    assert all(fig.go(s)[0] == E21 for s in on_e21)
    fig.advance(fig.now + SYN_DELAY_S)
    assert set(connect(fig, NEW_FLOWS).values()) == {E31}
    assert fig.go(early)[0] == E21  # a connection opened in phase 1a stays where it went
    start = fig.now
    while fig.now < start + IDLE_S + 1:
        fig.advance(fig.now + 1)
        assert all(fig.go(s)[0] == E21 for s in [*on_e21, early])
    assert set(connect(fig, range(42000, 42032, 2)).values()) == {E31}
    assert fig.go(idle)[0] == E31


@pytest.mark.parametrize("mode", ALL)
def test_drained_instance_gets_no_new_flow_but_keeps_its_own(mode: str) -> None:
    """A drained instance gets no new connection (bucket: after the SYN delay), keeps its own."""
    fig = Figure2(SERVICES[mode])
    placed = connect(fig, FLOWS)
    fig.apply(fig.core.drain(E21, None, fig.now)[1])
    if mode in BUCKETS:
        fig.advance(fig.now + SYN_DELAY_S)
    assert set(connect(fig, NEW_FLOWS).values()) == {E31}
    assert {sport: fig.go(sport)[0] for sport in FLOWS} == placed


@pytest.mark.parametrize("how", ["withdrawn", "port down"])
@pytest.mark.parametrize("mode", ALL)
def test_lost_instance_loses_its_flows_to_the_remaining_one(mode: str, how: str) -> None:
    """A withdrawn or unreachable instance's flows and new ones go to the remaining instance."""
    fig = Figure2(SERVICES[mode])
    placed = connect(fig, FLOWS)
    if how == "withdrawn":
        fig.apply(fig.core.withdraw(E21, fig.now))
    else:
        fig.apply(fig.core.port_changed(*ATTACHED_PORT[E21], up=False, now=fig.now))
    assert {sport: fig.go(sport)[0] for sport in FLOWS} == dict.fromkeys(placed, E31)
    moved = next(s for s, d in placed.items() if d == E21)
    back = fig.reply(fig.send("c1", to_dsid("c1", moved)).only())
    assert back.only().has(ipv4_src=DSID, tcp_dst=moved)
    assert set(connect(fig, NEW_FLOWS).values()) == {E31}


@pytest.mark.parametrize("how", ["withdrawn", "port down"])
@pytest.mark.parametrize("mode", ["reactive"])  # (the others: docs/decisions.md, "Moving")
def test_a_client_of_a_moved_connection_is_reset_through_its_new_instance(
        mode: str, how: str) -> None:
    """Each TCP connection moved off a lost instance (a binding) gets empty ACKs from the
    D-SID at its client (out of the client's port, with the connection's ports) once the
    switch has caught up with its new entries; the client's answer
    (an ACK of its own numbers) goes to the new instance, whose reset reaches the client from
    the D-SID (so a client that only waits to read learns its connection ended). Connections
    that did not move get none."""
    fig = Figure2(SERVICES[mode])
    placed = connect(fig, FLOWS)
    moved = sorted(s for s, d in placed.items() if d == E21)
    assert moved and len(moved) < len(placed)
    res = fig.apply(fig.core.withdraw(E21, fig.now) if how == "withdrawn"
                    else fig.core.port_changed(*ATTACHED_PORT[E21], up=False, now=fig.now))
    _, c1_mac, c1_dpid, c1_port = HOSTS["c1"]
    assert not [h for h in res.outputs if h.fields.get("tcp_flags") == TCP_ACK]  # (a switch
    fig.now += NUDGE_DELAY_S  # has not caught up with the new entries yet: nudges/py)
    res = fig.apply(fig.core.tick(fig.now))
    nudges = [h for h in res.outputs if h.fields.get("tcp_flags") == TCP_ACK]
    assert sorted(h["tcp_dst"] for h in nudges) == sorted(moved * 2)  # (two apiece: docs)
    for hop in nudges[::2]:
        assert (hop.dpid, hop.port) == (c1_dpid, c1_port)
        assert hop.has(eth_dst=c1_mac, ipv4_src=DSID, ipv4_dst=HOSTS["c1"][0],
                       tcp_src=SVC1.port or 0)
        challenge = fig.send("c1", to_dsid("c1", int(hop["tcp_dst"])))
        assert fig.instance(challenge.only()) == E31
        at = challenge.only()
        back = {"eth_src": at["eth_dst"], "eth_dst": at["eth_src"], "eth_type": 0x0800,
                "ipv4_src": at["ipv4_dst"], "ipv4_dst": at["ipv4_src"], "ip_proto": 6,
                "tcp_src": at["tcp_dst"], "tcp_dst": at["tcp_src"], "tcp_flags": TCP_RST}
        arrived = fig._answer(fig.net.send(at.dpid, at.port, back, fig.now)).only()
        assert (arrived.dpid, arrived.port) == (c1_dpid, c1_port)
        assert arrived.has(ipv4_src=DSID, tcp_src=SVC1.port or 0, tcp_dst=hop["tcp_dst"],
                           tcp_flags=TCP_RST)


@pytest.mark.parametrize("mode", TABLE_KEPT)
def test_affinity_lasts_while_a_flow_sends_and_ends_when_it_idles_out(mode: str) -> None:
    """Affinity lasts as long as a flow sends within idle_timeout, and ends when it idles out."""
    fig = Figure2(SERVICES[mode])
    placed = connect(fig, FLOWS)
    idle = next(s for s, d in placed.items() if d == E21)
    live = [s for s in FLOWS if s != idle]
    fig.busy(E21)
    for _ in range(3 * IDLE_S):
        fig.advance(fig.now + 1)
        assert {s: fig.go(s)[0] for s in live} == {s: placed[s] for s in live}
    assert fig.go(idle, TCP_SYN)[0] == E31


# conntrack-overlay: nothing names a drained instance's connections to flush at its deadline
# (tests/test_conntrack_pipeline.py)
@pytest.mark.parametrize("mode", [m for m in ALL if m != "conntrack-overlay"])
def test_drain_deadline_moves_the_remaining_flows(mode: str) -> None:
    """At a drained instance's deadline its remaining flows move to a live instance (README)."""
    fig = Figure2(SERVICES[mode])
    placed = connect(fig, FLOWS)
    fig.apply(fig.core.drain(E21, 2.0, fig.now)[1])
    fig.advance(fig.now + 1)
    assert {s: fig.go(s)[0] for s in FLOWS} == placed  # before the deadline: they stay
    fig.advance(fig.now + 2)
    assert {s: fig.go(s)[0] for s in FLOWS} == dict.fromkeys(placed, E31)


@pytest.mark.parametrize("mode", TABLE_KEPT)
def test_deactivated_instance_is_stopped_only_once_its_flows_have_ended(mode: str) -> None:
    """`deactivate` has the D-MA stop an instance only after the flows reaching it have ended."""
    fig = Figure2(SERVICES[mode])
    on_e21 = [s for s, d in connect(fig, FLOWS).items() if d == E21]
    fig.apply(fig.core.deactivate(E21, None, fig.now)[1])
    for _ in range(IDLE_S + 2):
        fig.advance(fig.now + 1)
        assert all(fig.go(s)[0] == E21 for s in on_e21)
        assert stats_view(fig.core).get("deactivations", 0) == 0
    fig.advance(fig.now + IDLE_S + 2)  # the flows have stopped and idled out
    assert stats_view(fig.core).get("deactivations", 0) == 1


@pytest.mark.parametrize("wiped", [False, True])
@pytest.mark.parametrize("mode", ALL)
def test_reconnected_switch_keeps_every_flow_on_its_instance(mode: str, wiped: bool) -> None:
    """A reconnected switch, kept or emptied, gets its pipeline back and every flow its instance."""
    fig = Figure2(SERVICES[mode])
    placed = connect(fig, FLOWS)
    if wiped:
        fig.net.switches[1] = FakeOFTable(1, fig.net.conntrack)  # the tracker is not wiped
    fig.apply(fig.core.switch_connected(1))
    fig.apply(fig.core.switch_ports(1, PORTS[1], fig.now))
    assert {s: fig.go(s)[0] for s in FLOWS} == placed
    assert set(connect(fig, NEW_FLOWS).values()) == {E21, E31}
    assert fig.reply(fig.send("c1", to_dsid("c1", FLOWS[0])).only()).only().has(ipv4_src=DSID)


def test_reactive_flow_idle_past_its_timeout_is_decided_again() -> None:
    """reactive: a flow whose entry idled out is reported and is a new flow for the controller."""
    fig = Figure2(SERVICES["reactive"])
    connect(fig, FLOWS[:1])
    fig.advance(fig.now + IDLE_S - 1)
    assert not fig.go(FLOWS[0])[1]
    fig.advance(fig.now + IDLE_S + 1)
    assert fig.go(FLOWS[0])[1]


@pytest.mark.parametrize("mode", ALL)
def test_arp_is_answered_for_hosts_and_for_the_dsid(mode: str) -> None:
    """ARP for a host is answered with its MAC (by the controller), for a D-SID with the
    virtual MAC by the switch itself (so a client keeps it while the controller is away)."""
    fig = Figure2(SERVICES[mode])
    c1_ip, c1_mac, _, _ = HOSTS["c1"]
    for target, mac in ((HOSTS["c2"][0], HOSTS["c2"][1]), (DSID, VIRTUAL_MAC)):
        res = fig.send("c1", arp(c1_mac, c1_ip, BROADCAST, target))
        assert res.to_controller == (target != DSID)
        assert res.only().dpid == 1 and res.only().port == 1
        assert res.only().has(arp_op=ARP_REPLY, arp_spa=target, eth_src=mac, eth_dst=c1_mac,
                              arp_tpa=c1_ip)


@pytest.mark.parametrize("mode", ALL)
def test_unicast_between_hosts_follows_host_routes_without_the_controller(mode: str) -> None:
    """Host-to-host packets follow host routes to the receiver's MAC, without the controller."""
    fig = Figure2(SERVICES[mode])
    (c1_ip, c1_mac, _, _), (c2_ip, c2_mac, _, _) = HOSTS["c1"], HOSTS["c2"]
    router = "02:00:00:00:00:fe"  # whatever the sender addressed: routes set the receiver's
    there: dict[str, int | str] = {
        "eth_src": c1_mac, "eth_dst": router, "eth_type": 0x0800, "ipv4_src": c1_ip,
        "ipv4_dst": c2_ip, "ip_proto": 6, "tcp_src": 50000, "tcp_dst": 22, "tcp_flags": TCP_SYN}
    res = fig.send("c1", there)
    assert not res.to_controller
    assert res.only().dpid == 2 and res.only().port == 1
    assert res.only().has(**{**there, "eth_dst": c2_mac})
    back: dict[str, int | str] = {**there, "eth_src": c2_mac, "ipv4_src": c2_ip,
                                  "ipv4_dst": c1_ip, "tcp_src": 22, "tcp_dst": 50000}
    res = fig.send("c2", back)
    assert not res.to_controller and res.is_output(1, dpid=1, eth_dst=c1_mac, ipv4_src=c2_ip)
