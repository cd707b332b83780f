"""Passive health: an instance whose host refuses new connections is ejected for new flows.

Figure 2 over fake switches (svc1 `reactive`: e21 at r2 port 2, e31 at r3 port 1; c1 at r1).
A reset e21 sends is delivered to the client from the D-SID, as any reply, and a copy goes
to the controller through the health meter; refusals (RST+ACK, sequence 0) eject e21, the
end of an established connection (its own sequence number) does not.
"""

from __future__ import annotations

import dataclasses
import struct
from pathlib import Path

import pytest

from apps.ofmsg import serialise
from apps.store import Store
from controller.config import config_from_toml
from controller.core import Core
from controller.dataplane.healthpunt import (
    HEALTH_METER,
    TABLE_HEALTH,
    entries_for,
    health_cookie,
)
from controller.dataplane.labels import FIRST_LABEL, LABEL_LIMIT
from controller.errors import ConfigError, ValidationError
from controller.instances.health import (
    HealthConfig,
    PassiveHealth,
    health_from_dict,
    is_refusal,
)
from controller.intents import CookieKind, FlowMod, cookie_kind
from controller.limits import Limits
from controller.model import AffinityPolicy
from controller.network.packet import (
    ARP_REQUEST,
    BROADCAST,
    TCP_ACK,
    TCP_RST,
    TCP_SYN,
    build_arp,
)
from tests.fakeoftable import FakeOFTable, Hop, Result, frame_of
from tests.fakes import FakeDatapath, framework_bytes
from tests.helpers import PORTS
from tests.test_pipelines import DSID, E21, E31, SERVICES, Figure2, to_dsid
from tests.test_reconcile import read, reconcile, rediscover

ON = HealthConfig(enabled=True)


def _figure2(health: HealthConfig = ON) -> Figure2:
    return Figure2(SERVICES["reactive"], health=health)


def _rst(fig: Figure2, hop: Hop, seq: int, flags: int = TCP_RST | TCP_ACK) -> Result:
    """The instance the packet `hop` reached answers it with a reset of sequence `seq`."""
    back = {"eth_src": hop["eth_dst"], "eth_dst": hop["eth_src"], "eth_type": 0x0800,
            "ipv4_src": hop["ipv4_dst"], "ipv4_dst": hop["ipv4_src"], "ip_proto": 6,
            "tcp_src": hop["tcp_dst"], "tcp_dst": hop["tcp_src"], "tcp_flags": flags,
            "tcp_seq": seq}
    return fig._answer(fig.net.send(hop.dpid, hop.port, back, fig.now))


def _syn(fig: Figure2, sport: int) -> Hop:
    """c1 opens a connection from `sport`: the SYN as the instance receives it."""
    return fig.send("c1", to_dsid("c1", sport, TCP_SYN)).only()


def _refuse_until(fig: Figure2, dbid: str, count: int, sport: int = 40000) -> int:
    """`count` new connections placed on `dbid` are refused by its host (others are answered
    normally); the next free source port."""
    refused = 0
    while refused < count:
        hop = _syn(fig, sport)
        if fig.instance(hop) == dbid:
            _rst(fig, hop, 0)
            refused += 1
        sport += 1
    return sport


def _places(fig: Figure2, sports: range) -> set[str]:
    """Where the new connections from `sports` go."""
    return {fig.instance(_syn(fig, s)) for s in sports}


def _frame(flags: int, seq: int, proto: int = 6) -> bytes:
    fields: dict[str, int | str] = {"eth_src": "00:00:00:00:00:21", "eth_dst": "00:00:00:00:00:01",
                                    "eth_type": 0x0800, "ipv4_src": E21, "ipv4_dst": "10.0.0.1",
                                    "ip_proto": proto}
    if proto == 6:
        fields.update(tcp_src=8000, tcp_dst=40000, tcp_flags=flags, tcp_seq=seq)
    else:
        fields.update(udp_src=8000, udp_dst=40000)
    return frame_of(fields)


def test_a_reset_refusing_a_syn_is_told_apart_from_the_end_of_a_connection() -> None:
    """RST+ACK with sequence 0 refuses a SYN; a reset with the connection's sequence number, a
    reset without ACK, a SYN-ACK, UDP and a short frame are not refusals."""
    assert is_refusal(_frame(TCP_RST | TCP_ACK, 0))
    assert not is_refusal(_frame(TCP_RST | TCP_ACK, 123456789))
    assert not is_refusal(_frame(TCP_RST, 0))
    assert not is_refusal(_frame(TCP_SYN | TCP_ACK, 0))
    assert not is_refusal(_frame(0, 0, proto=17))
    assert not is_refusal(_frame(TCP_RST | TCP_ACK, 0)[:40])


