"""The store, on SQLite and on PostgreSQL: records survive a round trip; batches collapse; deletes
delete; a failed batch changes nothing; the schema is made and adopted by the migrations.

Every test that takes `open_store` runs twice, on a fresh SQLite file and on a fresh PostgreSQL
schema. The PostgreSQL run needs DYNCAST_TEST_PG_URL (scripts/test.sh always starts
scripts/postgres.sh and sets it): unset, it is skipped; set but unreachable, it fails.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command as alembic_command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine, event, text
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.exc import IntegrityError

from apps import migrations
from apps.migrations.__main__ import main as migrations_cli
from apps.store import Store, load_store, metadata
from apps.store import _row as store_row
from apps.store import open_store as open_store_claimed
from bench import store_restore
from controller.api import Api
from controller.config import ControllerConfig
from controller.core import Core
from controller.errors import ConfigError
from controller.intents import StoreWrite
from controller.model import Metrics
from controller.validate import NAME_RE
from tests.helpers import figure2_core, report, tcp_frame
from tests.pgschema import fresh_schema

# What `metadata.create_all` emitted before migrations existed (the same on both backends).
OLD_DDL = (
    "CREATE TABLE services (name VARCHAR(64) NOT NULL, dsid VARCHAR(15) NOT NULL, "
    "data TEXT NOT NULL, PRIMARY KEY (name))",
    "CREATE TABLE instances (dbid VARCHAR(15) NOT NULL, service VARCHAR(64) NOT NULL, "
    "metrics_at FLOAT, data TEXT NOT NULL, PRIMARY KEY (dbid))",
    "CREATE TABLE bindings (id VARCHAR(20) NOT NULL, service VARCHAR(64) NOT NULL, "
    "dbid VARCHAR(15) NOT NULL, data TEXT NOT NULL, PRIMARY KEY (id))",
)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of a fresh, empty database: a SQLite file, or a PostgreSQL schema of its own."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'db.sqlite'}"
        return
    with fresh_schema() as url:
        yield url


@pytest.fixture
def open_store(store_url: str) -> Iterator[Callable[[], Store]]:
    """Opens the test's database as a new Store (a controller start); closes them all after."""
    opened: list[Store] = []

    def open_one() -> Store:
        opened.append(Store(store_url))
        return opened[-1]

    yield open_one
    for store in opened:
        store.close()


def instance(dbid: str, service: str = "svc1", **extra: Any) -> StoreWrite:
    """A write of an instance record."""
    value = {"service": service, "dbid": dbid, "dma": "dma", "registered_active": True,
             "metrics": None, "metrics_at": None, "registered_at": 0.0, "state": "active",
             "state_since": 0.0, "history": [], **extra}
    return StoreWrite("instance", dbid, value)


def states(store: Store) -> dict[str, str]:
    """Every stored instance's D-BID and state."""
    return {i.dbid: i.state for i in store.load().instances}


def execute(store: Store, *statements: str) -> list[Any]:
    """Run SQL on the store's database in one transaction; the last statement's rows."""
    with store.engine.begin() as conn:
        results = [conn.execute(text(s)) for s in statements]
        return list(results[-1]) if results[-1].returns_rows else []


def test_round_trip_restores_services_instances_and_bindings(
        open_store: Callable[[], Store]) -> None:
    """What the core queued for the store comes back as equal values after a restart."""
    core = figure2_core()
    for dbid in ("10.0.0.21", "10.0.0.31"):
        report(core, dbid, 1.0, sessions=3)
    core.put_service(core.catalogue.services["svc2"], create=False, now=1.0)
    core.packet_in(1, 1, tcp_frame("00:00:00:00:00:01", "02:dc:00:00:00:01", "10.0.0.1",
                                   "10.0.100.1", 40000, 8000), 1.0)
    store = open_store()
    assert store.apply(core.drain_writes()) > 0
    store.close()
    snap = open_store().load()
    assert [s.name for s in snap.services] == ["svc2"]
    assert snap.services[0] == core.catalogue.services["svc2"]
    by_dbid = {i.dbid: i for i in snap.instances}
    assert by_dbid.keys() == core.catalogue.instances.keys()
    assert by_dbid["10.0.0.21"].metrics == core.catalogue.instances["10.0.0.21"].metrics
    (binding,) = snap.bindings
    live = core.bindings.all()[0]
    assert (binding.key, binding.dbid, binding.ingress, binding.created_at) == (
        live.key, live.dbid, live.ingress, live.created_at)


