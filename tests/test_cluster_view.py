"""One view of the network in every cluster member: each member asks every switch for the
slave role's packet-ins (OFPT_SET_ASYNC), learns links and hosts from a switch another member
masters, and takes no decision, makes no binding and sends nothing for such a packet-in."""

from __future__ import annotations

import struct
import time
from collections.abc import Iterator
from typing import Any

import pytest

from apps.cluster import async_config
from apps.store import Store
from bench import ofgen
from controller import observer
from controller.dataplane.affinity import Binding, FlowKey, binding_flows
from controller.dataplane.audit import joined
from controller.instances.liveness import LIVENESS_PORT
from controller.intents import FlowMod, StoreWrite, SwitchEntry, action_signature
from controller.network.packet import (
    ARP_REQUEST,
    BROADCAST,
    TCP_ACK,
    TCP_RST,
    build_arp,
    build_lldp,
)
from tests import test_app_smoke, test_cluster_shell
from tests.fakes import FakeDatapath, framework_parse
from tests.helpers import ports_settled, tcp_frame
from tests.test_app_smoke import CLIENT, DSID, INSTANCE, PORTS, VIRTUAL_MAC, Shell, flow_mods
from tests.test_cluster_shell import beat, dpid_mastered_by, grant
from tests.test_health_shell import copied_reset

shell = test_app_smoke.shell  # the fixture: the app on each framework
member, pg_url = test_cluster_shell.member, test_cluster_shell.pg_url  # m1 on PostgreSQL


def test_set_async_asks_the_slave_role_for_packet_ins(dp: FakeDatapath) -> None:
    """OFPT_SET_ASYNC (28), 32 bytes: packet-ins (no-match, action) and port changes for both
    roles; flow-removed messages for the master only."""
    dp.send_msg(async_config(dp))
    (raw,) = dp.sent
    assert struct.unpack_from("!BBH", raw) == (4, 28, 32)
    assert struct.unpack_from("!6I", raw, 8) == (0b11, 0b11, 0b111, 0b111, 0b111, 0)


@pytest.fixture
def two(member: str, shell: Shell) -> Iterator[tuple[Shell, FakeDatapath, FakeDatapath]]:
    """m1 and m2 live; `mine` (m1's) and `theirs` (m2's) connected to m1, their ports read;
    the instance registered with m1."""
    mine = FakeDatapath(shell.dp.framework, dpid_mastered_by("m1", ("m2",)))
    theirs = FakeDatapath(shell.dp.framework, dpid_mastered_by("m2", ("m1",)))
    beat(shell, time.time(), "m1", "m2")
    for dp in (mine, theirs):
        shell.switch_says(ofgen.features_reply(1, dp.id), "config", dp)
        grant(shell, dp)
        assert dp.ofproto.OFPT_SET_ASYNC in [m.msg_type for m in shell.sent(dp)]
        shell.switch_says(ofgen.port_desc_reply(2, dp.id, PORTS), dp=dp)
    ports_settled(shell.app.core)  # (held else: a sighting at a port discovery has not seen)
    shell.register()
    shell.sent(mine), shell.sent(theirs)
    shell.app.core.drain_writes()
    yield shell, mine, theirs
    assert shell.app.core.counters["errors"] == 0


def lldp(s: Shell, to: FakeDatapath, frm: FakeDatapath, port: int) -> None:
    """An LLDP frame another member sent out of `frm`'s `port` arrives at `to`'s `port`."""
    frame = build_lldp(frm.id, port, VIRTUAL_MAC, time.time() - 5.0,  # another clock,
                       s.app.core.network.lldp_key)  # the store's key (every member's)
    s.switch_says(ofgen.packet_in(7, port, frame), dp=to)


def arp(s: Shell, to: FakeDatapath, host: tuple[str, str, int]) -> str:
    """`host` sends an ARP request at `to`; its address."""
    ip, mac, port = host
    s.switch_says(ofgen.packet_in(8, port, build_arp(ARP_REQUEST, mac, ip, BROADCAST,
                                                     "10.0.0.254")), dp=to)
    return ip


def test_a_member_learns_links_and_hosts_at_switches_it_does_not_master(
        two: tuple[Shell, FakeDatapath, FakeDatapath]) -> None:
    """LLDP both ways between m1's switch and m2's, and the instance's ARP at m2's switch:
    m1 knows the link and where the instance lives, sends m2's switch nothing, and routes the
    instance from its own switch over the link (to m2's switch)."""
    s, mine, theirs = two
    core = s.app.core
    lldp(s, theirs, mine, 3)
    lldp(s, mine, theirs, 3)
    ip = arp(s, theirs, INSTANCE)
    assert ((mine.id, 3), (theirs.id, 3)) in core.topology.links()
    assert ((theirs.id, 3), (mine.id, 3)) in core.topology.links()
    assert core.topology.hosts[ip].dpid == theirs.id
    assert core.topology.out_port(mine.id, ip) == 3
    assert not s.sent(theirs)
    assert core.counters["packet_in_observed"] == 2  # the LLDP at m2's switch, the ARP


