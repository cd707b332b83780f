"""Reconciliation on Figure 2 over fake switches: a restarted controller, an emptied switch, a
binding that idled out while nobody listened, entries we never stored, a lost control channel.

The "store" is the real one (apps/store.py on SQLite); a restart is a new Core restored from it
that reads every switch's table back, as the shell does. The tests ask where held flows go.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from apps.store import Store
from controller.config import ControllerConfig
from controller.core import Core
from controller.dataplane.audit import joined
from controller.dataplane.labels import Labels, preferred
from controller.intents import (
    COOKIE_APP,
    TABLE_CLASSIFY,
    CookieKind,
    FlowMod,
    Output,
    StoreWrite,
    SwitchEntry,
    action_signature,
    cookie,
    cookie_kind,
    match,
)
from controller.network.packet import BROADCAST
from controller.views import stats_view
from tests.fakeoftable import FakeOFTable
from tests.helpers import HOSTS, PORTS, SVC1, SVC2
from tests.test_pipelines import (
    ALL,
    E21,
    E31,
    FLOWS,
    IDLE_S,
    NEW_FLOWS,
    SERVICES,
    SYN_DELAY_S,
    Figure2,
    arp,
    connect,
    to_dsid,
)


def read(fig: Figure2, dpid: int) -> list[SwitchEntry]:
    """Every entry with our cookie in a fake switch, as flow statistics give them."""
    sw = fig.net.switch(dpid)
    sw.expire(fig.now)
    return [SwitchEntry(fm.cookie, fm.table, fm.priority, fm.match, action_signature(fm))
            for fm in sw.entries() if fm.cookie >> 56 == COOKIE_APP]


def reconcile(fig: Figure2, dpid: int, sent: list[FlowMod] | None = None) -> None:
    """The shell read the switch's table: the core repairs it."""
    fig.apply(joined(fig.core.switch_table_steps(dpid, read(fig, dpid), sent or [], fig.now,
                                                fig.now)))


def restart(fig: Figure2, store: Store, after: float = 0.0, writes: bool = True) -> None:
    """The controller stops (its last writes stored unless `writes` is False), `after` seconds
    pass with the switches forwarding alone, and a new one starts from the store."""
    pending = fig.core.drain_writes()
    if writes:
        store.apply(pending)
    fig.now += after
    for sw in fig.net.switches.values():
        sw.expire(fig.now)
        sw.removed.clear()  # nobody was listening
    snap = store.load()
    fig.core = Core(ControllerConfig(services=(fig.svc, SVC2)))
    fig.core.restore(snap.services, snap.instances, snap.bindings, fig.now)
    for dpid, ports in PORTS.items():
        fig.apply(fig.core.switch_connected(dpid, reads_table=True))
        fig.apply(fig.core.switch_ports(dpid, ports, fig.now))
        reconcile(fig, dpid)


def rediscover(fig: Figure2) -> None:
    """Links by LLDP, hosts as they ARP again, instances as their D-MAs report again."""
    fig.apply(fig.core.tick(fig.now))
    for name, (ip, mac, _, _) in HOSTS.items():
        fig.send(name, arp(mac, ip, BROADCAST, "10.0.0.254"))
    fig.advance(fig.now + 2)


def consistent(fig: Figure2) -> None:
    """Every binding has its two entries at its ingress, and every such entry its binding."""
    held: dict[int, set[CookieKind]] = {}
    for dpid, sw in fig.net.switches.items():
        for fm in sw.entries():
            split = cookie_kind(fm.cookie)
            if split and split[0] in (CookieKind.AFFINITY_FWD, CookieKind.AFFINITY_REV):
                b = fig.core.bindings.by_ident(split[1])
                assert b is not None and b.ingress == dpid, fm
                held.setdefault(split[1], set()).add(split[0])
    assert held == {b.ident: {CookieKind.AFFINITY_FWD, CookieKind.AFFINITY_REV}
                    for b in fig.core.bindings.all()}


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(f"sqlite:///{tmp_path / 'dyncast.db'}")