def _reset_at_switch(fig: Figure2) -> tuple[Hop, Result]:
    """c1 sends a SYN; the instance it reaches answers with a reset refusing it: where the
    reset went at the switches (the controller is not handed the copy)."""
    hop = _syn(fig, 40000)
    return hop, fig.net.send(hop.dpid, hop.port, {
        "eth_src": hop["eth_dst"], "eth_dst": hop["eth_src"], "eth_type": 0x0800,
        "ipv4_src": hop["ipv4_dst"], "ipv4_dst": hop["ipv4_src"], "ip_proto": 6,
        "tcp_src": hop["tcp_dst"], "tcp_dst": hop["tcp_src"], "tcp_flags": TCP_RST | TCP_ACK},
        fig.now)


def test_with_passive_health_off_no_reset_is_copied() -> None:
    """Off (`enabled = false`): the reset reaches the client; no copy, no health entry."""
    off = _figure2(HealthConfig(enabled=False))
    _, res = _reset_at_switch(off)
    assert res.is_output(1, dpid=1, ipv4_src=DSID) and not res.packet_ins, res
    assert not any(fm.table == TABLE_HEALTH for sw in off.net.switches.values()
                   for fm in sw.entries())


def test_three_refusals_eject_the_instance_for_new_flows_and_bound_flows_stay() -> None:
    """After `consecutive` refusals, new connections go to the other instance only, the
    decision shows the instance `ejected`; a flow bound to it before keeps it."""
    fig = _figure2()
    placed = {s: fig.instance(_syn(fig, s)) for s in range(30000, 30008)}
    bound = next(s for s, d in placed.items() if d == E21)
    assert _places(fig, range(31000, 31010)) == {E21, E31}
    sport = _refuse_until(fig, E21, 2)
    assert fig.core.counters["health_ejections"] == 0
    _refuse_until(fig, E21, 1, sport)
    assert fig.core.counters["health_ejections"] == 1
    assert _places(fig, range(32000, 32020)) == {E31}
    decision = fig.core.engine.decisions[(1, "svc1")]
    assert {c.dbid: c.state for c in decision.candidates}[E21] == "ejected"
    assert fig.go(bound)[0] == E21  # its connection lives (or dies) on its own


def test_resets_ending_established_connections_eject_nothing() -> None:
    """Resets carrying a connection's sequence number are not refusals, however many."""
    fig = _figure2()
    sport = 40000
    for _ in range(10):
        while fig.instance(hop := _syn(fig, sport)) != E21:
            sport += 1
        _rst(fig, hop, 987654 + sport)
        sport += 1
    assert fig.core.counters["health_resets"] >= 10
    assert fig.core.counters["health_ejections"] == 0
    assert _places(fig, range(33000, 33010)) == {E21, E31}


def test_only_the_instances_resets_with_ack_are_copied_and_none_else_ejects() -> None:
    """A reset without ACK (the instance answering a stray segment, e.g. of a flow a drain
    deadline moved to it: sequence = that segment's ACK, even 0) reaches the client and is
    not copied; nor is the client's own reset (RST+ACK, sequence 0) to the instance. Only
    the instance's RST+ACK is, and it alone can eject."""
    fig = _figure2()
    sport = 40000
    for _ in range(6):
        while fig.instance(hop := _syn(fig, sport)) != E21:
            sport += 1
        res = fig.net.send(hop.dpid, hop.port, {
            "eth_src": hop["eth_dst"], "eth_dst": hop["eth_src"], "eth_type": 0x0800,
            "ipv4_src": hop["ipv4_dst"], "ipv4_dst": hop["ipv4_src"], "ip_proto": 6,
            "tcp_src": hop["tcp_dst"], "tcp_dst": hop["tcp_src"], "tcp_flags": TCP_RST},
            fig.now)
        assert res.is_output(1, dpid=1, ipv4_src=DSID) and not res.packet_ins, res
        fig.send("c1", to_dsid("c1", sport, TCP_RST | TCP_ACK))
        sport += 1
    assert fig.core.counters["health_resets"] == 0
    assert _places(fig, range(38000, 38010)) == {E21, E31}
    _refuse_until(fig, E21, 3, sport)
    assert fig.core.counters["health_resets"] == 3
    assert fig.core.counters["health_ejections"] == 1