def test_a_first_packet_at_a_slave_changes_nothing(
        two: tuple[Shell, FakeDatapath, FakeDatapath]) -> None:
    """A client's SYN to the D-SID at m2's switch reaches m1 too: no decision, no binding, no
    store write, nothing sent to m2's switch, and at m1's only the route to the client it
    learned (nothing for the D-SID). The same SYN at m1's own switch is decided and bound
    (the test can fail)."""
    s, mine, theirs = two
    core = s.app.core
    lldp(s, theirs, mine, 3)
    lldp(s, mine, theirs, 3)
    arp(s, theirs, INSTANCE)
    s.app.send(core.flush(time.time()))
    ip, mac, port = CLIENT
    frame = tcp_frame(mac, VIRTUAL_MAC, ip, DSID, 40000, 8000)
    before = (len(core.bindings), core.counters["flows_placed"])
    s.sent(mine)
    s.switch_says(ofgen.packet_in(9, port, frame), dp=theirs)
    assert (len(core.bindings), core.counters["flows_placed"]) == before
    assert not [w for w in core.drain_writes() if w.kind == "binding"]
    assert not s.sent(theirs) and not to_dsid(flow_mods(s.sent(mine)))
    s.switch_says(ofgen.packet_in(10, port, frame), dp=mine)
    assert len(core.bindings) == before[0] + 1
    assert to_dsid(flow_mods(s.sent(mine))) and not s.sent(theirs)


def to_dsid(mods: list[Any]) -> list[Any]:
    """The flow-mods that match packets to the D-SID (a binding's entries)."""
    return [m for m in mods if dict(m.match.items()).get("ipv4_dst") == DSID]


def test_a_new_master_holds_the_bindings_its_previous_master_stored(
        two: tuple[Shell, FakeDatapath, FakeDatapath]) -> None:
    """m2 stored a binding at its switch (numbered above anything m1 made, as a member started
    later numbers them); m2's lease ends: m1 takes the switch over, reads the store first and
    holds the binding (so the reconciliation keeps its entries), then reads the table."""
    s, mine, theirs = two
    core = s.app.core
    ident = core.flows.bindings.next_ident + 10**9  # m2's numbering, far above m1's
    key = FlowKey("svc1", CLIENT[0], DSID, 6, 40001, 8000)
    theirs_binding = Binding(ident, key, INSTANCE[0], theirs.id, time.time() - 5)
    elsewhere = Binding(ident + 1, key._replace(sport=40002), INSTANCE[0], mine.id, time.time())
    store = Store(s.app.config.store_url)
    try:
        store.apply([StoreWrite("binding", str(b.ident), b.to_dict())
                     for b in (theirs_binding, elsewhere)])
    finally:
        store.close()
    assert core.flows.bindings.by_ident(ident) is None
    beat(s, time.time(), "m1", ticket=11)  # m2 is gone
    s.app._step_roles()
    grant(s, theirs)
    assert s.app.programs(theirs.id)
    assert core.flows.bindings.by_ident(ident) == theirs_binding
    assert core.flows.bindings.by_ident(ident + 1) is None  # another switch's: not taken
    assert core.flows.born > ident  # its entries are never mistaken for an unknown flow's
    s.table_read_xid(theirs)  # then the table is read, as at connect


def test_a_new_master_adopts_the_entries_of_bindings_its_predecessor_had_not_stored(
        two: tuple[Shell, FakeDatapath, FakeDatapath]) -> None:
    """m2, started just after m1 (numbered above it), bound a flow at its switch and died
    before storing it; m1 takes the switch over (the shell's path) and its table read finds
    the binding's entries: adopted and stored, not removed."""
    s, _, theirs = two
    core = s.app.core
    svc = core.catalogue.services["svc1"]
    lost = Binding(core.flows.bindings.next_ident + 1,  # numbered from a start just after m1's
                   FlowKey("svc1", CLIENT[0], DSID, 6, 40001, 8000), INSTANCE[0], theirs.id,
                   time.time() - 2)
    entries = [SwitchEntry(fm.cookie, fm.table, fm.priority, fm.match, action_signature(fm), 2.0)
               for fm in binding_flows(lost, svc, INSTANCE[1])]
    beat(s, time.time(), "m1", ticket=11)  # m2 is gone
    s.app._step_roles()
    grant(s, theirs)
    assert s.app.programs(theirs.id)
    now = time.time()
    repair = joined(core.switch_table_steps(theirs.id, entries, [], now, now))  # the answer
    held = core.flows.bindings.by_ident(lost.ident)
    assert held is not None and (held.key, held.dbid) == (lost.key, lost.dbid)
    assert not [i for i in repair if isinstance(i, FlowMod) and i.command != "add"
                and i.cookie in {e.cookie for e in entries}]  # none of its entries removed
    assert str(lost.ident) in {w.key for w in core.drain_writes() if w.kind == "binding"}


