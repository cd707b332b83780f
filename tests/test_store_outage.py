"""A store that stops answering while the controller runs, driven through the real app (the
Shell of tests/test_app_smoke.py): the API answers as usual and nothing is half-applied, every
write reaches the store once it is back, /readyz says not ready meanwhile, the outage is
logged once at its start and once at its end; and the stop's last flush neither loses the
batch a worker thread is applying nor the writes queued behind a store that is briefly away.

The outage is the store's engine swapped for one whose every connection fails (a SQLite file
in a directory that does not exist: the driver's own error, at connect, as with a stopped
server); swapping the real one back is the server's return.
"""

from __future__ import annotations

import dataclasses
import logging
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine

from apps import store as store_module
from apps import storeflush, storespill
from apps.store import Store, open_store
from controller.cluster.settings import ClusterConfig
from controller.errors import ConfigError
from controller.intents import CookieKind, StoreWrite, cookie
from tests import test_app_smoke
from tests.test_app_smoke import CLIENT, INSTANCE, FakeWSGI, Shell

shell = test_app_smoke.shell  # the fixture: the app on each framework


class Records(logging.Handler):
    """The log records of the `dyncast` loggers (the component loggers do not propagate)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def events(self, name: str) -> list[dict[str, Any]]:
        """The fields of every structured event called `name`."""
        return [r.fields for r in self.records  # type: ignore[attr-defined]
                if isinstance(getattr(r, "fields", None), dict) and r.fields.get("event") == name]

    def tracebacks(self) -> int:
        """How many records carried a traceback."""
        return sum(1 for r in self.records if r.exc_info)


@pytest.fixture
def records() -> Iterator[Records]:
    """What the store component and the app log during the test."""
    handler = Records()
    loggers = [logging.getLogger("dyncast.store"), logging.getLogger("dyncast")]
    for log in loggers:
        log.addHandler(handler)
    yield handler
    for log in loggers:
        log.removeHandler(handler)


def down(shell: Shell, tmp_path: Path) -> Any:
    """The store stops answering; returns its engine (hand it back for its return)."""
    engine = shell.app.store.engine
    shell.app.store.engine = create_engine(f"sqlite:///{tmp_path}/gone/dir/store.db")
    return engine


def bound_and_stored(shell: Shell) -> None:
    """Switch 1 connects, the client and the instance are located, the instance registers and
    a flow (source port 40000) is bound; all of it is stored."""
    shell.connect()
    shell.arp_from(CLIENT)
    shell.arp_from(INSTANCE)
    shell.register()
    shell.syn(40000)
    shell.app._flush()


def stored(shell: Shell) -> Any:
    """What the store holds now, read as a restarted controller would."""
    store = Store(shell.store_url)
    try:
        return store.load()
    finally:
        store.close()


def test_an_outage_answers_as_usual_loses_nothing_and_is_logged_once(
        shell: Shell, tmp_path: Path, records: Records) -> None:
    """Services, instances, metrics and new flows during the outage are answered as ever (no
    5xx); five failed flushes are one error line (one traceback), /readyz is 503 until a batch
    lands again; then every record is in the store and one line says the outage ended."""
    bound_and_stored(shell)
    assert shell.app.health(True)[0] == 200
    engine = down(shell, tmp_path)
    svc = {"name": "svc3", "dsid": "10.0.100.3", "protocol": "tcp", "port": 9000}
    assert shell.rest("POST", "services", svc).status == 201
    assert shell.rest("POST", "instances", {"dsid": "10.0.100.3", "dbid": "10.0.0.23",
                                            "dma": "smoke"}).status == 201
    report = {"dbid": INSTANCE[0], "cpu": 0.5, "sessions": 7, "queue": 0, "capacity": 10}
    assert shell.rest("POST", "metrics", report).status == 200
    shell.syn(40001)
    for _ in range(5):
        shell.app._flush()
    assert shell.app.core.counters["errors"] == 5
    assert shell.app.health(True) == (503, {"status": "not ready", "store": False})
    (failing,) = records.events("store_writes_failing")
    assert "unable to open database file" in failing["reason"]
    assert records.tracebacks() == 1
    shell.app.store.engine.dispose()
    shell.app.store.engine = engine  # the server is back
    assert shell.app.health(True)[0] == 503  # until a batch lands
    shell.app._flush()
    assert shell.app.health(True) == (200, {"status": "ready", "store": True})
    (landed,) = records.events("store_writes_landed")
    assert landed["failed_batches"] == 5
    assert records.events("store_writes_failing") == [failing]
    snap = stored(shell)
    assert {s.name for s in snap.services} == {"svc3"}
    by_dbid = {i.dbid: i for i in snap.instances}
    assert by_dbid.keys() == {INSTANCE[0], "10.0.0.23"}
    assert by_dbid[INSTANCE[0]].metrics.sessions == 7
    assert sorted(b.key.sport for b in snap.bindings) == [40000, 40001]


def test_the_stop_waits_for_a_store_briefly_away(shell: Shell, tmp_path: Path,
                                                 records: Records) -> None:
    """The stop's last flush retries a failing store (here it is back on the third try): the
    writes queued meanwhile are stored, and the stop does not raise."""
    shell.register()
    engine = down(shell, tmp_path)
    tries: list[int] = []
    apply = shell.app.store.apply

    def flaky(writes: list[StoreWrite]) -> int:
        tries.append(len(writes))
        if len(tries) == 3:
            shell.app.store.engine = engine
        return int(apply(writes))

    shell.app.store.apply = flaky
    shell.app.stop()
    assert len(tries) == 3
    assert [i.dbid for i in stored(shell).instances] == [INSTANCE[0]]
    assert records.events("store_writes_lost") == []


def _stop_with_the_store_away(shell: Shell, tmp_path: Path,
                              monkeypatch: pytest.MonkeyPatch) -> None:
    """An instance registers and a service is created, the store goes away and stays away
    past the stop's time (1 s here); the stop ends (it raised before, mid-stop)."""
    monkeypatch.setattr(storeflush, "STOP_FLUSH_S", 1.0)
    shell.register()
    assert shell.rest("POST", "services", {"name": "svc3", "dsid": "10.0.100.3",
                                           "protocol": "tcp", "port": 9000}).status == 201
    engine = down(shell, tmp_path)
    shell.app.stop()
    shell.app.store.engine.dispose()
    shell.app.store.engine = engine
    shell.app.store.close()  # (the process ends: its claim with it)


