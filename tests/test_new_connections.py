"""A new connection never follows an old binding to an instance that takes no new flows.

Figure 2, `reactive`, over fake switches: a client reusing the ports of a connection still
bound to a drained instance opens a new connection, which gets a fresh decision; the drained
instance's held connections stay where they are.
"""

from __future__ import annotations

import dataclasses

import pytest

from controller.dataplane.affinity import PRIO_EXCEPTION
from controller.intents import PRIO_AFFINITY
from controller.model import AffinityPolicy, Metrics
from controller.network.packet import BROADCAST, TCP_ACK, TCP_SYN
from controller.views import stats_view
from tests.helpers import HOSTS
from tests.test_pipelines import (
    DSID,
    E21,
    E31,
    FLOWS,
    IDLE_S,
    SERVICES,
    Figure2,
    arp,
    connect,
    to_dsid,
)
from tests.test_reconcile import consistent


def test_a_reused_port_to_a_drained_instance_gets_a_fresh_decision() -> None:
    fig = Figure2(SERVICES["reactive"])
    placed = connect(fig, FLOWS)
    on_e21 = [s for s, d in placed.items() if d == E21]
    assert len(on_e21) >= 2
    fig.apply(fig.core.drain(E21, None, fig.now)[1])
    reused, held = on_e21[0], on_e21[1:]
    assert all(fig.go(s) == (E21, False) for s in held)  # held ones stay, switch alone
    dbid, punted = fig.go(reused, TCP_SYN)  # the port reused by a new connection
    assert (dbid, punted) == (E31, True)
    assert fig.go(reused, TCP_ACK) == (E31, False)
    assert all(fig.go(s) == (E21, False) for s in held)
    assert stats_view(fig.core)["new_connections_rebound"] == 1
    consistent(fig)


def test_undrained_instance_keeps_its_reused_ports_in_the_switch() -> None:
    """Back to taking new flows: the guards come off and a SYN follows its binding at once."""
    fig = Figure2(SERVICES["reactive"])
    placed = connect(fig, FLOWS)
    on_e21 = [s for s, d in placed.items() if d == E21]
    fig.apply(fig.core.drain(E21, None, fig.now)[1])
    fig.apply(fig.core.undrain(E21, fig.now)[1])
    assert fig.go(on_e21[0], TCP_SYN) == (E21, False)
    guards = [fm for sw in fig.net.switches.values() for fm in sw.entries()
              if (fm.cookie >> 48) & 0xFF == 12]
    assert guards == []


@pytest.mark.parametrize("mode", ["learn", "learn-overlay"])
def test_learn_a_reused_port_to_a_drained_instance_gets_a_fresh_decision(mode: str) -> None:
    """learn: a SYN whose 5-tuple the switch learned for a drained instance is decided afresh
    by the switch (no packet-in); the instance's held connections stay on it."""
    fig = Figure2(SERVICES[mode])
    placed = connect(fig, FLOWS)
    on_e21 = [s for s, d in placed.items() if d == E21]
    assert len(on_e21) >= 2
    fig.apply(fig.core.drain(E21, None, fig.now)[1])
    reused, held = on_e21[0], on_e21[1:]
    assert fig.go(reused, TCP_SYN) == (E31, False)
    assert fig.go(reused, TCP_ACK) == (E31, False)
    assert all(fig.go(s) == (E21, False) for s in held)
    back = fig.reply(fig.send("c1", to_dsid("c1", reused)).only())
    assert back.only().has(ipv4_src=DSID, tcp_dst=reused)


def test_learn_a_retransmitted_syn_keeps_its_instance() -> None:
    """learn: a SYN sent again (no decision change meanwhile) reaches the same instance."""
    fig = Figure2(SERVICES["learn"])
    first = {s: fig.go(s, TCP_SYN)[0] for s in FLOWS}
    assert {s: fig.go(s, TCP_SYN)[0] for s in FLOWS} == first