def test_states_the_tick_and_the_switches_gave_and_a_pending_trigger_outlive_a_restart(
        open_store: Callable[[], Store]) -> None:
    """Only a D-MA's or an operator's operation stored its instance: states the tick gave
    (stale metrics: `unknown`; a port gone: `down`) came back after a restart as they were
    stored before (`active`: a candidate again), without the transition in their history; and
    an `activating` instance came back without its reactivation trigger, so its D-MA never got
    it. Now every state change is stored, and the trigger is sent again."""
    core = figure2_core()
    for dbid in ("10.0.0.21", "10.0.0.31", "10.0.0.22", "10.0.0.32"):
        report(core, dbid, 1.0, sessions=3)
    store = open_store()
    store.apply(core.drain_writes())
    core.port_changed(3, 1, up=False, now=2.0)  # e3's port on r3: 10.0.0.31 is down
    core.tick(20.0)  # no report since 1.0: the others are stale, `unknown`
    core.report("10.0.0.22", Metrics(sessions=3, capacity=10, active=False), 21.0)  # not
    #                                                                  serving (its D-MA)
    core.operations.activate("10.0.0.22", "operator", 21.0)
    want = {d: (i.state, [t.event for t in i.history])
            for d, i in core.catalogue.instances.items()}
    assert want["10.0.0.31"][0] == "down" and want["10.0.0.21"][0] == "unknown"
    assert want["10.0.0.22"][0] == "activating"
    store.apply(core.drain_writes())
    store.close()
    snap = open_store().load()
    again = figure2_core(now=30.0)
    again.restore(snap.services, snap.instances, snap.bindings, 30.0)
    assert {d: (i.state, [t.event for t in i.history])
            for d, i in again.catalogue.instances.items()} == want
    (command,) = again.states.take(["10.0.0.22"])
    assert (command["op"], command["dbid"]) == ("reactivate", "10.0.0.22")
    assert again.states.take(["10.0.0.21", "10.0.0.31", "10.0.0.32"]) == []


def test_every_process_of_a_store_gets_the_same_lldp_key(open_store: Callable[[], Store],
                                                         store_url: str) -> None:
    """The LLDP key (controller/network/network.py `keyed`) is made once per store, 32
    random bytes, and read alike by each process after (a restart, a cluster's members), so
    they take each other's frames; another store has another."""
    first = open_store_claimed(store_url, "dyncast.toml", shared=True)
    second = open_store_claimed(store_url, "dyncast.toml", shared=True)
    assert len(first.lldp_key) == 32 and first.lldp_key == second.lldp_key
    assert first.secret("lldp") == first.lldp_key and first.secret("other") != first.lldp_key
    first.close(), second.close()


def test_many_records_in_one_batch_round_trip(open_store: Callable[[], Store]) -> None:
    """A batch larger than one DELETE chunk is written, replaced and deleted whole."""
    store = open_store()
    dbids = [f"10.1.{i // 250}.{i % 250}" for i in range(1200)]
    assert store.apply([instance(d) for d in dbids]) == 1200
    assert store.apply([instance(d, state="draining") for d in dbids]) == 1200
    assert set(states(store).values()) == {"draining"} and len(states(store)) == 1200
    store.apply([StoreWrite("instance", d, None) for d in dbids[:700]])
    assert sorted(states(open_store())) == sorted(dbids[700:])


