"""Fencing the store writes only a switch's master may make (bindings): the verdict on a fake
clock, and on the real PostgreSQL (DYNCAST_TEST_PG_URL) a member whose lease was taken over
while it was paused has its late batch refused, nothing of it applied; one that lost a switch
to a newcomer has that switch's bindings refused, its own written; a takeover's read of the
stored bindings waits for a batch in flight and sees what it wrote."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from apps import cluster
from apps.cluster import LeaseTable
from apps.fencing import StoreFence
from apps.store import Store
from bench import ofgen
from controller.cluster.fencing import LEASE, MASTERSHIP, judge
from controller.cluster.mastership import master_of
from controller.cluster.member import (
    MASTER,
    SLAVE,
    Member,
    Reconcile,
    RoleRequest,
    StopProgramming,
)
from controller.cluster.membership import MemberRow, View
from controller.dataplane.affinity import Binding, FlowKey
from controller.intents import StoreWrite
from tests import test_app_smoke, test_cluster_shell
from tests.fakes import FakeDatapath
from tests.test_app_smoke import Shell
from tests.test_cluster_shell import CLUSTER, roles_sent

shell = test_app_smoke.shell  # the fixture: the app on each framework
member, pg_url = test_cluster_shell.member, test_cluster_shell.pg_url  # m1 on PostgreSQL


def row(member: str, now: float, epoch: int = 7, left: float = 1.0) -> MemberRow:
    """A heartbeat row whose lease ends `left` seconds after `now` (database clock)."""
    return MemberRow(member, "", now - 0.1, now + left, epoch)


def switch_of(member: str, *others: str) -> int:
    """A datapath id the rule gives `member` among it and `others`."""
    return next(d for d in range(1, 1000) if master_of(d, (member, *others)) == member)


def test_a_member_holding_its_lease_writes_its_switches_bindings() -> None:
    mine, theirs = switch_of("a", "b"), switch_of("b", "a")
    rows = [row("a", 100.0), row("b", 100.0, epoch=9)]
    verdict = judge(rows, 100.0, "a", 7, {"1": mine, "2": theirs, "3": None})
    assert verdict.refused == {"2": MASTERSHIP} and not verdict.lease_lost
    assert verdict.allowed("1") and verdict.allowed("3")  # "3": a deletion of nothing stored


@pytest.mark.parametrize("rows, token", [
    ([row("a", 100.0, left=-0.01)], 7),  # the lease ended (database clock)
    ([row("a", 100.0, epoch=12)], 7),  # it lapsed and was taken anew: another epoch
    ([row("b", 100.0)], 7),  # the row is gone (left, pruned)
    ([row("a", 100.0)], None),  # never renewed
])
def test_a_member_without_its_lease_writes_no_binding(rows: list[MemberRow],
                                                      token: int | None) -> None:
    mine = switch_of("a")
    verdict = judge(rows, 100.0, "a", token, {"1": mine, "2": None})
    assert verdict.refused == {"1": LEASE, "2": LEASE} and verdict.lease_lost


def test_a_fenced_member_steps_down_at_once_and_comes_back_with_a_new_epoch() -> None:
    """Fake clock: the lease runs on the member's own clock until 101.5, but the store says
    it is gone at 100.2: SLAVE and silence now; a later renewal (a new epoch) asks MASTER."""
    a = Member("a", 1.5)
    a.renewed(View((row("a", 100.0, epoch=3),), 100.0, 3), asked_at=100.0)
    assert RoleRequest(5, MASTER, 3) in a.step([5], 100.1) and not a.masters(5)
    assert a.role_reply(5, MASTER, 3, 100.1) == [Reconcile(5)] and a.masters(5)
    a.fenced()
    out = a.step([5], 100.2)
    assert StopProgramming(5) in out and RoleRequest(5, SLAVE, 3) in out
    assert not a.masters(5) and not a.holds_lease(100.2)
    a.renewed(View((row("a", 100.3, epoch=8),), 100.3, 8), asked_at=100.3)
    assert RoleRequest(5, MASTER, 8) in a.step([5], 100.4)
    assert a.role_reply(5, MASTER, 3, 100.4) == [] and not a.masters(5)  # a late old reply
    assert a.role_reply(5, MASTER, 8, 100.4) == [Reconcile(5)] and a.masters(5)


def binding(ident: int, ingress: int, sport: int = 40001) -> Binding:
    return Binding(ident, FlowKey("svc", "10.0.0.1", "10.0.0.100", 6, sport, 80), "10.0.0.11",
                   ingress, 1.0)


def put(b: Binding) -> StoreWrite:
    return StoreWrite("binding", str(b.ident), b.to_dict())


@pytest.fixture
def members(pg_url: str, request: pytest.FixtureRequest
            ) -> Iterator[tuple[Store, Member, LeaseTable, LeaseTable]]:
    """m1's store fenced by its member, m1's and m2's lease tables (a lease of 3 s, which no
    slow step of a test outlasts, unless the test asks for another)."""
    lease = getattr(request, "param", 3.0)
    config = replace(CLUSTER, heartbeat_s=lease / 3, lease_s=lease, failover_s=2 * lease)
    store = Store(pg_url)
    m1 = Member("m1", lease)
    store.fence = StoreFence(m1, lease)
    a = LeaseTable(pg_url, config)
    b = LeaseTable(pg_url, replace(config, member_id="m2", advertise="http://m2"))
    try:
        yield store, m1, a, b
    finally:
        for x in (store, a, b):
            x.close()


def stored(store: Store) -> set[int]:
    """The ids of every stored binding (read without the fence's lock)."""
    fence, store.fence = store.fence, None
    try:
        return {b.ident for d in range(1000) for b in store.bindings_at(d)}
    finally:
        store.fence = fence


@pytest.mark.parametrize("members", [CLUSTER.lease_s], indirect=True)
def test_a_late_batch_of_a_member_whose_lease_was_taken_over_is_refused(
        members: tuple[Store, Member, LeaseTable, LeaseTable]) -> None:
    store, m1, a, b = members
    m1.renewed(a.beat(), time.time())
    mine = switch_of("m1")
    first = binding(1, mine)
    store.apply([put(first)])
    assert stored(store) == {1}
    time.sleep(CLUSTER.lease_s + 0.1)  # m1 paused: no beat; m2 sees its lease end
    assert b.beat().live() == ("m2",)
    late = binding(2, mine, sport=40002)
    store.apply([put(late), StoreWrite("binding", "1", None)])  # m1 resumes: its late batch
    assert stored(store) == {1}  # nothing of it: not the new one, not the deletion
    (refusal,) = store.fence.refusals  # type: ignore[union-attr]
    assert refusal.lease_lost and refusal.reasons == {LEASE: 2} and refusal.token == m1.epoch
    store.apply([StoreWrite("instance", "10.0.0.11", {"service": "svc", "dbid": "10.0.0.11"})])
    assert len(store.fence.refusals) == 1  # type: ignore[union-attr] # unfenced: not checked


def test_a_member_that_lost_a_switch_to_a_newcomer_writes_only_its_own(
        members: tuple[Store, Member, LeaseTable, LeaseTable]) -> None:
    store, m1, a, b = members
    m1.renewed(a.beat(), time.time())
    b.beat()  # m2 joins: the rule gives it some of m1's switches
    kept, lost = switch_of("m1", "m2"), switch_of("m2", "m1")
    assert master_of(lost, ("m1",)) == "m1"  # m1's until m2 came
    store.apply([put(binding(1, kept)), put(binding(2, lost, sport=40002))])
    assert stored(store) == {1}
    (refusal,) = store.fence.refusals  # type: ignore[union-attr]
    assert refusal.reasons == {MASTERSHIP: 1} and not refusal.lease_lost


def test_a_takeover_read_waits_for_a_batch_in_flight_and_sees_it(
        members: tuple[Store, Member, LeaseTable, LeaseTable], pg_url: str) -> None:
    """m1 checked its batch while its lease ran, and has not committed; m2 taking the switch
    over reads the stored bindings only after the commit, and finds the binding."""
    store, m1, a, b = members
    m1.renewed(a.beat(), time.time())
    b.beat()
    dpid = switch_of("m1", "m2")
    heir = Store(pg_url)
    heir.fence = StoreFence(Member("m2", CLUSTER.lease_s), 5.0)
    got: list[list[Binding]] = []
    try:
        with store.engine.begin() as conn:
            last = {("binding", "1"): put(binding(1, dpid))}
            assert store.fence is not None and store.fence.check(conn, last) == set()
            store._write(conn, last)
            reader = threading.Thread(target=lambda: got.append(heir.bindings_at(dpid)))
            reader.start()
            time.sleep(0.3)
            assert not got  # waiting for m1's batch
        reader.join(5)
        assert [x.ident for x in got[0]] == [1]
    finally:
        heir.close()


def test_the_app_counts_logs_and_steps_down_when_its_writes_are_fenced(
        member: str, shell: Shell, monkeypatch: pytest.MonkeyPatch) -> None:
    """m1 (the app) masters its switch with a real lease; it pauses past the lease, m2 takes
    over, then m1's queued binding write reaches the store: refused, counted (Prometheus),
    logged, and m1 asks SLAVE at its next step, even if its own clock believed the lease ran."""
    app = shell.app
    events: list[tuple[str, dict[str, object]]] = []
    monkeypatch.setattr(cluster.logs, "event",
                        lambda comp, name, *a, **kw: events.append((name, kw)))
    assert app.leases is not None and app.member is not None
    app.member.renewed(app.leases.beat(), time.time())
    dp = FakeDatapath(shell.dp.framework, switch_of("m1"))
    shell.switch_says(ofgen.features_reply(1, dp.id), "config", dp)
    assert roles_sent(shell, dp) == [(dp.ofproto.OFPCR_ROLE_MASTER, app.member.view.ticket)]
    app.core.writes.put("binding", "5", binding(5, dp.id).to_dict())
    time.sleep(CLUSTER.lease_s + 0.1)  # paused: no beat
    m2 = LeaseTable(member, replace(CLUSTER, member_id="m2", advertise="http://m2"))
    try:
        assert m2.beat().live() == ("m2",)
    finally:
        m2.close()
    app.member.held_until = time.time() + 10  # its own clock says nothing: the store does
    app.store.apply(app.core.drain_writes())
    assert stored(app.store) == set()
    app._step_roles()
    assert app.core.counters["writes_refused_lease"] == 1
    assert roles_sent(shell, dp)[:1] == [(dp.ofproto.OFPCR_ROLE_SLAVE, app.member.view.ticket)]
    assert not app.programs(dp.id)
    assert ("writes_fenced", {"refused": {LEASE: 1}, "epoch": app.member.epoch,
                              "stepped_down": True,
                              "reason": "our lease ended or was taken anew"}) in events
    assert b'dyncast_cluster_writes_fenced_total{reason="lease"} 1.0' in app.metrics.scrape()
    assert app.core.counters["errors"] == 0


def leased_with_a_write(shell: Shell, monkeypatch: pytest.MonkeyPatch
                        ) -> tuple[Any, list[tuple[str, dict[str, object]]], int | None, int]:
    """The app as m1 holding its lease, its log events recorded, a binding write queued for
    one of its switches: (app, events, its lease epoch, the switch)."""
    app = shell.app
    events: list[tuple[str, dict[str, object]]] = []
    monkeypatch.setattr(cluster.logs, "event",
                        lambda comp, name, *a, **kw: events.append((name, kw)))
    assert app.leases is not None and app.member is not None
    app._renewed(app.leases.beat(), time.time())
    dpid = switch_of("m1")
    app.core.writes.put("binding", "5", binding(5, dpid).to_dict())
    return app, events, app.member.epoch, dpid


def test_a_write_made_under_a_lapsed_lease_is_not_written_under_the_new_one(
        member: str, shell: Shell, monkeypatch: pytest.MonkeyPatch) -> None:
    """m1's binding write is still queued (the store was out of reach) when its lease lapses;
    its next beat takes the lease anew (a new epoch) and takes the same switch again: the
    write made under the old epoch is refused (counted, logged), not flushed under the new
    one; the other queued writes stay queued. A beat that keeps the epoch refuses nothing."""
    app, events, old, dpid = leased_with_a_write(shell, monkeypatch)
    app._renewed(app.leases.beat(), time.time())  # the same lease: nothing refused
    assert app.member.epoch == old and app.core.counters["writes_refused_lease"] == 0
    assert [w.key for w in app.core.drain_writes()] == ["5"]
    app.core.writes.put("binding", "5", binding(5, dpid).to_dict())
    app.core.writes.put("agent_seq", "a1", {"seq": 3})
    time.sleep(0.3 + 0.1)  # the lease (0.3 s) lapses: no beat
    app._renewed(app.leases.beat(), time.time())
    assert app.member.epoch != old and app.member.holds_lease(time.time())
    assert [(w.kind, w.key) for w in app.core.drain_writes()] == [("agent_seq", "a1")]
    assert app.core.counters["writes_refused_lease"] == 1
    assert ("writes_fenced", {"refused": {LEASE: 1}, "epoch": old, "stepped_down": False,
                              "reason": "made under an earlier lease of ours (it lapsed, now "
                                        "taken anew)"}) in events
    assert app.core.counters["errors"] == 0


def test_a_batch_on_its_way_when_the_lease_is_taken_anew_is_refused_and_the_lease_kept(
        member: str, shell: Shell, monkeypatch: pytest.MonkeyPatch) -> None:
    """m1's flusher drained a binding write under its lease; before the batch reached the
    store the lease lapsed and a beat took it anew (a new epoch). The batch is judged under
    the epoch it was drained under: refused (counted, logged), not written under the new one,
    and m1 keeps the lease it now holds. A failed batch of that epoch is not queued again."""
    app, events, old, _ = leased_with_a_write(shell, monkeypatch)
    token = app.lease_epoch()  # what `_flush` reads with the writes it drains
    batch = app.core.drain_writes()
    assert token == old and [w.key for w in batch] == ["5"]
    time.sleep(0.3 + 0.1)  # the lease (0.3 s) lapses: no beat
    app._renewed(app.leases.beat(), time.time())
    assert app.member.epoch != old
    held = app.member.held_until
    app.store.apply(batch, token)  # the batch reaches the store now
    assert stored(app.store) == set()
    app._step_roles()
    assert app.core.counters["writes_refused_lease"] == 1
    assert app.member.held_until == held  # not stepped down (`fenced`): that lease is gone
    assert ("writes_fenced", {"refused": {LEASE: 1}, "epoch": old, "stepped_down": False,
                              "reason": "made under an earlier lease of ours (it lapsed, now "
                                        "taken anew)"}) in events
    agent = StoreWrite("agent_seq", "a1", {"seq": 3})
    assert app.stale_refused([*batch, agent], token) == [agent]  # (a failed batch's requeue)
    assert app.stale_refused(batch, app.lease_epoch()) == batch
    assert app.core.counters["errors"] == 0
