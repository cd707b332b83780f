"""A cluster member taking a switch over keeps every flow its previous master had bound there,
stored or not (Figure 2 over fake switches, the real store on SQLite): the bindings the old
master made after its last store flush are adopted from the switch's entries, not removed."""

from __future__ import annotations

from pathlib import Path

import pytest

from apps.store import Store
from controller.config import ControllerConfig
from controller.core import Core
from controller.network.packet import TCP_SYN
from controller.views import stats_view
from tests.helpers import PORTS, SVC2
from tests.test_pipelines import E21, E31, FLOWS, IDLE_S, NEW_FLOWS, SERVICES, Figure2, connect
from tests.test_reconcile import consistent, reconcile, rediscover


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(f"sqlite:///{tmp_path / 'dyncast.db'}")


@pytest.mark.parametrize("heir_started", [-50.0, 50.0], ids=["heir-older", "heir-newer"])
def test_a_new_master_adopts_the_bindings_its_predecessor_had_not_stored(
        store: Store, heir_started: float) -> None:
    """The old master (started at 100 s on the numbering clock) bound 16 flows and stored
    the first 8; its last flush never ran. The heir (started before it, or after) takes each
    switch over at 200 s as apps/cluster.py does: the stored bindings of the switch, then its
    table. Every flow stays where the old master put it: 8 bindings taken from the store, 8
    adopted from the entries, none removed; the heir's own are numbered above them all."""
    fig = Figure2(SERVICES["reactive"])
    fig.core.flows.restore([], 100.0)  # the old master numbers its bindings from its start
    store.apply(fig.core.drain_writes())
    placed = connect(fig, FLOWS[:8])
    store.apply(fig.core.drain_writes())
    placed |= connect(fig, FLOWS[8:])
    fig.core.drain_writes()  # lost: the old master dies before its next store flush
    heir = Core(ControllerConfig(services=(fig.svc, SVC2)))
    snap = store.load()
    heir.restore(snap.services, snap.instances, [], 100.0 + heir_started)
    fig.core = heir
    taken = 0
    for dpid, ports in PORTS.items():
        fig.apply(heir.switch_connected(dpid, reads_table=True))
        fig.apply(heir.switch_ports(dpid, ports, fig.now))
        taken += len(heir.flows.take_over(store.bindings_at(dpid), dpid, 200.0))
        reconcile(fig, dpid)
    assert taken == 8 and stats_view(heir)["bindings_adopted"] == 8
    assert {r["flow"]["sport"]: r["dbid"] for r in heir.flows.view()} == placed
    consistent(fig)  # each binding's two entries, and no entry without its binding
    assert {w.key for w in heir.drain_writes() if w.kind == "binding"} == {
        str(b.ident) for b in heir.bindings.all() if b.key.sport in FLOWS[8:]}  # stored now
    rediscover(fig)
    assert {s: fig.go(s)[0] for s in FLOWS} == placed
    connect(fig, NEW_FLOWS)
    assert min(b.ident for b in heir.bindings.all() if b.key.sport in NEW_FLOWS) > max(
        b.ident for b in heir.bindings.all() if b.key.sport in FLOWS)
    consistent(fig)


def take_back(fig: Figure2, store: Store) -> None:
    """The member masters every switch again, as apps/cluster.py takes one over: the stored
    bindings of the switch, then its table."""
    for dpid in PORTS:
        fig.core.flows.take_over(store.bindings_at(dpid), dpid, fig.now)
        reconcile(fig, dpid)


def stored_as_held(fig: Figure2, store: Store) -> None:
    """The member's writes land: the store holds exactly the bindings it holds."""
    store.apply(fig.core.drain_writes())
    assert {(b.ident, b.key, b.dbid, b.ingress, b.moved_at) for b in store.load().bindings} == {
        (b.ident, b.key, b.dbid, b.ingress, b.moved_at) for b in fig.core.bindings.all()}


def interim_master(fig: Figure2, store: Store, at: float) -> Core:
    """Another member, started at `at` on the numbering clock, takes every switch over (the
    first one's core is returned) with the stored bindings and the switches' tables, and
    learns the network again."""
    first, snap = fig.core, store.load()
    fig.core = Core(ControllerConfig(services=(fig.svc, SVC2)))
    fig.core.restore(snap.services, snap.instances, [], at)
    for dpid, ports in PORTS.items():
        fig.apply(fig.core.switch_connected(dpid, reads_table=True))
        fig.apply(fig.core.switch_ports(dpid, ports, fig.now))
        fig.core.flows.take_over(store.bindings_at(dpid), dpid, at)
        reconcile(fig, dpid)
    rediscover(fig)
    return first


def test_bindings_whose_writes_the_fence_refused_are_stored_when_the_switch_is_ours_again(
        store: Store) -> None:
    """A member's lease lapsed and was taken anew while 8 of its 16 bindings waited for the
    store: the fence refused them (they were dropped). When it masters the switches again it
    stores them: the store holds every binding it holds, and every flow stays where it was."""
    fig = Figure2(SERVICES["reactive"])
    fig.core.flows.restore([], 100.0)
    placed = connect(fig, FLOWS[:8])
    store.apply(fig.core.drain_writes())
    placed |= connect(fig, FLOWS[8:])
    refused = [w for w in fig.core.drain_writes() if w.kind == "binding"]
    assert len(refused) == 8
    fig.now += 2.0
    take_back(fig, store)
    stored_as_held(fig, store)
    assert len(store.load().bindings) == 16
    assert {s: fig.go(s)[0] for s in FLOWS} == placed
    consistent(fig)
    assert stats_view(fig.core)["takeover_stored_again"] == 8