def test_a_service_without_a_port_gets_no_reset_copies() -> None:
    """Every port of its D-SID reaches the instance: a client trying closed ports would
    eject a healthy instance, so its resets are not copied (and eject nothing)."""
    fig = Figure2(dataclasses.replace(SERVICES["reactive"], port=None), health=ON)
    svc1 = {health_cookie(fig.core.programmer.label(d)) for d in (E21, E31)}
    assert not [fm for sw in fig.net.switches.values() for fm in sw.entries()
                if fm.table == TABLE_HEALTH and fm.cookie in svc1]
    _refuse_until(fig, E21, 5)
    assert fig.core.counters["health_resets"] == 0
    assert _places(fig, range(39000, 39010)) == {E21, E31}


def test_a_drained_instances_refusals_eject_nothing_and_undrained_it_takes_flows_at_once(
) -> None:
    """A draining instance that closed its listener (a graceful stop) refuses its bound
    clients' retries: counted as refusals, they eject nothing (it gets no new flows anyway),
    so when it is undrained it takes new flows at once, not after an ejection's base time."""
    fig = _figure2()
    hops, sport = [], 40000
    while len(hops) < 4:
        if fig.instance(hop := _syn(fig, sport)) == E21:
            hops.append(hop)
        sport += 1
    fig.apply(fig.core.drain(E21, None, fig.now)[1])
    for hop in hops:
        _rst(fig, hop, 0)
    assert fig.core.counters["health_refusals"] == 4
    assert fig.core.counters["health_ejections"] == 0
    fig.apply(fig.core.undrain(E21, fig.now)[1])
    assert _places(fig, range(38500, 38510)) == {E21, E31}


def test_refusals_spread_beyond_the_window_eject_nothing() -> None:
    """Refusals further apart than `window_s` are not consecutive failures."""
    fig = _figure2()
    sport = 40000
    for _ in range(4):
        sport = _refuse_until(fig, E21, 1, sport)
        fig.now += 1.5
    assert fig.core.counters["health_ejections"] == 0


def test_the_last_instance_not_ejected_is_never_ejected() -> None:
    """With one instance ejected (50 % of two), the other's refusals eject nothing: the
    service keeps somewhere to send new flows."""
    fig = _figure2()
    sport = _refuse_until(fig, E21, 3)
    assert _places(fig, range(34000, 34005)) == {E31}
    _refuse_until(fig, E31, 5, sport)
    assert fig.core.counters["health_ejections"] == 1
    assert _places(fig, range(35000, 35005)) == {E31}


def test_a_new_connection_reusing_a_flow_bound_to_an_ejected_instance_is_decided_afresh(
) -> None:
    """A client reusing the ports of a flow still bound to the ejected instance (a refused
    connection's, whose binding stays) opens a new connection: its SYN reaches the controller
    and goes to the other instance, while a held flow's packets stay on the ejected one; once
    the ejection ends, the guards come off and such a SYN follows its binding in the switch."""
    fig = _figure2()
    placed = {s: fig.instance(_syn(fig, s)) for s in range(30000, 30008)}
    held = next(s for s, d in placed.items() if d == E21)
    sport = _refuse_until(fig, E21, 3)
    assert fig.core.counters["health_ejections"] == 1
    refused = [s for s in range(40000, sport) if fig.go(s)[0] == E21]
    assert len(refused) == 3, refused  # bound to E21 still
    for s in refused:
        assert fig.go(s, TCP_SYN) == (E31, True), s
        assert fig.go(s, TCP_ACK) == (E31, False), s
    assert fig.go(held, TCP_ACK) == (E21, False)
    assert fig.core.counters["new_connections_rebound"] == 3
    fig.now += 2.5  # past base_eject_s
    fig.report()
    assert fig.core.counters["health_unejections"] == 1
    assert fig.go(held, TCP_SYN) == (E21, False)
    assert not [fm for sw in fig.net.switches.values() for fm in sw.entries()
                if (cookie_kind(fm.cookie) or (None,))[0] == CookieKind.SYN_GUARD]