def test_the_stop_keeps_what_it_could_not_store_and_the_next_start_stores_it(
        shell: Shell, tmp_path: Path, records: Records, monkeypatch: pytest.MonkeyPatch) -> None:
    """A store still away when the stop's time is up: one warning says how many writes, of
    which kinds, could not be stored, why, and the file they are kept in (`unstored_path`,
    relative to the working directory). The next start stores them before reading the store,
    so the service created through the API meanwhile is there, and removes the file."""
    _stop_with_the_store_away(shell, tmp_path, monkeypatch)
    (kept,) = records.events("store_writes_kept")
    assert kept["kept"] == 2 and kept["kinds"] == {"instance": 1, "service": 1}
    assert "unable to open database file" in kept["reason"]
    assert records.events("store_writes_lost") == []
    spill = tmp_path / "dyncast-unstored.jsonl"
    assert kept["path"] == "dyncast-unstored.jsonl" and len(spill.read_text().splitlines()) == 2
    assert "svc3" not in {s.name for s in stored(shell).services}
    again = shell.module.DyncastApp(wsgi=FakeWSGI())  # the next start
    try:
        assert "svc3" in again.core.catalogue.services
        assert INSTANCE[0] in again.core.catalogue.instances
        assert "svc3" in {s.name for s in stored(shell).services}
        assert not spill.exists()
    finally:
        again.store.close()