def test_learn_source_affinity_keeps_a_clients_new_connections_with_its_held_ones() -> None:
    """learn with a `source` key: one entry holds all of a client's connections, so a new one
    is not decided afresh (that would move the held ones); it follows them."""
    svc = dataclasses.replace(SERVICES["learn"], affinity=AffinityPolicy("source", IDLE_S, 0))
    fig = Figure2(svc)
    first, _ = fig.go(FLOWS[0], TCP_SYN)
    fig.apply(fig.core.drain(first, None, fig.now)[1])
    assert fig.go(FLOWS[1], TCP_SYN) == (first, False)
    assert fig.go(FLOWS[0], TCP_ACK) == (first, False)


def _grouped(key: str) -> Figure2:
    """svc1 `reactive` with a group key: all of a client's connections share one binding."""
    return Figure2(dataclasses.replace(SERVICES["reactive"],
                                       affinity=AffinityPolicy(key, IDLE_S, 0)))


def _stop_serving(fig: Figure2, dbid: str) -> None:
    """The instance's D-MA reports it not serving (its service died): `inactive`."""
    fig.apply(fig.core.report(dbid, Metrics(sessions=0, queue=0, capacity=10, active=False),
                              fig.now))
    assert fig.core.catalogue.instances[dbid].state == "inactive"


def _serving(fig: Figure2, sport: int, dbid: str) -> None:
    """The client's connection from `sport` is served by `dbid`, its replies from the D-SID."""
    assert fig.go(sport) == (dbid, False)
    back = fig.reply(fig.send("c1", to_dsid("c1", sport)).only())
    assert back.only().has(ipv4_src=DSID, tcp_dst=sport), back


def _excepted(fig: Figure2, first: str, other: str) -> None:
    """c1's next new connection reaches the controller once and gets an exception at `other`,
    switch-held from its resent SYN on; the group's open connection stays on `first`."""
    assert fig.go(FLOWS[1], TCP_SYN) == (other, True)
    assert fig.go(FLOWS[1], TCP_SYN) == (other, False)  # a resent SYN: its exception's entry
    _serving(fig, FLOWS[1], other)
    _serving(fig, FLOWS[0], first)  # the group's open connection stays
    assert stats_view(fig.core)["new_connections_excepted"] == 1
    consistent(fig)


@pytest.mark.parametrize("key", ["3-tuple", "source"])
def test_a_group_whose_instance_stops_serving_opens_new_connections_elsewhere(key: str) -> None:
    """A client's group is bound to an instance whose D-MA then reports it not serving: the
    client's next new connection reaches the controller once and gets an exception of its own
    at the other instance, switch-held from its next packet on; its open connection stays on
    its instance; the audit finds every binding's entries; once the instance serves again,
    new connections follow the group in the switch again."""
    fig = _grouped(key)
    first, _ = fig.go(FLOWS[0], TCP_SYN)
    assert fig.go(FLOWS[0]) == (first, False)
    other = E31 if first == E21 else E21
    _stop_serving(fig, first)
    _excepted(fig, first, other)
    fig.now += 1.5  # (past SETTLE_S: entries sent are taken to be in place)
    r1 = fig.net.switch(1)  # r1 loses its bindings' entries: the next packet of each goes
    r1.tables[0] = [e for e in r1.tables[0]  # to the controller, which puts back its own
                    if not PRIO_AFFINITY <= e.fm.priority <= PRIO_EXCEPTION]
    assert fig.go(FLOWS[1]) == (other, True)
    assert fig.go(FLOWS[0]) == (first, True)
    _serving(fig, FLOWS[1], other)
    fig.apply(fig.core.report(first, Metrics(sessions=0, queue=0, capacity=10), fig.now))
    assert fig.go(FLOWS[2], TCP_SYN) == (first, False)
    _serving(fig, FLOWS[1], other)


def test_a_draining_instance_keeps_its_groups_new_connections() -> None:
    """Draining is not dying: a group's new connections follow it, as the key means."""
    fig = _grouped("3-tuple")
    first, _ = fig.go(FLOWS[0], TCP_SYN)
    fig.apply(fig.core.drain(first, None, fig.now)[1])
    assert fig.go(FLOWS[1], TCP_SYN) == (first, False)
    assert stats_view(fig.core).get("new_connections_excepted", 0) == 0