def test_last_write_wins_within_a_batch(open_store: Callable[[], Store]) -> None:
    """Several writes to one record in a batch leave the last one, be it a value or a delete."""
    store = open_store()
    store.apply([instance("10.0.0.1", state="active"), instance("10.0.0.1", state="draining"),
                 instance("10.0.0.2"), StoreWrite("instance", "10.0.0.2", None),
                 StoreWrite("instance", "10.0.0.3", None), instance("10.0.0.3", state="down")])
    assert states(open_store()) == {"10.0.0.1": "draining", "10.0.0.3": "down"}


def test_delete_removes_the_record(open_store: Callable[[], Store]) -> None:
    """A withdrawal queued after a registration leaves no instance record, in the same batch or
    in a later one, and deleting what is not there is no error."""
    core = figure2_core()
    store = open_store()
    store.apply(core.drain_writes())
    assert "10.0.0.21" in states(store)
    core.withdraw("10.0.0.21", 1.0)
    store.apply(core.drain_writes())
    store.apply([StoreWrite("instance", "10.9.9.9", None)])
    assert states(open_store()).keys() == {"10.0.0.31", "10.0.0.22", "10.0.0.32"}


def test_failed_batch_changes_nothing_and_applies_when_retried(
        open_store: Callable[[], Store]) -> None:
    """A batch that fails after some of its statements ran leaves the store as it was (one
    transaction); the caller requeues the writes and the retried batch lands whole."""
    store = open_store()
    store.apply([instance("10.0.0.1", state="active")])
    bad = instance("10.0.0.9")
    assert isinstance(bad.value, dict)
    bad.value["service"] = None  # NOT NULL: fails on the instance INSERT, after the DELETEs
    batch = [instance("10.0.0.1", state="draining"), instance("10.0.0.2"),
             StoreWrite("binding", "7", None), bad]
    with pytest.raises(IntegrityError, match=r"(?i)null"):
        store.apply(batch)
    assert states(store) == {"10.0.0.1": "active"}
    requeued = batch[:-1]  # what the app keeps and retries, here without the bad record
    assert store.apply(requeued) == 3
    assert states(open_store()) == {"10.0.0.1": "draining", "10.0.0.2": "active"}


def test_database_failing_midway_loses_nothing_through_the_core_queue(
        open_store: Callable[[], Store]) -> None:
    """The app's flush loop: a batch whose last statement fails (the database went away) is
    rolled back and requeued in the core; with writes queued since, the next flush stores
    exactly the core's state."""
    core = figure2_core()
    store = open_store()
    store.apply(core.drain_writes())
    core.packet_in(1, 1, tcp_frame("00:00:00:00:00:01", "02:dc:00:00:00:01", "10.0.0.1",
                                   "10.0.100.1", 40000, 8000), 1.0)
    report(core, "10.0.0.21", 1.0, sessions=3)
    failures = ["INSERT INTO bindings"]

    def fail_once(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if failures and statement.startswith(failures[0]):
            raise OSError(f"connection lost before: {failures.pop()}")

    event.listen(store.engine, "before_cursor_execute", fail_once)
    writes = core.drain_writes()
    assert {w.kind for w in writes} == {"instance", "binding"}
    with pytest.raises(Exception, match="connection lost"):
        store.apply(writes)
    assert store.load().bindings == []  # the instance written before it is rolled back too
    assert all(i.metrics is None for i in store.load().instances)
    core.writes.requeue(writes)
    core.withdraw("10.0.0.32", 2.0)  # a newer write, queued while the batch was failing
    store.apply(core.drain_writes())
    snap = open_store().load()
    assert [(b.key, b.dbid) for b in snap.bindings] == [
        (b.key, b.dbid) for b in core.bindings.all()]
    assert {i.dbid: i.metrics for i in snap.instances} == {
        d: i.metrics for d, i in core.catalogue.instances.items()}


def test_restart_restores_state_and_configured_services_win(
        open_store: Callable[[], Store]) -> None:
    """A restarted core gets stored instances and bindings back; a service in the config file
    wins over a stored one of the same name, and stored-only services come back too."""
    from dataclasses import replace

    from controller.config import ControllerConfig
    from controller.core import Core
    from tests.helpers import SVC1, SVC2

    core = figure2_core()
    core.put_service(replace(SVC2, port=9000), create=False, now=1.0)
    core.put_service(replace(SVC1, name="svc9", dsid="10.0.100.9"), create=True, now=1.0)
    core.packet_in(1, 1, tcp_frame("00:00:00:00:00:01", "02:dc:00:00:00:01", "10.0.0.1",
                                   "10.0.100.1", 40000, 8000), 1.0)
    open_store().apply(core.drain_writes())
    snap = open_store().load()
    restarted = Core(ControllerConfig(services=(SVC1, SVC2)))
    restarted.restore(snap.services, snap.instances, snap.bindings)
    assert restarted.catalogue.services["svc2"].port == 8000  # the file's version
    assert "svc9" in restarted.catalogue.services
    assert restarted.catalogue.instances.keys() == core.catalogue.instances.keys()
    assert [b.dbid for b in restarted.bindings.all()] == [b.dbid for b in core.bindings.all()]


def test_migrations_make_exactly_the_store_tables(open_store: Callable[[], Store]) -> None:
    """The schema the migrations create is the one the store's queries are written against."""
    store = open_store()
    with store.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), metadata) == []
        assert migrations.current(conn) == migrations.head()


