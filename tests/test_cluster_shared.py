"""Shared state across cluster members: a change one member accepts (a REST call, a metric
report) reaches the others through PostgreSQL LISTEN/NOTIFY (DYNCAST_TEST_PG_URL) and is
applied there as if accepted locally; never passed on, harmless when repeated."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import fields
from typing import Any

import pytest
from sqlalchemy import delete, text

from apps.changefeed import ChangeFeed
from apps.store import Store, _row, instances_table
from controller.api import Api, Reply
from controller.auth.verifier import Signed
from controller.cluster.changes import PAYLOAD_LIMIT, Change, Ref, decode, encode, fits, shared
from controller.intents import StoreWrite
from controller.model import Instance, Metrics
from tests import test_app_smoke, test_cluster_shell
from tests.helpers import figure2_core
from tests.pgschema import fresh_schema
from tests.test_app_smoke import DSID, INSTANCE, Shell
from tests.test_store import instance, states

shell = test_app_smoke.shell  # the fixture: the app on each framework
member, pg_url = test_cluster_shell.member, test_cluster_shell.pg_url  # m1 on PostgreSQL
V1 = "/dyncast/v1/"


def test_which_changes_are_shared() -> None:
    """Accepted writes to services, instances (drains too) and metrics are shared; reads,
    refusals, the reload and the cluster view are not."""
    assert shared("POST", V1 + "metrics", 200)
    assert shared("PUT", V1 + "services/svc1", 200)
    assert shared("POST", V1 + "instances/10.0.0.21/drain", 200)
    assert shared("DELETE", V1 + "instances/10.0.0.21", 200)
    assert not shared("POST", V1 + "metrics", 400)
    assert not shared("GET", V1 + "services", 200)
    assert not shared("POST", V1 + "config/reload", 200)
    assert not shared("POST", "/elsewhere/metrics", 200)


def test_a_change_survives_its_payload() -> None:
    """encode/decode round-trips a change and a reference; anything else decodes to None;
    a payload over PostgreSQL's limit does not fit."""
    change = Change("m1", "POST", V1 + "metrics", '{"dbid": "10.0.0.21"}')
    assert decode(encode(change)) == change
    assert decode('{"m": "m2", "id": 7}') == Ref("m2", 7)
    for junk in ("", "[]", "{", '{"m": 1}', '{"m": "x", "v": "POST"}', '{"m": "x", "id": "a"}'):
        assert decode(junk) is None
    assert fits(encode(change))
    assert not fits(encode(Change("m1", "POST", V1 + "metrics", "x" * PAYLOAD_LIMIT)))
    signed = Change("m1", "POST", V1 + "metrics", "{}", 5.0, Signed("dma-e2", 2**62, "ab12"))
    assert decode(encode(signed)) == signed
    assert decode(encode(Change("m1", "POST", V1 + "metrics", "{}", 5.0, Signed("a", 1, None)))
                  ) == Change("m1", "POST", V1 + "metrics", "{}", 5.0, Signed("a", 1, None))
    for junk in ('"x"', "[1, 2, 3]", '["a", "1", null]', '["a", true, null]', '["a", 1, 2]'):
        payload = encode(Change("m1", "POST", V1 + "metrics", "{}", 5.0))[:-1] + f',"s":{junk}}}'
        assert decode(payload) == Change("m1", "POST", V1 + "metrics", "{}", 5.0)  # unsigned


@pytest.fixture
def feeds() -> Iterator[tuple[ChangeFeed, ChangeFeed, ChangeFeed]]:
    """m1 and m2 on one schema, m3 on another (another cluster on the same server)."""
    with fresh_schema() as url, fresh_schema() as other:
        Store(url).close()
        Store(other).close()
        out = (ChangeFeed(url, "m1"), ChangeFeed(url, "m2"), ChangeFeed(other, "m3"))
        try:
            for feed in out:
                feed.listen()
            yield out
        finally:
            for feed in out:
                feed.close()