@pytest.mark.parametrize("mode", ALL)
def test_restart_keeps_every_flow_on_its_instance(mode: str, store: Store) -> None:
    """A restarted controller changes nothing a held flow needs, before and after it has found
    the network again, even when the decision it then takes differs; new flows are served."""
    fig = Figure2(SERVICES[mode])
    placed = connect(fig, FLOWS)
    assert set(placed.values()) == {E21, E31}
    before = {d: sorted(map(repr, sw.entries())) for d, sw in fig.net.switches.items()}
    restart(fig, store, after=1.0)
    assert {s: fig.go(s)[0] for s in FLOWS} == placed
    if mode != "reactive":  # nothing was decided yet: the switches hold what they held
        assert {d: sorted(map(repr, sw.entries()))
                for d, sw in fig.net.switches.items()} == before
    rediscover(fig)
    fig.busy(E21)
    assert {s: fig.go(s)[0] for s in FLOWS} == placed
    fig.advance(fig.now + SYN_DELAY_S)  # bucket: new connections move on after this
    assert {s: fig.go(s)[0] for s in FLOWS} == placed
    assert set(connect(fig, NEW_FLOWS).values()) == {E31}
    consistent(fig)
    assert stats_view(fig.core)["reconcile_removed"] == 0


@pytest.mark.parametrize("mode", ALL)
def test_an_emptied_switch_gets_everything_back_in_an_order_no_reply_overtakes(
        mode: str) -> None:
    """`del-flows` at the ingress, noticed by the next read: entries come back, bindings'
    reverse entries before their forward ones and the pipeline last; flows keep their
    instance (reactive: the switch alone, learn: by the bucket map, as they were placed)."""
    fig = Figure2(SERVICES[mode])
    placed = connect(fig, FLOWS)
    fig.net.switches[1] = FakeOFTable(1)
    out = joined(fig.core.switch_table_steps(1, [], [], fig.now, fig.now))
    mods = [i for i in out if isinstance(i, FlowMod)]
    kinds = [cookie_kind(fm.cookie)[0] for fm in mods]  # type: ignore[index]
    assert kinds[-1] == CookieKind.INFRA and CookieKind.INFRA not in kinds[:-8]
    if mode == "reactive":
        rev = [i for i, k in enumerate(kinds) if k == CookieKind.AFFINITY_REV]
        fwd = [i for i, k in enumerate(kinds) if k == CookieKind.AFFINITY_FWD]
        assert len(rev) == len(fwd) == len(FLOWS) and max(rev) < min(fwd)
    fig.apply(out)
    assert {s: fig.go(s)[0] for s in FLOWS} == placed
    assert stats_view(fig.core)["reconcile_added"] == len(mods)
    consistent(fig)


def test_a_binding_that_idled_out_while_away_leaves_nothing_behind(store: Store) -> None:
    """reactive: flows that stopped while the controller was down lose their binding and
    their reverse entry at restart; the others keep theirs."""
    fig = Figure2(SERVICES["reactive"])
    placed = connect(fig, FLOWS)
    quiet, busy = FLOWS[:4], FLOWS[4:]
    pending = fig.core.drain_writes()
    for _ in range(IDLE_S + 2):  # the controller is down; only `busy` flows send
        fig.now += 1.0
        for s in busy:
            fig.net.send(1, HOSTS["c1"][3], to_dsid("c1", s), fig.now)
    store.apply(pending)
    restart(fig, store)
    assert len(fig.core.bindings) == len(busy)
    assert stats_view(fig.core)["bindings_retired"] == len(quiet)
    consistent(fig)
    assert {s: fig.go(s)[0] for s in busy} == {s: placed[s] for s in busy}


def test_bindings_not_stored_before_a_crash_are_adopted_from_the_switch(store: Store) -> None:
    """A crash before the store write: the switch's forward entries give the bindings back
    (identifier, flow, instance), and the new process numbers its own above them."""
    fig = Figure2(SERVICES["reactive"])
    store.apply(fig.core.drain_writes())  # services and instances were stored long ago
    placed = connect(fig, FLOWS)
    restart(fig, store, writes=False)
    assert stats_view(fig.core)["bindings_adopted"] == len(FLOWS)
    rows = {r["flow"]["sport"]: r["dbid"] for r in fig.core.flows.view()}
    assert rows == placed
    rediscover(fig)
    assert {s: fig.go(s)[0] for s in FLOWS} == placed
    connect(fig, NEW_FLOWS)
    assert min(b.ident for b in fig.core.bindings.all()
               if b.key.sport in NEW_FLOWS) > max(b.ident for b in fig.core.bindings.all()
                                                  if b.key.sport in FLOWS)
    consistent(fig)