def test_a_flow_bound_again_while_a_member_was_away_keeps_its_newer_binding(
        store: Store) -> None:
    """Member A bound 16 flows and stored them, then lost its switches to B. Under B the flows
    idled out, and the connections A had put on e21 opened again with the same ports while
    e21 was busy: B bound them to e31 and stored that. A, which saw none of it (a slave gets no
    flow removals), masters the switches again: those flows keep B's newer bindings (their
    entries, their instance), A's older ones end, and the store holds what A now holds."""
    fig = Figure2(SERVICES["reactive"])
    fig.core.flows.restore([], 100.0)
    placed = connect(fig, FLOWS)
    store.apply(fig.core.drain_writes())
    again = [s for s, dbid in placed.items() if dbid == E21][:4]
    assert again
    first = interim_master(fig, store, 200.0)
    assert len(fig.core.bindings) == len(FLOWS)
    fig.advance(fig.now + IDLE_S + 2.0)  # every flow idles out under B
    assert len(fig.core.bindings) == 0
    fig.busy(E21)
    assert {fig.go(s, TCP_SYN)[0] for s in again} == {E31}
    store.apply(fig.core.drain_writes())
    fig.core = first
    take_back(fig, store)
    assert {s: fig.go(s)[0] for s in again} == dict.fromkeys(again, E31)
    assert {b.key.sport for b in fig.core.bindings.all()} == set(again)  # the rest idled out
    consistent(fig)
    stored_as_held(fig, store)
    assert stats_view(fig.core)["takeover_superseded"] == len(again)


def test_a_flow_the_member_bound_again_keeps_its_binding_over_the_older_stored_one(
        store: Store) -> None:
    """A member stored its bindings; the flows idled out and opened again, and the new
    bindings' writes (and the old ones' deletions) were refused by the fence. Mastering the
    switches again, it keeps its newer bindings and stores them in place of the old records."""
    fig = Figure2(SERVICES["reactive"])
    fig.core.flows.restore([], 100.0)
    connect(fig, FLOWS[:4])
    store.apply(fig.core.drain_writes())
    fig.advance(fig.now + IDLE_S + 2.0)
    assert len(fig.core.bindings) == 0
    placed = connect(fig, FLOWS[:4])
    fig.core.drain_writes()  # refused
    take_back(fig, store)
    assert {s: fig.go(s)[0] for s in FLOWS[:4]} == placed
    consistent(fig)
    stored_as_held(fig, store)
    assert stats_view(fig.core)["takeover_superseded"] == 4


def bound_and_stored(store: Store) -> tuple[Figure2, dict[int, str], list[int]]:
    """A member (started at 100 s on the numbering clock) bound 16 flows and stored them: the
    network, where each flow went, and the flows on e21 (some)."""
    fig = Figure2(SERVICES["reactive"])
    fig.core.flows.restore([], 100.0)
    placed = connect(fig, FLOWS)
    store.apply(fig.core.drain_writes())
    moved = sorted(s for s, dbid in placed.items() if dbid == E21)
    assert moved
    return fig, placed, moved


def test_a_flow_moved_while_a_member_was_away_stays_where_the_other_member_moved_it(
        store: Store) -> None:
    """Member A bound 16 flows and stored them, then lost its switches to B; e21 was
    withdrawn under B, which moved e21's flows to e31 (a move keeps the binding's identifier)
    and stored that. A, which has not heard of it yet, masters the switches again: the moved
    flows stay on e31 (the later move wins), and the store holds what A now holds."""
    fig, placed, moved = bound_and_stored(store)
    first = interim_master(fig, store, 200.0)
    fig.apply(fig.core.withdraw(E21, fig.now))
    assert {s: fig.go(s)[0] for s in moved} == dict.fromkeys(moved, E31)
    store.apply(fig.core.drain_writes())
    fig.core = first
    take_back(fig, store)
    assert {s: fig.go(s)[0] for s in FLOWS} == {**placed, **dict.fromkeys(moved, E31)}
    consistent(fig)
    stored_as_held(fig, store)
    assert stats_view(fig.core)["takeover_superseded"] == len(moved)


def test_a_flow_the_member_moved_is_stored_as_it_moved_it(store: Store) -> None:
    """A member moved e21's flows to e31 (e21 withdrawn), and those writes were refused by the
    fence: the store still has them on e21. Mastering the switches again, it stores its
    later move; the flows stay on e31."""
    fig, placed, moved = bound_and_stored(store)
    fig.apply(fig.core.withdraw(E21, fig.now))
    fig.core.drain_writes()  # refused
    take_back(fig, store)
    assert {s: fig.go(s)[0] for s in FLOWS} == {**placed, **dict.fromkeys(moved, E31)}
    consistent(fig)
    stored_as_held(fig, store)
    assert stats_view(fig.core)["takeover_stored_again"] == len(moved)