def test_a_change_reaches_the_other_members_once_in_order(
        feeds: tuple[ChangeFeed, ChangeFeed, ChangeFeed]) -> None:
    """m1 publishes a small change and one too large to notify (stored, named by id): m2
    receives both, in order, within a tick; m1 does not receive its own; another schema's
    member hears nothing."""
    m1, m2, m3 = feeds
    small = Change("m1", "POST", V1 + "metrics", '{"dbid": "10.0.0.21"}')
    large = Change("m1", "POST", V1 + "metrics", json.dumps(
        {"reports": [{"dbid": f"10.0.{i // 250}.{i % 250}"} for i in range(600)]}))
    assert not fits(encode(large))
    sent = time.monotonic()
    m1.publish([small, large])
    got = m2.wait(2.0)
    got += m2.wait(0.2) if len(got) < 2 else []
    assert got == [small, large]
    assert time.monotonic() - sent < 1.0
    assert m1.wait(0.2) == [] and m3.wait(0.2) == []


def test_a_member_applies_another_members_changes(member: str, shell: Shell) -> None:
    """m2 registers the instance and reports its load (through the feed): m1 holds the
    instance and decides on its metrics, as if it had accepted them; m1 passes nothing on.
    m1's own accepted request is queued for the others, a refused one is not."""
    app = shell.app
    m2 = ChangeFeed(member, "m2")
    try:
        register = json.dumps({"dsid": DSID, "dbid": INSTANCE[0], "dma": "smoke"})
        report = json.dumps({"dbid": INSTANCE[0], "cpu": 0.5, "sessions": 3, "queue": 0,
                             "capacity": 10})
        m2.publish([Change("m2", "POST", V1 + "instances", register),
                    Change("m2", "POST", V1 + "metrics", report)])
        changes = app.feed.wait(2.0)
        changes += app.feed.wait(0.2) if len(changes) < 2 else []
        assert [c.member for c in changes] == ["m2", "m2"]
        for change in changes:
            app.apply_change(change)
        inst = app.core.catalogue.instances[INSTANCE[0]]
        assert inst.metrics is not None and inst.metrics.sessions == 3
        assert inst.state == "active"
        assert not app._outbox  # applied, not passed on
        before = dict(app.core.catalogue.instances)
        app.apply_change(changes[0])  # a repeat (the registration) changes nothing
        assert app.core.catalogue.instances == before
        assert app.core.catalogue.instances[INSTANCE[0]].state == "active"
        reply = shell.rest("POST", "metrics", {**json.loads(report), "sessions": 4})
        assert reply.status == 200 and [c.member for c in app._outbox] == ["m1"]
        assert shell.rest("POST", "metrics", {"dbid": "nope"}).status == 400
        assert len(app._outbox) == 1
    finally:
        m2.close()
        app.feed.close()
    assert app.core.counters["errors"] == 0


def test_two_members_writing_one_record_at_once_both_succeed(pg_url: str) -> None:
    """Member A rewrites an instance record (DELETE, INSERT) and has not committed; member B's
    write of the same record waits for it: when A commits, B's write succeeds (an upsert: its
    DELETE found nothing left to delete) and B's values are the record's."""
    a, b = Store(pg_url), Store(pg_url)
    try:
        a.apply([instance("10.0.0.1", state="unknown")])
        errors: list[BaseException] = []

        def write_b() -> None:
            try:
                b.apply([instance("10.0.0.1", state="draining")])
            except BaseException as exc:
                errors.append(exc)

        with a.engine.connect() as conn:
            with conn.begin():
                conn.execute(delete(instances_table).where(
                    instances_table.c.dbid == "10.0.0.1"))
                conn.execute(a._insert(instances_table, "dbid"),
                             [_row("instance", "10.0.0.1", instance("10.0.0.1").value)])
                thread = threading.Thread(target=write_b)
                thread.start()
                time.sleep(0.3)  # B waits on A's row
            thread.join(10)
        assert not thread.is_alive() and errors == []
        assert states(a) == {"10.0.0.1": "draining"}
    finally:
        a.close()
        b.close()