def test_reading_a_switch_removes_only_our_stale_entries() -> None:
    """An entry with our cookie that nothing wants goes; another application's stays; what was
    sent while the table was read is judged next time, not now."""
    fig = Figure2(SERVICES["reactive"])
    connect(fig, FLOWS[:2])
    sw = fig.net.switch(1)
    foreign = FlowMod(1, TABLE_CLASSIFY, 7, match(eth_type=0x0800, ipv4_dst="10.9.9.9"),
                      (Output(3),), cookie=0x1234)
    ours = dataclasses.replace(foreign, priority=8, cookie=cookie(CookieKind.SERVICE, 99))
    in_flight = dataclasses.replace(foreign, priority=9, cookie=cookie(CookieKind.SERVICE, 98))
    for fm in (foreign, ours, in_flight):
        sw.apply(fm, fig.now)
    reconcile(fig, 1, sent=[in_flight])
    left = sw.entries(TABLE_CLASSIFY)
    assert foreign in left and in_flight in left and ours not in left
    assert stats_view(fig.core)["reconcile_removed"] == 1
    reconcile(fig, 1)
    assert in_flight not in sw.entries(TABLE_CLASSIFY)
    consistent(fig)


def test_a_lost_control_channel_is_not_a_lost_data_plane() -> None:
    """The instances behind a switch whose connection dropped stay active and keep their
    flows for switch_grace_s; only then is the switch forgotten."""
    svc = SERVICES["reactive"]
    fig = Figure2(svc)
    placed = connect(fig, FLOWS)
    grace = ControllerConfig().switch_grace_s
    fig.apply(fig.core.switch_left(2, fig.now))
    fig.advance(fig.now + grace - 1)
    assert fig.core.catalogue.instances[E21].state == "active"
    assert {s: fig.go(s)[0] for s in FLOWS} == placed
    fig.apply(fig.core.switch_connected(2, reads_table=True))
    fig.apply(fig.core.switch_ports(2, PORTS[2], fig.now))
    reconcile(fig, 2)
    fig.advance(fig.now + grace + 1)
    assert fig.core.catalogue.instances[E21].state == "active"
    fig.apply(fig.core.switch_left(2, fig.now))
    fig.advance(fig.now + grace + 1)
    assert fig.core.catalogue.instances[E21].state == "down"


def test_labels_do_not_depend_on_the_order_instances_appear() -> None:
    """Labels come from the D-BID; a clash takes the next free one, which is restored."""
    dbids = ["10.0.0.21", "10.0.0.31", "10.1.0.21", "192.168.7.9"]
    one, two = Labels(), Labels()
    first = {d: one.of(d) for d in dbids}
    second = {d: two.of(d) for d in reversed(dbids)}
    assert first["10.0.0.21"] == preferred("10.0.0.21") and len(set(first.values())) == 4
    assert {d: first[d] for d in ("10.0.0.31", "192.168.7.9")} == {
        d: second[d] for d in ("10.0.0.31", "192.168.7.9")}
    again = Labels()
    again.restore_all(two.take_assigned())
    assert {d: again.of(d) for d in dbids} == second and again.take_assigned() == []


@pytest.mark.parametrize("mode", ALL)
def test_a_switch_in_step_needs_no_repair(mode: str) -> None:
    """Reading switches that hold what they should changes nothing, twice over."""
    fig = Figure2(SERVICES[mode])
    connect(fig, FLOWS)
    for _ in range(2):
        for dpid in sorted(fig.net.switches):
            out = joined(fig.core.switch_table_steps(dpid, read(fig, dpid), [], fig.now,
                                                    fig.now))
            assert out == [], (dpid, out)
    stats = stats_view(fig.core)
    assert (stats["reconcile_added"], stats["reconcile_removed"]) == (0, 0)


@pytest.mark.parametrize("mode", ["learn", "bucket"])
def test_an_instance_the_store_lost_keeps_its_flows_until_its_dma_registers_it_again(
        mode: str, store: Store) -> None:
    """A crash lost an instance's registration: the switches keep its entries (its label
    names it) until its D-MA registers it again, which gives it the same label."""
    fig = Figure2(SERVICES[mode])
    placed = connect(fig, FLOWS)
    store.apply(fig.core.drain_writes())
    store.apply([StoreWrite("instance", E31, None)])
    restart(fig, store)
    assert E31 not in fig.core.catalogue.instances
    load = fig.load.pop(E31)  # its D-MA's reports are refused (404) until it registers again
    rediscover(fig)
    assert {s: fig.go(s)[0] for s in FLOWS} == placed
    fig.apply(fig.core.register(SVC1.dsid, E31, "dma", True, fig.now)[1])
    fig.load[E31] = load
    fig.advance(fig.now + 3)
    assert {s: fig.go(s)[0] for s in FLOWS} == placed
    assert set(connect(fig, NEW_FLOWS).values()) == {E21, E31}