def test_a_store_made_before_migrations_is_adopted_with_its_records(
        open_store: Callable[[], Store], store_url: str) -> None:
    """A database with the three tables of the old `create_all` and no alembic_version is
    stamped, not re-created: its records load, and it is at the newest revision after."""
    engine = create_engine(store_url)
    with engine.begin() as conn:
        for ddl in OLD_DDL:
            conn.execute(text(ddl))
        conn.execute(text("INSERT INTO instances (dbid, service, metrics_at, data) "
                          "VALUES ('10.0.0.5', 'svc1', NULL, :data)"),
                     {"data": '{"dbid": "10.0.0.5", "service": "svc1", "state": "down"}'})
    engine.dispose()
    store = open_store()
    assert states(store) == {"10.0.0.5": "down"}
    assert execute(store, "SELECT version_num FROM alembic_version") == [(migrations.head(),)]
    with store.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), metadata) == []


def test_a_database_with_only_some_of_the_tables_is_refused(store_url: str) -> None:
    """Tables of the same names that are not a whole old store are not adopted: the store
    refuses to start rather than stamp and later fail on the missing ones."""
    engine = create_engine(store_url)
    with engine.begin() as conn:
        conn.execute(text(OLD_DDL[0]))
    engine.dispose()
    with pytest.raises(migrations.MigrationError, match=r"\['services'\] but not"):
        Store(store_url)