def test_changes_waiting_for_the_database_are_bounded(member: str, shell: Shell,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """While the database is away the changes to publish wait, at most OUTBOX_MAX of them:
    the oldest go first, counted."""
    from apps import changefeed

    monkeypatch.setattr(changefeed, "OUTBOX_MAX", 2)
    app = shell.app
    try:
        shell.register()  # a registration and a report: two changes queued
        assert shell.rest("POST", "metrics", {"dbid": INSTANCE[0], "cpu": 0.2, "sessions": 1,
                                              "queue": 0, "capacity": 10}).status == 200
        assert len(app._outbox) == 2 and app.core.counters["changes_dropped"] == 1
        assert all(c.path.endswith("/metrics") for c in app._outbox)  # the newest kept
    finally:
        app.feed.close()


def kill_listener(app: Any, other: Store) -> None:
    """m1's writes so far stored and its queue of changes emptied, it listens; then its
    listening connection dies (pg_terminate_backend, through `other`)."""
    app.store.apply(app.core.drain_writes())
    app._outbox.clear()
    assert app._follow_once() and app.feed.listener is not None
    with other.engine.begin() as conn:
        conn.execute(text("SELECT pg_terminate_backend(:p)"),
                     {"p": app.feed.listener.info.backend_pid})


def test_a_member_catches_up_after_its_listening_connection_broke(
        member: str, shell: Shell, monkeypatch: pytest.MonkeyPatch) -> None:
    """m1's listening connection is killed (pg_terminate_backend); meanwhile m2 drains m1's
    instance, reports newer metrics for it and registers a second one: written to the store,
    notified (lost to m1). When m1 listens again it reads the store and applies all three as
    m2's changes would have been; nothing is passed on, nothing refused."""
    from apps import changefeed

    monkeypatch.setattr(changefeed, "WAIT_S", 0.05)
    app = shell.app
    m2 = ChangeFeed(member, "m2")
    other = Store(member)
    try:
        shell.register()
        kill_listener(app, other)  # (m1's own two changes emptied: no publisher runs here)
        inst = app.core.catalogue.instances[INSTANCE[0]]
        drained = Instance(**{**vars_of(inst), "state": "draining", "drain_deadline": None,
                              "metrics": Metrics(0.9, 7, 1, 10, True),
                              "metrics_at": (inst.metrics_at or 0.0) + 5.0})
        second = Instance(service=inst.service, dbid="10.0.0.22", dma="smoke", state="active")
        other.apply([StoreWrite("instance", d.dbid, d.to_dict()) for d in (drained, second)])
        m2.publish([Change("m2", "POST", V1 + f"instances/{INSTANCE[0]}/drain", "{}")])
        assert not app._follow_once()  # the break is noticed (the notification is lost)
        assert not app.core.catalogue.instances[INSTANCE[0]].draining
        assert app._follow_once()  # listening again: caught up from the store first
        here = app.core.catalogue.instances
        assert here[INSTANCE[0]].draining
        metrics = here[INSTANCE[0]].metrics
        assert metrics is not None and metrics.sessions == 7
        assert "10.0.0.22" in here
        assert app.core.counters["changes_caught_up"] == 3
        assert app.core.counters["changes_refused"] == 0 and not app._outbox
        m2.publish([Change("m2", "POST", V1 + f"instances/{INSTANCE[0]}/undrain", "{}")])
        assert app._follow_once() and not here[INSTANCE[0]].draining  # notified again
        app._caught_up = False  # a second catch-up changes nothing it need not (idempotent)
        app.store.apply(app.core.drain_writes())
        assert app._follow_once() and app.core.counters["changes_caught_up"] == 3
    finally:
        m2.close()
        other.close()
        app.feed.close()
    assert app.core.counters["errors"] == 0


def test_a_catch_up_never_brings_back_what_this_member_deleted_during_its_read(
        member: str, shell: Shell, monkeypatch: pytest.MonkeyPatch) -> None:
    """m1 deletes a service made through its API while its listening connection is down; the
    catch-up's read of the store sees the row, and the flusher lands the deletion while the
    read runs. The service stays deleted: the writes still pending before the read count too
    (a cluster helper saw members bring back 1-2 of their own deleted services after a
    PostgreSQL restart, and store them again)."""
    from apps import changefeed

    monkeypatch.setattr(changefeed, "WAIT_S", 0.05)
    app = shell.app
    other = Store(member)
    made = {"name": "gone1", "dsid": "10.0.100.9", "protocol": "tcp", "port": 80}
    try:
        assert shell.rest("POST", "services", made).status == 201
        kill_listener(app, other)
        assert shell.rest("DELETE", "services/gone1").status == 200  # queued, not stored
        read = app.store.load_shared

        def racing() -> Any:
            snapshot = read()  # the row is still there
            app.store.apply(app.core.drain_writes())  # the flusher lands the deletion
            return snapshot
        monkeypatch.setattr(app.store, "load_shared", racing)
        assert not app._follow_once()  # the break is noticed
        assert app._follow_once()  # listening again: caught up from the store first
        assert "gone1" not in app.core.catalogue.services
        assert app.core.counters["changes_caught_up"] == 0
        app.store.apply(app.core.drain_writes())
        assert "gone1" not in {s.name for s in app.store.load_shared()[0]}
    finally:
        other.close()
        app.feed.close()
    assert app.core.counters["errors"] == 0


def test_a_catch_up_reads_past_a_record_it_cannot_read_and_deletes_nothing_for_it(
        member: str, shell: Shell, monkeypatch: pytest.MonkeyPatch) -> None:
    """While m1 is not listening, its instance's stored record is overwritten by something
    it cannot read and m2 registers a second instance. The catch-up applies the second, keeps
    the first (not in the store as far as it can tell: unreadable, not gone) and listens on.
    Before, the unreadable row failed every catch-up: m1 never applied a change again."""
    from apps import changefeed

    monkeypatch.setattr(changefeed, "WAIT_S", 0.05)
    app = shell.app
    other = Store(member)
    try:
        shell.register()
        app.store.apply(app.core.drain_writes())
        app._outbox.clear()
        assert app._follow_once() and app.feed.listener is not None
        with other.engine.begin() as conn:  # m1's listener dies; its record is spoiled
            conn.execute(text("SELECT pg_terminate_backend(:p)"),
                         {"p": app.feed.listener.info.backend_pid})
            conn.execute(text("UPDATE instances SET data = '[]' WHERE dbid = :d"),
                         {"d": INSTANCE[0]})
        inst = app.core.catalogue.instances[INSTANCE[0]]
        second = Instance(service=inst.service, dbid="10.0.0.22", dma="smoke", state="active")
        other.apply([StoreWrite("instance", second.dbid, second.to_dict())])
        assert not app._follow_once()  # the break is noticed
        assert app._follow_once()  # listening again: caught up from the store first
        here = app.core.catalogue.instances
        assert INSTANCE[0] in here and "10.0.0.22" in here
        assert app.core.counters["changes_caught_up"] == 1
    finally:
        other.close()
        app.feed.close()
    assert app.core.counters["errors"] == 0


def test_members_end_on_the_last_accepted_report_whatever_the_order_applied(
        member: str, shell: Shell) -> None:
    """Five reports for one instance accepted alternately at m1 (the app) and m2 (a core of
    its own, on the same feed), the last at m1. Each member then applies the other's, after
    its own (m1 gets m2's 2nd and 4th after its 5th): once all was applied both hold the 5th,
    the last accepted, and each left the other's older ones out."""
    app = shell.app
    m2_feed = ChangeFeed(member, "m2")
    m2 = Api(figure2_core())  # m2's state: svc1 (the app's DSID) with 10.0.0.21 registered
    try:
        m2_feed.listen()
        shell.register()
        app._outbox.clear()  # the registration and first report: m2 has its own
        sent: list[Change] = []
        for k in range(1, 6):
            body = {"dbid": INSTANCE[0], "cpu": k / 10, "sessions": k, "queue": 0,
                    "capacity": 10}
            if k % 2:
                assert shell.rest("POST", "metrics", body).status == 200
            else:
                at = time.time()
                assert _steps(m2, json.dumps(body), at, None).status == 200
                sent.append(Change("m2", "POST", V1 + "metrics", json.dumps(body), at))
            time.sleep(0.002)
        assert [c.at is not None for c in app._outbox] == [True] * 3
        m2_feed.publish(sent)  # m2's first: m1 applies them after its own last
        app.feed.publish(list(app._outbox))
        app._outbox.clear()
        got: list[Change] = []
        deadline = time.monotonic() + 5.0
        while (app.core.counters["changes_applied"] < 2 or len(got) < 3) \
                and time.monotonic() < deadline:
            app._follow_once()
            got += m2_feed.wait(0.05)
        for change in got:  # m2 applies m1's reports as the shell does
            _steps(m2, change.body, time.time(), change.at)
        assert app.core.counters["changes_applied"] == 2 and len(got) == 3
        held = [app.core.catalogue.instances[INSTANCE[0]].metrics,
                m2.core.catalogue.instances[INSTANCE[0]].metrics]
        assert held[0] == held[1] and held[0] is not None and held[0].sessions == 5
        assert app.core.counters["reports_stale"] == 2  # m2's 2nd and 4th
        assert m2.core.counters["reports_stale"] == 2  # m1's 1st and 3rd
    finally:
        m2_feed.close()
        app.feed.close()
    assert app.core.counters["errors"] == 0


def _steps(api: Api, body: str, now: float, accepted: float | None) -> Reply:
    """POST /metrics served as the shell serves it (`accepted`: another member's)."""
    steps = api.steps("POST", V1 + "metrics", body.encode(), now, accepted)
    step = next(steps)
    while not isinstance(step, Reply):
        step = steps.send(now)
    return step


def vars_of(inst: Instance) -> dict[str, Any]:
    """An instance's fields, to copy it with some changed."""
    return {f.name: getattr(inst, f.name) for f in fields(inst)}


def test_many_changes_are_applied_in_slices_that_let_the_event_loop_run(
        member: str, shell: Shell, monkeypatch: pytest.MonkeyPatch) -> None:
    """A wait that returns many changes (here 250 reports of m2) applies every one of them, in
    order, and yields to the event loop every APPLY_SLICE changes rather than in one go."""
    from apps import changefeed

    yields: list[float] = []
    real_sleep = changefeed.hub.sleep
    monkeypatch.setattr(changefeed.hub, "sleep",
                        lambda s=0: yields.append(s) if s == 0 else real_sleep(s))
    app = shell.app
    m2 = ChangeFeed(member, "m2")
    try:
        shell.register()
        app._outbox.clear()
        m2.publish([Change("m2", "POST", V1 + "metrics", json.dumps(
            {"dbid": INSTANCE[0], "cpu": 0.1, "sessions": i, "queue": 0, "capacity": 1000}),
            at=time.time() + i / 1000) for i in range(250)])
        deadline = time.monotonic() + 5
        while app.core.counters["changes_applied"] < 250 and time.monotonic() < deadline:
            assert app._follow_once()
        assert app.core.counters["changes_applied"] == 250
        inst = app.core.catalogue.instances[INSTANCE[0]]
        assert inst.metrics is not None and inst.metrics.sessions == 249  # the last one
        assert len(yields) >= 250 // changefeed.APPLY_SLICE - 1, yields
    finally:
        m2.close()
        app.feed.close()
    assert app.core.counters["errors"] == 0


def test_a_catch_up_is_applied_in_slices_that_let_the_event_loop_run(
        member: str, shell: Shell, monkeypatch: pytest.MonkeyPatch) -> None:
    """A catch-up from the store that finds 250 instances this member lacks registers every
    one of them, yielding to the event loop every APPLY_SLICE requests rather than in one go
    (each is an API call on the loop, as a notified change is)."""
    from apps import changefeed

    yields: list[float] = []
    real_sleep = changefeed.hub.sleep
    monkeypatch.setattr(changefeed.hub, "sleep",
                        lambda s=0: yields.append(s) if s == 0 else real_sleep(s))
    app = shell.app
    other = Store(member)
    try:
        shell.register()
        app.store.apply(app.core.drain_writes())
        app._outbox.clear()
        service = app.core.catalogue.instances[INSTANCE[0]].service
        other.apply([StoreWrite("instance", f"10.0.1.{i}", Instance(
            service=service, dbid=f"10.0.1.{i}", dma="smoke").to_dict())
            for i in range(250)])
        app._caught_up = False  # the listening connection had broken: catch up first
        assert app._follow_once()
        assert app.core.counters["changes_caught_up"] == 250
        assert all(f"10.0.1.{i}" in app.core.catalogue.instances for i in range(250))
        assert len(yields) >= 250 // changefeed.APPLY_SLICE - 1, yields
    finally:
        other.close()
        app.feed.close()
    assert app.core.counters["errors"] == 0


def test_a_catch_up_takes_the_agents_sequences_the_others_stored(member: str, shell: Shell,
                                                                 monkeypatch: pytest.MonkeyPatch
                                                                 ) -> None:
    """A member listening again after a break reads the agents' sequences the others stored
    meanwhile with the shared records: a call of theirs replayed to it is refused (the
    changes it missed carried them: docs/security.md)."""
    from apps import changefeed

    monkeypatch.setattr(changefeed, "WAIT_S", 0.05)
    app = shell.app
    other = Store(member)
    try:
        other.apply([StoreWrite("agent_seq", "dma-x", {"agent": "dma-x", "seq": 500,
                                                       "key": None})])
        assert "dma-x" not in app.guard.verifier.last_seq
        app._caught_up = False  # its listening connection broke
        assert app._follow_once()
        assert app.guard.verifier.last_seq["dma-x"] == 500
    finally:
        other.close()
        app.feed.close()
    assert app.core.counters["errors"] == 0


def test_a_later_write_missed_while_not_listening_wins_over_one_pending_here(
        member: str, shell: Shell, monkeypatch: pytest.MonkeyPatch) -> None:
    """m1's listening connection is killed; m1 replaces svc1 (its store write still queued)
    and m2 replaces it a second later, notified (lost to m1) and logged. When m1 listens again
    it applies m2's write from the log of changes, judged by its stamp: both hold m2's, and
    m1's store write is m2's too. (Before, the store's svc1 was not judged at all while a
    write of m1's own was pending: m1 kept its earlier one.) A second catch-up applies
    nothing again, and m2's next change is heard once."""
    from apps import changefeed

    monkeypatch.setattr(changefeed, "WAIT_S", 0.05)
    app = shell.app
    m2 = ChangeFeed(member, "m2")
    other = Store(member)
    try:
        kill_listener(app, other)
        body = {k: v for k, v in app.core.catalogue.services["svc1"].to_dict().items()
                if k != "name"}
        assert shell.rest("PUT", "services/svc1", {**body, "policy": "least-loaded"}
                          ).status == 200
        (mine,) = app._outbox
        pending = app.core.writes.keys()  # (a set: `Writes` has no `in`)
        assert mine.at is not None and ("service", "svc1") in pending
        theirs = Change("m2", "PUT", V1 + "services/svc1",
                        json.dumps({**body, "policy": "nearest"}), mine.at + 1.0)
        m2.publish([theirs])
        assert not app._follow_once()  # the break is noticed (the notification is lost)
        assert app.core.catalogue.services["svc1"].policy == "least-loaded"
        assert app._follow_once()  # listening again: the log first
        assert app.core.catalogue.services["svc1"].policy == "nearest"
        (write,) = [w for w in app.core.drain_writes() if w.kind == "service"]
        assert write.value is not None and write.value["policy"] == "nearest"
        caught = app.core.counters["changes_caught_up"]
        assert caught >= 1
        app._caught_up = False
        assert app._follow_once() and app.core.counters["changes_caught_up"] == caught
        m2.publish([Change("m2", "POST", V1 + "instances",
                           json.dumps({"dsid": DSID, "dbid": "10.0.0.23", "dma": "x"}),
                           mine.at + 2.0)])
        applied = app.core.counters["changes_applied"]
        for _ in range(40):  # (one wait is 0.05 s here: a loaded machine may need more)
            assert app._follow_once()
            if "10.0.0.23" in app.core.catalogue.instances:
                break
        assert "10.0.0.23" in app.core.catalogue.instances
        assert app.core.counters["changes_applied"] == applied + 1
        assert app.core.counters["changes_refused"] == 0
    finally:
        m2.close()
        other.close()
        app.feed.close()
    assert app.core.counters["errors"] == 0