def test_a_kept_file_that_cannot_be_read_stops_the_start_naming_it(
        shell: Shell, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A kept file someone edited: the start ends with one line naming
    `controller.unstored_path`, the file and the line; nothing is stored and the file stays."""
    _stop_with_the_store_away(shell, tmp_path, monkeypatch)
    spill = tmp_path / "dyncast-unstored.jsonl"
    lines = spill.read_text().splitlines()
    spill.write_text("\n".join([lines[0], '{"kind": "service", "key": "x"}', *lines[1:]]) + "\n")
    with pytest.raises(ConfigError, match=r"controller\.unstored_path: .*unstored\.jsonl line 2 "):
        shell.module.DyncastApp(wsgi=FakeWSGI())
    assert spill.exists() and "svc3" not in {s.name for s in stored(shell).services}


@pytest.mark.parametrize("setting", [{"unstored_path": ""},
                                     {"cluster": ClusterConfig(enabled=True, member_id="m1")}])
def test_with_no_file_to_keep_them_in_the_stop_says_what_is_lost(
        shell: Shell, tmp_path: Path, records: Records, monkeypatch: pytest.MonkeyPatch,
        setting: dict[str, Any]) -> None:
    """`unstored_path = ""`, or a cluster member (its store is shared: apps/storespill.py):
    one error line names how many writes, of which kinds, are lost and why; no file."""
    monkeypatch.setattr(shell.app, "config", dataclasses.replace(shell.app.config, **setting))
    _stop_with_the_store_away(shell, tmp_path, monkeypatch)
    (lost,) = records.events("store_writes_lost")
    assert lost["lost"] == 2 and lost["kinds"] == {"instance": 1, "service": 1}
    assert "unable to open database file" in lost["reason"]
    assert not (tmp_path / "dyncast-unstored.jsonl").exists()


def _killed(shell: Shell, engine: Any) -> None:
    """The controller is killed (SIGKILL: no stop, nothing flushed); the store comes back."""
    shell.app.store.engine.dispose()
    shell.app.store.engine = engine
    shell.app.store.close()  # (the process ends: its claim with it)


def _restarted(shell: Shell) -> Any:
    """The next start; returns its app (close its store)."""
    return shell.module.DyncastApp(wsgi=FakeWSGI())


def test_a_controller_killed_during_an_outage_keeps_what_failed_to_flush(
        shell: Shell, tmp_path: Path, records: Records) -> None:
    """Each failed flush keeps the queue in `unstored_path` as well (not again while the queue
    is the same): killed during the outage, the controller loses only what was queued after
    the last flush; the next start stores the file's writes. Before, it lost every write of
    the outage, the service created through the API among them."""
    shell.register()
    shell.app._flush()
    engine = down(shell, tmp_path)
    svc = {"name": "svc3", "dsid": "10.0.100.3", "protocol": "tcp", "port": 9000}
    assert shell.rest("POST", "services", svc).status == 201
    spill = tmp_path / "dyncast-unstored.jsonl"
    kept = storespill.keep
    calls: list[int] = []

    def counted(path: str, writes: list[StoreWrite], replace: bool = False) -> int:
        calls.append(len(writes))
        return kept(path, writes, replace)

    storespill.keep = counted  # type: ignore[assignment]
    try:
        shell.app._flush()
        shell.app._flush()  # the same queue: not written again
        assert shell.rest("PUT", "services/svc3", {**svc, "port": 9001}).status == 200
        shell.app._flush()  # as many writes, one of them newer: written again
        report = {"dbid": INSTANCE[0], "cpu": 0.5, "sessions": 7, "queue": 0, "capacity": 10}
        assert shell.rest("POST", "metrics", report).status == 200
        shell.app._flush()
    finally:
        storespill.keep = kept  # type: ignore[assignment]
    assert calls == [1, 1, 2]
    assert len(spill.read_text().splitlines()) == 2
    assert shell.rest("PUT", "services/svc3", {**svc, "port": 9002}).status == 200  # unflushed
    _killed(shell, engine)
    assert records.events("store_writes_unkept") == []
    again = _restarted(shell)
    try:
        assert again.core.catalogue.services["svc3"].port == 9001  # the last flush's
        assert again.core.catalogue.instances[INSTANCE[0]].metrics.sessions == 7
        assert not spill.exists()
    finally:
        again.store.close()


def test_the_kept_file_goes_when_the_store_is_back_so_nothing_newer_is_undone(
        shell: Shell, tmp_path: Path) -> None:
    """The outage ends: the batch that lands removes the file, so a controller killed later
    does not store the outage's writes again over newer ones; at a stop that stores
    everything the file goes too."""
    engine = down(shell, tmp_path)
    svc = {"name": "svc3", "dsid": "10.0.100.3", "protocol": "tcp", "port": 9000}
    assert shell.rest("POST", "services", svc).status == 201
    shell.app._flush()
    spill = tmp_path / "dyncast-unstored.jsonl"
    assert spill.exists()
    shell.app.store.engine.dispose()
    shell.app.store.engine = engine
    shell.app._flush()
    assert not spill.exists()
    assert shell.rest("PUT", "services/svc3", {**svc, "port": 9001}).status == 200
    shell.app._flush()
    engine = down(shell, tmp_path)
    shell.app._flush()  # nothing queued: no file
    assert not spill.exists()
    assert shell.rest("PUT", "services/svc3", {**svc, "port": 9002}).status == 200
    shell.app._flush()
    assert spill.exists()
    shell.app.store.engine.dispose()
    shell.app.store.engine = engine
    shell.app.stop()
    assert not spill.exists()
    assert {s.name: s.port for s in stored(shell).services} == {"svc3": 9002}


def test_a_file_that_cannot_be_written_during_an_outage_is_said_once(
        shell: Shell, tmp_path: Path, records: Records, monkeypatch: pytest.MonkeyPatch) -> None:
    """`unstored_path` in a directory that does not exist: the failed flushes go on as before
    and one warning names the file and why; nothing else changes."""
    missing = str(tmp_path / "no" / "such" / "kept.jsonl")
    monkeypatch.setattr(shell.app, "config",
                        dataclasses.replace(shell.app.config, unstored_path=missing))
    engine = down(shell, tmp_path)
    for port in (9000, 9001, 9002):
        svc = {"name": "svc3", "dsid": "10.0.100.3", "protocol": "tcp", "port": port}
        method, path = ("POST", "services") if port == 9000 else ("PUT", "services/svc3")
        assert shell.rest(method, path, svc).status in (200, 201)
        shell.app._flush()
    (unkept,) = records.events("store_writes_unkept")
    assert unkept["path"] == missing and "No such file" in unkept["reason"]
    shell.app.store.engine.dispose()
    shell.app.store.engine = engine
    shell.app._flush()
    assert {s.name: s.port for s in stored(shell).services} == {"svc3": 9002}


def test_the_stop_lets_the_batch_under_way_land_before_the_newer_writes(
        shell: Shell) -> None:
    """A batch a worker thread is applying when the stop comes (the flusher waits on it) lands
    before the writes queued after it: killed at once, the flusher's older record landed
    after the stop's newer one and replaced it."""
    shell.register()
    shell.app.core.drain_writes()  # the registration: stored, say
    older = StoreWrite("service", "svc9", {"name": "svc9", "dsid": "10.0.100.9",
                                           "state": "older"})
    newer = StoreWrite("service", "svc9", {"name": "svc9", "dsid": "10.0.100.9",
                                           "state": "newer"})
    from eventlet import patcher, tpool  # (imported by the shell: no deprecation warning)

    real_sleep = patcher.original("time").sleep
    hub = shell.fw.hub
    store = shell.app.store

    def slow(writes: list[StoreWrite]) -> int:
        real_sleep(0.3)  # in the worker OS thread: a slow database
        return int(store.apply(writes))

    def flusher() -> None:
        shell.app.flushing = (older,)
        try:
            tpool.execute(slow, [older])
        finally:
            shell.app.flushing = ()
        hub.sleep(60)

    shell.app._workers = [hub.spawn(flusher)]
    hub.sleep(0.05)  # the batch is under way
    shell.app.core.writes._last(newer)
    shell.app.stop()
    real_sleep(0.5)  # a worker thread still applying has finished by now
    with store.engine.connect() as conn:
        data = conn.exec_driver_sql("SELECT data FROM services WHERE name = 'svc9'").scalar()
    assert '"newer"' in str(data)


def test_a_postgresql_server_that_never_answers_fails_the_start_in_bounded_time(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A server whose port takes connections but never speaks (a hung host; a dropping
    firewall is the same wait): the store gives up after its connect timeout and the start
    says so in its one line. Before, the connection waited for as long as the kernel kept it
    (here: forever), and with it the start, a flush or /readyz."""
    monkeypatch.setattr(store_module, "CONNECT_TIMEOUT_S", 2)  # (libpq's least)
    done: dict[str, str] = {}
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)  # the kernel completes the handshakes; nobody answers
        url = f"postgresql+psycopg://u:secret@127.0.0.1:{server.getsockname()[1]}/db"

        def start() -> None:
            try:
                open_store(url, "dyncast.toml")
            except ConfigError as exc:
                done["error"] = str(exc)

        thread = threading.Thread(target=start, daemon=True)
        thread.start()
        thread.join(20)
        assert not thread.is_alive(), "the start still waits for the server"
    assert "controller.store_url" in done["error"] and "timeout" in done["error"], done


def test_flows_that_begin_and_end_during_an_outage_leave_nothing_queued(
        shell: Shell, tmp_path: Path) -> None:
    """Ten flows bound and ended while the store is down queue nothing once a flush has failed
    (the store never had them); the one bound before the outage keeps its delete, and after
    the outage the store holds no binding. Before, every ended flow's delete stayed queued
    for as long as the outage lasted (228 bytes each: unbounded)."""
    bound_and_stored(shell)
    assert [b.key.sport for b in stored(shell).bindings] == [40000]
    engine = down(shell, tmp_path)
    for sport in range(40001, 40011):
        shell.syn(sport)
    shell.app._flush()  # fails: the new bindings' rows are queued again
    core = shell.app.core
    for b in list(core.flows.bindings.all()):
        core.flow_removed(1, cookie(CookieKind.AFFINITY_FWD, b.ident), "idle", time.time())
    assert len(core.bindings) == 0
    shell.app._flush()  # fails: only the delete of the stored binding is worth keeping
    queued = [w for w in core.writes.drain() if w.kind == "binding"]
    core.writes.requeue(queued)
    (kept,) = queued
    assert kept.value is None and kept.key == str(stored(shell).bindings[0].ident)
    shell.app.store.engine.dispose()
    shell.app.store.engine = engine
    shell.app._flush()
    assert stored(shell).bindings == []


def test_deletes_of_bindings_from_before_the_start_or_stored_are_kept() -> None:
    """The filter drops only deletes of bindings this process numbered and never stored; in a
    cluster (another member may have stored one) it drops nothing."""
    delete = [StoreWrite("binding", str(k), None) for k in (5, 100, 101)]
    unstored = storeflush.Unstored(born=100, enabled=True)
    unstored.landed([StoreWrite("binding", "101", {"id": 101})])
    assert unstored.needed(delete) == [delete[0], delete[2]]
    unstored.landed([delete[2]])
    assert unstored.needed(delete) == [delete[0]]
    assert storeflush.Unstored(born=100, enabled=False).needed(delete) == delete