def _from(fig: Figure2, at: tuple[int, int], sport: int, flags: int = TCP_ACK) -> tuple[str, bool]:
    """`Figure2.go` for c1 plugged in at switch port `at` instead of its own."""
    res = fig._answer(fig.net.send(*at, to_dsid("c1", sport, flags), fig.now))
    return fig.instance(res.only()), res.to_controller


def test_a_moved_client_finds_its_guards_at_its_new_switch() -> None:
    """c1's connections are bound to a drained instance, then c1 moves to another switch: its
    bindings follow it with their SYN guards, so a new connection reusing a held one's ports
    is decided afresh there at once (not only after that switch's next audit); the held ones
    stay on their instance."""
    fig = Figure2(SERVICES["reactive"])
    on_e21 = [s for s, d in connect(fig, FLOWS).items() if d == E21]
    assert len(on_e21) >= 2
    fig.apply(fig.core.drain(E21, None, fig.now)[1])
    fig.apply(fig.core.switch_ports(3, {1, 5, 10}, fig.now))  # a free port at r3
    fig.apply(fig.core.port_changed(1, 1, up=False, now=fig.now))  # c1 unplugged at r1
    ip, mac, _, _ = HOSTS["c1"]
    fig._answer(fig.net.send(3, 5, arp(mac, ip, BROADCAST, "10.0.0.254"), fig.now))
    assert stats_view(fig.core)["client_moves"] == len(FLOWS)
    reused, held = on_e21[0], on_e21[1:]
    assert all(_from(fig, (3, 5), s) == (E21, False) for s in held)
    assert _from(fig, (3, 5), reused, TCP_SYN) == (E31, True)
    assert _from(fig, (3, 5), reused) == (E31, False)
    assert stats_view(fig.core)["new_connections_rebound"] == 1


def test_a_switch_that_lost_a_guarded_binding_gets_its_guard_back_with_it() -> None:
    """r1 loses its entries while c1's connections are bound to a drained instance: the next
    packet of a held connection puts its entries back, and its SYN guard with them, so that a
    new connection reusing its ports is decided afresh rather than sent to the drained one."""
    fig = Figure2(SERVICES["reactive"])
    on_e21 = [s for s, d in connect(fig, FLOWS).items() if d == E21]
    fig.apply(fig.core.drain(E21, None, fig.now)[1])
    fig.now += 1.5  # (past SETTLE_S: entries sent are taken to be in place)
    r1 = fig.net.switch(1)
    r1.tables[0] = [e for e in r1.tables[0]
                    if not PRIO_AFFINITY <= e.fm.priority <= PRIO_EXCEPTION]
    held = on_e21[0]
    assert fig.go(held) == (E21, True)  # the controller puts its entries back
    assert fig.go(held) == (E21, False)
    assert fig.go(held, TCP_SYN) == (E31, True)  # its ports reused: decided afresh
    assert stats_view(fig.core)["new_connections_rebound"] == 1


@pytest.mark.parametrize("key", ["3-tuple", "source"])
def test_learn_a_group_whose_instance_stops_serving_opens_new_connections_elsewhere(
        key: str) -> None:
    """`learn` with a group key: the switch learned one entry for all of c1's connections; its
    instance's D-MA then reports it not serving. c1's next new connection reaches the
    controller once (from the instance's guard in table 4) and gets an exception of its own at
    the other instance, switch-held from its next packet on, answered from the D-SID; the
    group's open connection stays where its learned entry sends it. Once the instance serves
    again, new connections follow the group's entry in the switch again."""
    fig = Figure2(dataclasses.replace(SERVICES["learn"], affinity=AffinityPolicy(key, IDLE_S, 0)))
    first, punted = fig.go(FLOWS[0], TCP_SYN)
    assert not punted and fig.go(FLOWS[0]) == (first, False)
    other = E31 if first == E21 else E21
    _stop_serving(fig, first)
    assert fig.go(FLOWS[0]) == (first, False)
    _excepted(fig, first, other)
    fig.apply(fig.core.report(first, Metrics(sessions=0, queue=0, capacity=10), fig.now))
    assert fig.go(FLOWS[2], TCP_SYN) == (first, False)
    _serving(fig, FLOWS[1], other)
