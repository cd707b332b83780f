"""The per-ingress cap on reactive bindings: past it, new flows are served statelessly through
the decision (controller/dataplane/overflow.py), on Figure 2 over the fake switches."""

from __future__ import annotations

import dataclasses
from collections import Counter

import pytest

from apps.metrics import Metrics
from controller.config import config_from_dict
from controller.errors import ValidationError
from controller.instances.liveness import LIVENESS_PORT
from controller.intents import VIRTUAL_MAC, CookieKind, FlowMod, Match, cookie_kind
from controller.limits import Limits, limits_from_dict
from controller.network.packet import TCP_ACK, TCP_SYN
from tests.fakeoftable import FakeOFTable
from tests.helpers import HOSTS, PORTS
from tests.test_pipelines import (
    DSID,
    E21,
    E31,
    IDLE_S,
    SERVICES,
    Figure2,
    connect,
    to_dsid,
)
from tests.test_reconcile import reconcile

CAP = 4
BOUND = range(40000, 40000 + 2 * CAP, 2)  # fills the cap at s1
PAST = range(42000, 42032, 2)  # 16 flows, two in each of the 8 slots


def capped_fig() -> Figure2:
    fig = Figure2(SERVICES["reactive"], Limits(affinity_per_ingress=CAP))
    return fig


def bindings_at(fig: Figure2, dpid: int) -> int:
    return fig.core.bindings.count_at(dpid)


def test_past_the_cap_new_flows_are_served_statelessly_and_bound_ones_keep_their_instance() -> None:
    fig = capped_fig()
    placed = connect(fig, BOUND)
    assert bindings_at(fig, 1) == CAP
    first = fig.send("c1", to_dsid("c1", PAST[0], TCP_SYN))
    assert first.to_controller  # the flow that finds s1 full
    reached = {PAST[0]: fig.instance(first.only())}
    for sport in PAST[1:]:
        dbid, punted = fig.go(sport, TCP_SYN)
        assert not punted  # the overflow entries serve it in the switch
        reached[sport] = dbid
    for sport in PAST:  # later packets: same instance, never the controller
        assert fig.go(sport) == (reached[sport], False)
    assert Counter(reached.values()) == {E21: 8, E31: 8}  # the decision's even shares
    assert bindings_at(fig, 1) == CAP and len(fig.core.bindings) == CAP
    assert fig.core.counters["stateless_flows"] == 1 and fig.core.counters["overflow_on"] == 1
    for sport in PAST[:4]:  # the replies come back from the D-SID
        back = fig.reply(fig.send("c1", to_dsid("c1", sport)).only())
        assert not back.to_controller
        ip, mac, dpid, port = HOSTS["c1"]
        assert back.only().dpid == dpid and back.only().port == port
        assert back.only().has(ipv4_src=DSID, ipv4_dst=ip, tcp_dst=sport, eth_dst=mac)
    assert {s: fig.go(s) for s in BOUND} == {s: (placed[s], False) for s in BOUND}


def test_a_client_on_the_probe_port_still_gets_its_replies_from_the_d_sid() -> None:
    """The entry that lets the liveness probes' answers through unrewritten must not catch a
    client whose own port happens to be the probes' (LIVENESS_PORT, in Linux's ephemeral range):
    its replies come from the D-SID like every other stateless flow's."""
    fig = capped_fig()
    connect(fig, BOUND)
    fig.send("c1", to_dsid("c1", PAST[0], TCP_SYN))  # overflow on at s1
    first = fig.send("c1", to_dsid("c1", LIVENESS_PORT, TCP_SYN))
    assert not first.to_controller
    back = fig.reply(first.only())
    ip, mac, dpid, port = HOSTS["c1"]
    assert back.only().dpid == dpid and back.only().port == port
    assert back.only().has(ipv4_src=DSID, ipv4_dst=ip, tcp_dst=LIVENESS_PORT, eth_dst=mac)
    probe_answer = {"eth_src": HOSTS["e21"][1], "eth_dst": VIRTUAL_MAC, "eth_type": 0x0800,
                    "ipv4_src": E21, "ipv4_dst": DSID, "ip_proto": 6, "tcp_src": 8000,
                    "tcp_dst": LIVENESS_PORT, "tcp_flags": TCP_SYN | TCP_ACK}
    seen = fig.net.send(1, 10, probe_answer, fig.now)  # through s1 from the core
    assert [h.has(ipv4_src=E21) for h in seen.packet_ins] == [True]  # still from the D-BID


def test_other_ingresses_still_bind() -> None:
    fig = capped_fig()
    connect(fig, BOUND)
    fig.go(PAST[0], TCP_SYN)
    _, punted = fig.go(PAST[0], TCP_SYN, client="c2")
    assert punted and bindings_at(fig, HOSTS["c2"][2]) == 1


def test_stateless_flows_keep_their_instance_while_it_serves_and_move_when_it_drains() -> None:
    fig = capped_fig()
    connect(fig, BOUND)
    reached = {sport: fig.go(sport, TCP_SYN)[0] for sport in PAST}
    fig.busy(E21)  # the decision's shares move to E31: no slot moves
    assert {s: fig.go(s) for s in PAST} == {s: (reached[s], False) for s in PAST}
    fig.apply(fig.core.drain(E21, None, fig.now)[1])  # E21 takes no new flows: its slots move
    assert {fig.go(sport)[0] for sport in PAST} == {E31}
    assert {fig.go(sport)[1] for sport in PAST} == {False}
    assert len(fig.core.bindings) == CAP