def test_a_slave_drops_a_known_clients_packet_to_a_dsid_before_parsing_it(
        two: tuple[Shell, FakeDatapath, FakeDatapath], monkeypatch: pytest.MonkeyPatch) -> None:
    """At m2's switch: a client's first packet to the D-SID is parsed (m1 learns where the
    client is); its next ones, TCP or UDP, are dropped unparsed, by the PACKET_IN parser
    before the framework makes an event (nothing to learn; at m1's own switch, kept); the same
    client at another port, and a probe answer to the D-SID, are parsed and learned from."""
    s, mine, theirs = two
    core = s.app.core
    parsed: list[bytes] = []
    real = observer.parse
    monkeypatch.setattr(observer, "parse", lambda data: parsed.append(data) or real(data))
    ip, mac, port = CLIENT
    for n, (sport, proto) in enumerate(((40000, 6), (40001, 6), (40002, 17))):
        s.switch_says(ofgen.packet_in(20 + n, port, tcp_frame(mac, VIRTUAL_MAC, ip, DSID,
                                                               sport, 8000, proto)), dp=theirs)
    assert len(parsed) == 1 and core.topology.hosts[ip].port == port
    assert core.counters["packet_in_observed"] == 3
    again = ofgen.packet_in(29, port, tcp_frame(mac, VIRTUAL_MAC, ip, DSID, 40009, 8000))
    assert framework_parse(theirs, again, dropped_ok=True) is None  # no event made of it
    assert framework_parse(mine, ofgen.packet_in(29, port, tcp_frame(
        mac, VIRTUAL_MAC, ip, DSID, 40009, 8000)), dropped_ok=True) is not None  # ours: kept
    s.switch_says(ofgen.packet_in(30, 4, tcp_frame(mac, VIRTUAL_MAC, ip, DSID, 40003, 8000)),
                  dp=theirs)
    assert len(parsed) == 2 and core.topology.hosts[ip].port == 4  # moved: learned
    iip, imac, iport = INSTANCE
    s.switch_says(ofgen.packet_in(31, iport, tcp_frame(imac, VIRTUAL_MAC, iip, DSID, 8000,
                                                       LIVENESS_PORT)), dp=theirs)
    s.switch_says(ofgen.packet_in(32, iport, tcp_frame(imac, VIRTUAL_MAC, iip, DSID, 8000,
                                                       LIVENESS_PORT)), dp=theirs)
    assert len(parsed) == 4  # a probe answer is never dropped unparsed
    assert not s.sent(theirs) and not core.flows.bindings.all()


def test_every_member_counts_the_resets_copied_at_a_switch_another_member_masters(
        two: tuple[Shell, FakeDatapath, FakeDatapath]) -> None:
    """An instance's reset copies reach every member (OFPT_SET_ASYNC gives the slave role the
    master's packet-ins): refusals copied at m2's switch count at m1 as at its own, so m1
    ejects the instance as m2 does and the members agree on what passive health ejected
    (m1 decides for the clients at its switches); m2's switch is sent nothing."""
    s, mine, theirs = two
    core = s.app.core
    assert s.rest("POST", "instances", {"dsid": DSID, "dbid": "10.0.0.22",
                                        "dma": "smoke"}).status == 201
    assert s.rest("POST", "metrics", {"dbid": "10.0.0.22", "cpu": 0.1, "sessions": 0,
                                      "queue": 0, "capacity": 10}).status == 200
    arp(s, theirs, INSTANCE)  # the instance lives at m2's switch (m1 learns it there)
    s.sent(mine)
    ip, mac, port = INSTANCE
    frame = bytearray(tcp_frame(mac, CLIENT[1], ip, CLIENT[0], 8000, 40000))
    frame[47] = TCP_RST | TCP_ACK  # the kernel's answer to a SYN nobody listens for
    for n in range(3):
        s.switch_says(copied_reset(40 + n, port, core.programmer.label(ip), bytes(frame)),
                      dp=theirs)
    assert core.counters["health_refusals"] == 3
    assert core.health.state.ejected == {ip}
    assert not s.sent(theirs)