def test_past_the_binding_cap_an_ejected_instances_slots_move_to_the_other() -> None:
    """An ingress past its binding cap serves new flows statelessly by slot: once the refusals
    of the flows whose slots reach e21 eject it, every slot reaches e31."""
    fig = Figure2(SERVICES["reactive"], Limits(affinity_per_ingress=2), health=ON)
    for s in (30000, 30002):
        _syn(fig, s)
    slots = {s: fig.instance(_syn(fig, s)) for s in range(42000, 42032, 2)}
    assert set(slots.values()) == {E21, E31}, slots
    assert fig.core.bindings.count_at(1) == 2  # served in the switch, unbound
    for s in [s for s, d in slots.items() if d == E21][:3]:
        _rst(fig, _syn(fig, s), 0)
    assert fig.core.counters["health_ejections"] == 1
    assert {fig.instance(_syn(fig, s)) for s in slots} == {E31}


@pytest.mark.parametrize("mode", ["reactive", "bucket"])
def test_an_ejected_instance_is_no_failover_backup(mode: str) -> None:
    """With switch-local failover, e31 is e21's backup; once e31 is ejected, e21's access
    port going down no longer sends e21's flows to e31 (whose host refuses them) but to the
    controller or nowhere, until the ejection ends: then e31 is the backup again."""
    fig = Figure2(dataclasses.replace(SERVICES[mode], failover=True), health=ON)
    placed = {s: fig.instance(_syn(fig, s)) for s in range(30000, 30016)}
    on_e21 = [s for s, d in placed.items() if d == E21]
    assert on_e21, placed
    _refuse_until(fig, E31, 1, 31000)
    _refuse_until(fig, E31, 2, 32000)
    assert fig.core.counters["health_ejections"] == 1
    r2 = fig.net.switch(2)
    r2.down.add(2)  # e21's access port (only r2 knows)
    for s in on_e21:
        res = fig.send("c1", to_dsid("c1", s, TCP_ACK))
        assert not [h for h in res.outputs if h.has(ipv4_dst=E31)], (s, res)
    r2.down.clear()
    fig.now += 2.5
    fig.report()
    assert fig.core.counters["health_unejections"] == 1
    r2.down.add(2)
    assert {fig.instance(fig.send("c1", to_dsid("c1", s, TCP_ACK)).only()) for s in on_e21} \
        == {E31}


def test_a_group_bound_to_an_ejected_instance_opens_new_connections_elsewhere() -> None:
    """svc1 with a `3-tuple` key: c1's connections all follow one binding. Its instance's
    host refuses three of them: ejected, and c1's next new connection gets an exception at
    the other instance while c1's open connection stays where it is."""
    svc = dataclasses.replace(SERVICES["reactive"], affinity=AffinityPolicy("3-tuple", 30, 0))
    fig = Figure2(svc, health=ON)
    held = 30000
    first = fig.instance(_syn(fig, held))
    other = E31 if first == E21 else E21
    for s in range(30001, 30004):
        hop = _syn(fig, s)
        assert fig.instance(hop) == first
        _rst(fig, hop, 0)
    assert fig.core.counters["health_ejections"] == 1
    assert fig.go(30004, TCP_SYN) == (other, True)
    assert fig.go(30004, TCP_ACK) == (other, False)
    assert fig.go(held, TCP_ACK) == (first, False)
    assert fig.core.counters["new_connections_excepted"] == 1


@pytest.mark.parametrize("mode", ["learn", "bucket"])
def test_switch_held_a_group_bound_to_an_ejected_instance_opens_new_connections_elsewhere(
        mode: str) -> None:
    """The same in the switch-deciding dataplanes with a `source` key: c1's connections follow
    one entry the switch holds (`learn`: learned; `bucket`: the pin the ejection's move made of
    c1's open connection). c1's next new connection reaches the controller once and gets an
    exception at the other instance; its open connection stays where it is."""
    svc = dataclasses.replace(SERVICES[mode], affinity=AffinityPolicy("source", 30, 0))
    fig = Figure2(svc, health=ON)
    held = 30000
    first = fig.instance(_syn(fig, held))
    other = E31 if first == E21 else E21
    assert fig.go(held, TCP_ACK) == (first, False)
    for s in range(30001, 30004):
        hop = _syn(fig, s)
        assert fig.instance(hop) == first
        _rst(fig, hop, 0)
        assert fig.go(held, TCP_ACK) == (first, False)  # (bucket: its pin, once moving)
    assert fig.core.counters["health_ejections"] == 1
    assert fig.go(30004, TCP_SYN) == (other, True)
    assert fig.go(30004, TCP_ACK) == (other, False)
    assert fig.go(held, TCP_ACK) == (first, False)
    assert fig.core.counters["new_connections_excepted"] == 1