def test_under_the_low_water_mark_new_flows_are_bound_again_and_live_ones_keep_their_instance(
        ) -> None:
    fig = capped_fig()
    connect(fig, BOUND)
    reached = {s: fig.go(s, TCP_SYN)[0] for s in PAST[:2]}
    fig.advance(fig.now + IDLE_S - 2)
    for s in PAST[:2]:  # the stateless connections stay busy; the bound ones idle out
        assert fig.go(s) == (reached[s], False)
    fig.advance(fig.now + 3)
    assert bindings_at(fig, 1) == 0 and fig.core.counters["overflow_off"] == 1
    for s in PAST[:2]:  # their next packet binds them to the instance they were on
        assert fig.go(s)[0] == reached[s]
        assert fig.reply(fig.send("c1", to_dsid("c1", s, TCP_ACK)).only()).only().has(
            ipv4_src=DSID)
    assert bindings_at(fig, 1) == 2 and fig.core.counters["stateless_flows"] == 1
    _, punted = fig.go(43000, TCP_SYN)  # a new connection is bound again
    assert punted and bindings_at(fig, 1) == 3


def test_a_reconnected_switch_gets_its_overflow_entries_back() -> None:
    fig = capped_fig()
    connect(fig, BOUND)
    reached = {s: fig.go(s, TCP_SYN)[0] for s in PAST}
    fig.net.switches[1] = FakeOFTable(1, fig.net.conntrack)  # emptied
    fig.apply(fig.core.switch_connected(1))
    fig.apply(fig.core.switch_ports(1, PORTS[1], fig.now))
    fig.go(44000, TCP_SYN)  # a new flow finds the switch full: overflow entries back
    assert {s: fig.go(s) for s in PAST} == {s: (reached[s], False) for s in PAST}


def overflow_entries(fig: Figure2, dpid: int) -> set[tuple[int, int, Match]]:
    return {(fm.table, fm.priority, fm.match) for fm in fig.net.switch(dpid).entries()
            if (split := cookie_kind(fm.cookie)) is not None
            and split[0] in (CookieKind.OVERFLOW, CookieKind.OVERFLOW_REV)}


def test_the_audit_keeps_the_overflow_entries_and_restores_lost_ones() -> None:
    fig = capped_fig()
    connect(fig, BOUND)
    reached = {s: fig.go(s, TCP_SYN)[0] for s in PAST}
    held = overflow_entries(fig, 1)
    # both services: a slot entry each (8 + 64), a reply and a probe entry per instance (2 + 2)
    assert len(held) == 8 + 64 + 2 * 2 + 2 * 2
    reconcile(fig, 1)
    assert overflow_entries(fig, 1) == held
    lost = sorted(held, key=repr)[:3]
    fig.apply([FlowMod(1, t, p, m, command="delete_strict") for t, p, m in lost])
    reconcile(fig, 1)
    assert overflow_entries(fig, 1) == held
    assert {s: fig.go(s) for s in PAST} == {s: (reached[s], False) for s in PAST}


def test_a_restarted_controller_under_the_cap_has_the_audit_delete_them() -> None:
    fig = capped_fig()
    connect(fig, BOUND)
    fig.go(PAST[0], TCP_SYN)
    fig.core.flows.overflow.on.clear()  # (as a new process: overflow off, nothing held)
    fig.core.flows.overflow.reconciler.forget_switch(1)
    reconcile(fig, 1)
    assert overflow_entries(fig, 1) == set()


def test_the_cap_is_configured_and_validated() -> None:
    assert Limits().affinity_per_ingress == 100_000
    assert limits_from_dict({"affinity_per_ingress": 5}).affinity_per_ingress == 5
    for bad in (0, -1, "5", 1.5, True):
        with pytest.raises(ValidationError, match=r"limits\.affinity_per_ingress"):
            limits_from_dict({"affinity_per_ingress": bad})
    cfg = config_from_dict({"limits": {"affinity_per_ingress": 7}})
    assert cfg.limits.affinity_per_ingress == 7


def test_the_cap_is_read_live_so_a_reload_applies_at_once() -> None:
    fig = capped_fig()
    connect(fig, BOUND[:2])
    config = fig.core.config
    fig.core.config = dataclasses.replace(config, limits=Limits(affinity_per_ingress=2))
    _, punted = fig.go(PAST[0], TCP_SYN)
    assert punted and fig.core.counters["stateless_flows"] == 1 and bindings_at(fig, 1) == 2
    assert not fig.go(PAST[1], TCP_SYN)[1]  # the overflow entries serve it


def test_metrics_count_the_stateless_outcome() -> None:
    fig = capped_fig()
    connect(fig, BOUND)
    fig.go(PAST[0], TCP_SYN)
    text = Metrics(fig.core).scrape().decode()
    assert 'dyncast_service_packet_in_outcomes_total{outcome="stateless"} 1.0' in text


def test_a_deleted_service_takes_its_overflow_entries_along() -> None:
    fig = capped_fig()
    connect(fig, BOUND)
    fig.go(PAST[0], TCP_SYN)
    before = overflow_entries(fig, 1)
    fig.apply(fig.core.delete_service("svc1"))
    after = overflow_entries(fig, 1)
    assert after and after < before
    assert not any(("ipv4_dst", DSID) in m or ("ipv4_src", E21) in m or ("ipv4_src", E31) in m
                   for _, _, m in after)