def test_a_store_of_a_newer_schema_is_refused_and_left_as_it_is(
        open_store: Callable[[], Store], store_url: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A store a newer controller upgraded (a revision we do not know) is refused with a
    MigrationError naming both revisions (the start's one line), not alembic's CommandError
    (a traceback), and its records and revision are left untouched; the command exits 1."""
    store = open_store()
    store.apply([instance("10.0.0.1")])
    execute(store, "UPDATE alembic_version SET version_num = '9999'")
    with pytest.raises(migrations.MigrationError, match=r"'9999'.*newer version"):
        Store(store_url)
    assert migrations_cli(["upgrade", "--url", store_url]) == 1
    assert "'9999'" in capsys.readouterr().err
    assert execute(store, "SELECT version_num FROM alembic_version") == [("9999",)]
    assert states(store) == {"10.0.0.1": "active"}


def test_restart_upgrades_once_and_keeps_the_records(open_store: Callable[[], Store]) -> None:
    """A second start finds the newest revision and changes nothing: one version row, same
    records, and `upgrade` reports no step."""
    open_store().apply([instance("10.0.0.1")])
    store = open_store()
    assert migrations.upgrade(store.engine) == (migrations.head(), migrations.head())
    assert execute(store, "SELECT version_num FROM alembic_version") == [(migrations.head(),)]
    assert states(store) == {"10.0.0.1": "active"}


def test_a_database_whose_tables_were_dropped_is_made_again(
        open_store: Callable[[], Store], store_url: str) -> None:
    """Tables dropped by hand (a sequence, which `drop_all` leaves, stays behind): the next
    start makes the schema again instead of failing on the leftover sequence."""
    open_store().apply([instance("10.0.0.1")])
    engine = create_engine(store_url)
    with engine.begin() as conn:
        for table in ("alembic_version", "cluster_dsid_claims", "controller_secrets",
                      "cluster_changes", "cluster_members", "agent_sequences", "bindings",
                      "instances", "services"):
            conn.execute(text(f"DROP TABLE IF EXISTS {table}"))
    engine.dispose()
    store = open_store()
    assert states(store) == {}
    assert execute(store, "SELECT version_num FROM alembic_version") == [(migrations.head(),)]


def test_migrations_command_upgrades_and_reports(store_url: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """`python -m apps.migrations current` exits 1 on a database behind, `upgrade` brings it to
    the newest revision, and `current` then exits 0."""
    assert migrations_cli(["current", "--url", store_url]) == 1
    assert migrations_cli(["upgrade", "--url", store_url]) == 0
    assert migrations_cli(["upgrade", "--url", store_url]) == 0
    assert migrations_cli(["current", "--url", store_url]) == 0
    out = capsys.readouterr().out.splitlines()
    head = migrations.head()
    assert out[0].endswith(f"no revision (newest: {head})")
    assert out[1].endswith(f"empty -> {head}") and out[2].endswith(f"at {head} already")
    assert "dyncast:dyncast@" not in "".join(out)  # the password is not printed


NAMES = st.from_regex(NAME_RE, fullmatch=True).filter(lambda n: n not in (".", ".."))


@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=NAMES, dma=NAMES)
def test_every_name_the_api_accepts_round_trips_through_the_store(
        open_store: Callable[[], Store], name: str, dma: str) -> None:
    """A service and an instance created through the API with any name it accepts are written,
    read back equal after a restart, and deleted (no name the store cannot hold gets in)."""
    api = Api(figure2_core())
    body = {"name": name, "dsid": "10.0.100.7", "protocol": "udp", "port": 53}
    assert api.handle("POST", "/dyncast/v1/services",
                      json.dumps(body).encode(), 1.0).status == 201
    assert api.handle("POST", "/dyncast/v1/instances", json.dumps(
        {"dsid": "10.0.100.7", "dbid": "10.0.0.77", "dma": dma}).encode(), 1.0).status == 201
    store = open_store()  # one per example, closed by it: examples add no connections
    try:
        store.apply(api.core.drain_writes())
        snap = store.load()
        assert api.core.catalogue.services[name] in snap.services
        assert {(i.service, i.dma) for i in snap.instances if i.dbid == "10.0.0.77"} \
            == {(name, dma)}
        assert api.handle("DELETE", f"/dyncast/v1/services/{name}", b"", 2.0).status == 200
        store.apply(api.core.drain_writes())
        assert name not in {s.name for s in store.load().services}
    finally:
        store.close()


def test_a_stored_service_from_before_the_name_rules_still_loads(
        open_store: Callable[[], Store]) -> None:
    """A service stored under the old, looser name rule is loaded as it is, not lost."""
    store = open_store()
    old = {"name": "old name", "dsid": "10.0.100.9"}
    store.apply([StoreWrite("service", "old name", old)])
    assert [s.name for s in store.load().services] == ["old name"]


def test_a_binding_rewritten_in_a_later_batch_replaces_its_row(
        open_store: Callable[[], Store]) -> None:
    """A binding stored, then written again (its instance and ingress changed: a move), then
    deleted, in three batches: the store holds what was written last, one row per binding."""
    from controller.dataplane.affinity import Binding, FlowKey

    def write(b: Binding) -> StoreWrite:
        return StoreWrite("binding", str(b.ident), b.to_dict())

    moved = Binding(7, FlowKey("svc1", "10.0.0.1", "10.0.100.1", 6, 40000, 8000), "10.0.0.21",
                    1, 1.5)
    kept = Binding(8, FlowKey("svc1", "10.0.0.2", "10.0.100.1", 17, None, None), "10.0.0.31",
                   2, 2.0)
    store = open_store()
    assert store.apply([write(moved), write(kept)]) == 2
    moved.dbid, moved.ingress = "10.0.0.22", 3
    assert store.apply([write(moved)]) == 1
    assert sorted((b.ident, b.dbid, b.ingress, b.key) for b in open_store().load().bindings) == [
        (7, "10.0.0.22", 3, moved.key), (8, "10.0.0.31", 2, kept.key)]
    assert execute(store, "SELECT COUNT(*) FROM bindings") == [(2,)]
    store.apply([StoreWrite("binding", "7", None)])
    assert [b.ident for b in open_store().load().bindings] == [8]


def upgrade_to(url: str, revision: str) -> None:
    """Bring a database to `revision` as the controller of that time did (one transaction)."""
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            alembic_command.upgrade(migrations.alembic_config(conn), revision)
    finally:
        engine.dispose()


REVISIONS = ["0001", "0002", "0003", "0004", "0005", "0006"]  # every revision before the newest


def test_migrations_list_is_every_revision_before_the_newest() -> None:
    """REVISIONS below keeps up with apps/migrations/versions (a new revision adds the one
    before it here, so the upgrade from it is tested too)."""
    assert sorted(migrations.revisions()) == [*REVISIONS, migrations.head()]


@pytest.mark.parametrize("revision", REVISIONS)
def test_a_store_made_at_each_earlier_revision_keeps_every_row_when_upgraded(
        store_url: str, revision: str, open_store: Callable[[], Store]) -> None:
    """A store made by the controller at `revision`, with rows in every table it had (records
    as that version wrote them: an agent's sequence without its key before the key was
    stored), is upgraded by the current controller at its start and keeps every row."""
    upgrade_to(store_url, revision)
    core = figure2_core()
    for dbid in ("10.0.0.21", "10.0.0.31"):
        report(core, dbid, 1.0, sessions=3)
    core.put_service(core.catalogue.services["svc2"], create=False, now=1.0)
    for sport in (40000, 40001):
        core.packet_in(1, 1, tcp_frame("00:00:00:00:00:01", "02:dc:00:00:00:01", "10.0.0.1",
                                       "10.0.100.1", sport, 8000), 1.0)
    writes = [*core.drain_writes(),
              StoreWrite("agent_seq", "dma-a", {"agent": "dma-a", "seq": 41})]
    tables = {"service": "services", "instance": "instances", "binding": "bindings",
              "agent_seq": "agent_sequences"}
    engine = create_engine(store_url)
    with engine.begin() as conn:
        present = set(sa_inspect(conn).get_table_names())
        for w in writes:
            if tables[w.kind] in present:
                assert w.value is not None
                row = store_row(w.kind, w.key, w.value)
                conn.execute(text(f"INSERT INTO {tables[w.kind]} ({', '.join(row)}) VALUES "
                                  f"({', '.join(':' + c for c in row)})"), row)
        if "cluster_members" in present:
            conn.execute(text("INSERT INTO cluster_members (member_id, address, beat_at, "
                              "lease_until, epoch) VALUES ('m1', '10.0.0.9:8080', 1, 2, 7)"))
        if "cluster_changes" in present:
            conn.execute(text("INSERT INTO cluster_changes (member_id, at, data) "
                              "VALUES ('m1', 1.5, '{\"change\": 1}')"))
    engine.dispose()
    store = open_store()
    snap = store.load()
    assert [s.name for s in snap.services] == ["svc2"]
    assert {i.dbid: i.metrics for i in snap.instances} == {
        d: i.metrics for d, i in core.catalogue.instances.items()}
    assert sorted(b.key.sport for b in snap.bindings) == [40000, 40001]
    if revision >= "0002":
        assert snap.agent_seqs == {"dma-a": 41} and snap.agent_keys == {}
    if revision >= "0003":
        assert execute(store, "SELECT member_id, epoch, settings FROM cluster_members") == [
            ("m1", 7, None)]
    if revision >= "0004":
        assert execute(store, "SELECT member_id, data FROM cluster_changes") == [
            ("m1", '{"change": 1}')]
    assert execute(store, "SELECT version_num FROM alembic_version") == [(migrations.head(),)]
    with store.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), metadata) == []


def test_a_restart_at_size_restores_every_binding_label_and_sequence(
        open_store: Callable[[], Store]) -> None:
    """10,000 bindings and 1,000 instances (500 of whose labels are not their preferred ones,
    after clashes) and 1,000 agents' sequences, stored as bench/store_restore.py lays them
    out, come back whole into a restarted core; new bindings are numbered above them."""
    writes, want = store_restore.records(1000, 10_000)
    assert want["clashed"] == 500
    open_store().apply(writes)
    snap = open_store().load()
    core = Core(ControllerConfig())  # no configured service: the stored ones are the API's
    core.restore(snap.services, snap.instances, snap.bindings, time.time())
    store_restore.check(core, snap.agent_seqs, want)


def test_a_store_is_claimed_by_one_lone_controller_or_shared_by_a_cluster(store_url: str) -> None:
    """A second controller not in a [cluster] started on a store in use is refused with one
    line naming `controller.store_url` (each overwrote the other's records: instances one had
    marked down, bindings it retired); cluster members share a store, but not with a lone
    controller; a claim ends with its controller."""
    first = open_store_claimed(store_url, "dyncast.toml", shared=False)
    with pytest.raises(ConfigError, match=r"controller\.store_url.*in use by another controller"):
        open_store_claimed(store_url, "dyncast.toml", shared=False)
    with pytest.raises(ConfigError, match=r"in use by a controller not in a \[cluster\]"):
        open_store_claimed(store_url, "dyncast.toml", shared=True)
    first.close()
    members = [open_store_claimed(store_url, "dyncast.toml", shared=True) for _ in range(2)]
    with pytest.raises(ConfigError, match=r"in use by another controller"):
        open_store_claimed(store_url, "dyncast.toml", shared=False)
    for member in members:
        member.close()
    open_store_claimed(store_url, "dyncast.toml", shared=False).close()


@pytest.mark.parametrize(("table", "key", "data"), [
    ("services", "svc9", '{"name": "svc9", "dsid": "not an address"}'),
    ("services", "svc8", "[]"),
    ("instances", "10.0.0.5", '{"dbid": "10.0.0.5"}'),
    ("bindings", "7", '{"id": 7, "service": "svc1"'),
    ("agent_sequences", "dma-a", '{"agent": "dma-a", "seq": "many"}'),
])
def test_a_record_that_cannot_be_read_stops_the_start_with_one_line(
        open_store: Callable[[], Store], table: str, key: str, data: str) -> None:
    """A stored record that does not parse (made by hand or by another program) is refused
    by name: a ConfigError naming controller.store_url, the table and the key (the start's
    one line, exit 1; it was a KeyError's or a JSONDecodeError's traceback); the row stays."""
    store = open_store()
    columns = {"services": "name, dsid, data", "instances": "dbid, service, data",
               "bindings": "id, service, dbid, data", "agent_sequences": "agent, data"}[table]
    values = {"services": ":key, '10.0.100.9', :data", "instances": ":key, 'svc1', :data",
              "bindings": ":key, 'svc1', '10.0.0.5', :data",
              "agent_sequences": ":key, :data"}[table]
    with store.engine.begin() as conn:
        conn.execute(text(f"INSERT INTO {table} ({columns}) VALUES ({values})"),
                     {"key": key, "data": data})
    with pytest.raises(ConfigError, match=rf"controller\.store_url: the {table} record "
                                          rf"'{key}' cannot be read"):
        load_store(store, "dyncast.toml")
    assert execute(store, f"SELECT count(*) FROM {table}") == [(1,)]