def test_an_ejection_ends_at_the_first_report_after_its_base_time() -> None:
    """A report before the base time keeps the instance out; the first after ends the
    ejection and the instance takes new flows again."""
    fig = _figure2()
    _refuse_until(fig, E21, 3)
    fig.now += 1.0
    fig.report()
    assert _places(fig, range(36000, 36010)) == {E31}
    fig.now += 1.5  # past base_eject_s (2 s)
    fig.report()
    assert fig.core.counters["health_unejections"] == 1
    assert _places(fig, range(37000, 37010)) == {E21, E31}


def test_the_audit_keeps_the_health_entries_and_puts_back_lost_ones() -> None:
    """Reconciliation treats the reset-copy entries as part of what a switch should hold."""
    fig = _figure2()
    sw = fig.net.switch(2)
    held = [fm for fm in sw.entries() if (cookie_kind(fm.cookie) or (None,))[0]
            == CookieKind.HEALTH]
    assert len(held) == 4, held  # e21's and e22's two entries at r2 (one host, two D-BIDs)
    reconcile(fig, 2)
    assert [fm for fm in sw.entries() if fm in held] == held
    sw.tables[TABLE_HEALTH] = []
    reconcile(fig, 2)
    assert any(e.table == TABLE_HEALTH for e in read(fig, 2))


def test_ejection_state_machine_counts_and_limits() -> None:
    """Base time grows with each ejection (capped); max_eject_percent bounds how many."""
    health = PassiveHealth(HealthConfig(enabled=True, consecutive=2, base_eject_s=1.0,
                                        max_eject_s=2.5, max_eject_percent=50.0))
    pool = ["a", "b", "c", "d"]
    assert not health.refused("a", pool, 0.0)
    assert health.refused("a", pool, 0.1)
    assert health.until("a") == pytest.approx(1.1)
    assert not health.reported("a", 1.0) and health.reported("a", 1.2)
    health.refused("a", pool, 2.0)
    assert health.refused("a", pool, 2.0) and health.until("a") == pytest.approx(4.0)
    health.refused("b", pool, 2.0)
    assert health.refused("b", pool, 2.0)  # 2 of 4: 50 %
    health.refused("c", pool, 2.0)
    assert not health.refused("c", pool, 2.0)  # a third would pass 50 %
    assert health.ejected == {"a", "b"}
    health.reported("a", 10.0)
    health.refused("a", pool, 11.0)
    assert health.refused("a", pool, 11.0) and health.until("a") == pytest.approx(13.5)
    off = PassiveHealth(HealthConfig(enabled=False))
    assert not any(off.refused("a", pool, t) for t in (0.0, 0.1, 0.2, 0.3))


@pytest.mark.parametrize(("table", "key"), [
    ({"consecutive": 0}, "controller.health.consecutive"),
    ({"window_s": -1}, "controller.health.window_s"),
    ({"max_eject_percent": 101}, "controller.health.max_eject_percent"),
    ({"base_eject_s": 10, "max_eject_s": 5}, "controller.health.max_eject_s"),
    ({"enabled": "yes"}, "controller.health.enabled"),
    ({"punt_pps": 0}, "controller.health.punt_pps"),
    ({"bogus": 1}, "controller.health.bogus"),
])
def test_a_bad_health_setting_is_refused_naming_its_key(table: dict[str, object],
                                                        key: str) -> None:
    """Each bad value raises an error that names the key; the TOML file is refused too."""
    with pytest.raises(ValidationError) as err:
        health_from_dict(table)
    assert key in str(err.value)
    text = "[controller.health]\n" + "".join(
        f"{k} = {v!r}\n".replace("'", '"') for k, v in table.items())
    with pytest.raises((ConfigError, ValidationError)) as err2:
        config_from_toml(text, "dyncast.toml")
    assert key in str(err2.value)


def test_health_is_on_by_default_and_parsed_when_given() -> None:
    """No [controller.health]: on (issue 22: what users get is what is benchmarked); given,
    its values are taken, `enabled = false` too."""
    assert config_from_toml("", "x").health == HealthConfig(enabled=True)
    assert not config_from_toml("[controller.health]\nenabled = false\n", "x").health.enabled
    cfg = config_from_toml("[controller.health]\nenabled = true\nconsecutive = 5\n", "x").health
    assert dataclasses.astuple(cfg)[:2] == (True, 5)
    assert struct.calcsize("!I5xB") == 10  # the offsets is_refusal reads (seq, flags)


def test_the_health_entries_serialise_as_the_framework_makes_them(dp: FakeDatapath) -> None:
    """The reset-copy entries (reg2 match and load, Nicira tcp_flags, resubmits, meter 2)
    and their deletes go out as the framework's own messages would."""
    svc = SERVICES["reactive"]
    entries = entries_for(svc, 2, 2, E21, 37)
    intents = [*entries, *(dataclasses.replace(fm, actions=(), meter=None,
                                               command="delete_strict") for fm in entries)]
    dp.xid = 10
    assert serialise(dp, intents) == b"".join(
        framework_bytes(dp, i, x) for x, i in enumerate(intents, start=11))


@pytest.mark.parametrize("mode", ["reactive", "learn", "bucket", "conntrack", "learn-overlay",
                                  "bucket-overlay"])
def test_in_every_dataplane_a_reset_is_delivered_as_a_reply_and_copied_once(mode: str) -> None:
    """Whatever the dataplane, the reset an instance sends reaches the client from the D-SID,
    as any reply (the binding's or bucket's rewrite still applies), and one copy reaches the
    controller through the health meter, with the health entry's cookie, from the instance's
    own port."""
    hop, res = _reset_at_switch(Figure2(SERVICES[mode], health=ON))
    assert res.is_output(1, dpid=1, ipv4_src=DSID, ipv4_dst="10.0.0.1", tcp_src=8000), res
    assert len(res.outputs) == 1, res
    copies = [h for h in res.packet_ins
              if (cookie_kind(h.cookie) or (None,))[0] == CookieKind.HEALTH]
    assert len(copies) == 1 and HEALTH_METER in res.meters, res
    assert copies[0].port == hop.port


def test_a_restarted_controller_keeps_the_switches_reset_copies(tmp_path: Path) -> None:
    """After a restart, before the instances are located again, the audit keeps their
    reset-copy entries (as it keeps host routes); once located, they are the expected ones,
    and a refusal still counts."""
    fig = _figure2()
    store = Store(f"sqlite:///{tmp_path / 'dyncast.db'}")
    held = {d: sorted(map(repr, _health_entries(sw))) for d, sw in fig.net.switches.items()}
    assert held[2] and held[3]
    store.apply(fig.core.drain_writes())
    snap = store.load()
    fig.core = Core(fig.core.config)
    fig.core.restore(snap.services, snap.instances, snap.bindings, fig.now)
    for dpid, ports in PORTS.items():
        fig.apply(fig.core.switch_connected(dpid, reads_table=True))
        fig.apply(fig.core.switch_ports(dpid, ports, fig.now))
        reconcile(fig, dpid)
    assert {d: sorted(map(repr, _health_entries(sw)))
            for d, sw in fig.net.switches.items()} == held
    rediscover(fig)
    for dpid in PORTS:
        reconcile(fig, dpid)
    assert {d: sorted(map(repr, _health_entries(sw)))
            for d, sw in fig.net.switches.items()} == held
    fig.report()
    _refuse_until(fig, E21, 3)
    assert fig.core.counters["health_ejections"] == 1


def _health_entries(sw: FakeOFTable) -> list[FlowMod]:
    return [fm for fm in sw.entries() if (cookie_kind(fm.cookie) or (None,))[0]
            == CookieKind.HEALTH]


@pytest.mark.parametrize("mode", ["learn", "bucket", "conntrack", "bucket-overlay"])
def test_in_the_switch_deciding_dataplanes_an_ejected_instance_gets_no_new_connection(
        mode: str) -> None:
    """learn, bucket, conntrack: the ejection moves the instance's buckets, and new
    connections of a moving bucket go to the new instance at once (not after SYN_DELAY_S:
    the old one refuses them); its flows are pinned as in any move."""
    fig = Figure2(SERVICES[mode], health=ON)
    assert _places(fig, range(31000, 31030)) == {E21, E31}
    _refuse_until(fig, E21, 3)
    assert fig.core.counters["health_ejections"] == 1
    assert _places(fig, range(32000, 32040)) == {E31}


@pytest.mark.parametrize("mode", ["reactive", "bucket", "conntrack-overlay"])
def test_each_tcp_instance_adds_two_entries_at_its_own_switch_and_none_elsewhere(
        mode: str) -> None:
    """What passive health adds to a switch's table (the count docs/configuration.md gives
    under [limits]): two entries per located instance of a TCP service with a port, at the
    instance's switch; none at a switch without instances."""
    on = _figure2(HealthConfig())
    off = _figure2(HealthConfig(enabled=False))
    at: dict[int, int] = {}
    for inst in on.core.catalogue.instances.values():
        dpid = on.core.topology.hosts[inst.dbid].dpid
        at[dpid] = at.get(dpid, 0) + 2
    assert {d: len(sw.entries()) - len(off.net.switch(d).entries())
            for d, sw in on.net.switches.items()} == {d: at.get(d, 0) for d in on.net.switches}
    assert at == {2: 4, 3: 4}


def test_a_withdrawn_instance_leaves_no_ejection_behind() -> None:
    """An ejected instance its D-MA withdraws is forgotten: not counted as ejected, and when it
    registers again (its service restarted) it takes new flows at once, not after the rest of
    an ejection from its earlier life; deleting a service forgets its instances' too."""
    fig = _figure2()
    _refuse_until(fig, E21, 3)
    assert fig.core.health.state.ejected == {E21}
    fig.apply(fig.core.withdraw(E21, fig.now))
    assert fig.core.health.state.ejected == set()
    fig.apply(fig.core.register(DSID, E21, "dma", True, fig.now)[1])
    fig.report()
    assert _places(fig, range(33000, 33010)) == {E21, E31}
    _refuse_until(fig, E31, 3, 34000)
    assert fig.core.health.state.ejected == {E31}
    fig.apply(fig.core.delete_service(fig.svc.name))
    assert fig.core.health.state.ejected == set()


def test_with_every_label_in_use_a_new_instance_gets_no_reset_copies_and_is_served() -> None:
    """Labels (16 bits) are never given back while the controller runs; passive health takes
    one for each located TCP instance, whatever the dataplane. With none left, an instance
    located next gets no reset-copy entries, and its service is recomputed and served as
    before (it was: every recompute of the service raised)."""
    fig = _figure2()
    labels = fig.core.programmer.labels
    for label in range(FIRST_LABEL, LABEL_LIMIT):
        if labels.dbid_of(label) is None:
            labels.restore(f"gone-{label}", label)  # withdrawn long ago: kept
    new = "10.0.0.23"
    fig.apply(fig.core.register(DSID, new, "dma", True, fig.now)[1])
    fig.apply(fig.core.packet_in(2, 2, build_arp(ARP_REQUEST, "00:00:00:00:00:23", new,
                                                 BROADCAST, "10.0.0.254"), fig.now))
    fig.load[new] = 0
    fig.report()
    assert new in {_syn(fig, s)["ipv4_dst"] for s in range(35000, 35060)}  # served
    assert len(_health_entries(fig.net.switch(2))) == 4  # e21's and e22's, none for it


def test_a_copy_counts_only_from_where_the_instance_its_label_names_is_attached() -> None:
    """A reset copy whose label names e21 counts for e21 only when it comes from e21's port,
    from e21's address (or the D-SID): in a cluster every member counts copies of entries
    another member numbered, and two D-BIDs whose labels clashed may be numbered the other way
    round there. Copies from e31's port with e21's number eject nobody."""
    fig = _figure2()
    label = fig.core.programmer.label(E21)
    e31 = _frame(TCP_RST | TCP_ACK, 0).replace(bytes([10, 0, 0, 21]), bytes([10, 0, 0, 31]))
    for _ in range(5):
        fig.apply(fig.core.health.reset(health_cookie(label), 3, 1, e31, fig.now))
        fig.apply(fig.core.health.reset(health_cookie(label), 2, 2, e31, fig.now))
    assert fig.core.health.state.ejected == set()
    assert fig.core.counters["health_resets_foreign"] == 10
    for _ in range(3):
        fig.apply(fig.core.health.reset(health_cookie(label), 2, 2, _frame(TCP_RST | TCP_ACK, 0),
                                        fig.now))
    assert fig.core.health.state.ejected == {E21}
