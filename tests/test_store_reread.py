"""A running controller and its store: a member reads the shared records again (a cluster's
catch-up, a takeover's bindings), where a record it cannot read is skipped and named in the
log once and the rest are read (before, one such row made every catch-up fail: the member then
never applied the others' changes again, logging that listening had failed; and a takeover
read no binding at all; a start still refuses such a store: tests/test_store.py); and the
claim on a PostgreSQL store, which a server restart drops, is taken again before the next
batch."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import insert

from apps import storeclaim
from apps.store import Store, bindings_table, instances_table, services_table
from apps.store import open_store as open_store_claimed
from apps.storerecords import StoreError
from controller.dataplane.affinity import Binding, FlowKey
from controller.errors import ConfigError
from controller.intents import StoreWrite
from controller.model import Instance
from tests.helpers import SVC1
from tests.pgschema import fresh_schema
from tests.test_store import open_store as open_store  # the fixtures, used by name
from tests.test_store import store_url as store_url


def _binding(ident: int, ingress: int) -> StoreWrite:
    b = Binding(ident, FlowKey("svc1", "10.0.0.1", SVC1.dsid, 6, 40000 + ident, 8000),
                "10.0.0.21", ingress, 1.0)
    return StoreWrite("binding", str(ident), b.to_dict())


@pytest.fixture
def damaged(open_store: Callable[[], Store]) -> Iterator[Store]:
    """A store with svc1, two instances, three bindings (two at switch 1), and one unreadable
    record in each table: JSON that is not an object, a record missing a field, bad JSON."""
    store = open_store()
    store.apply([StoreWrite("service", "svc1", SVC1.to_dict()),
                 *(StoreWrite("instance", d, Instance("svc1", d, "dma").to_dict())
                   for d in ("10.0.0.21", "10.0.0.31")),
                 _binding(1, 1), _binding(2, 1), _binding(3, 2)])
    with store.engine.begin() as conn:
        conn.execute(insert(services_table), {"name": "bad", "dsid": "10.9.9.9", "data": "[1]"})
        conn.execute(insert(instances_table), {"dbid": "10.0.0.99", "service": "svc1",
                                               "metrics_at": None,
                                               "data": json.dumps({"dbid": "10.0.0.99"})})
        conn.execute(insert(bindings_table), {"id": "9", "service": "svc1",
                                              "dbid": "10.0.0.21", "data": "{not json"})
    yield store


def test_shared_records_are_read_past_one_that_cannot_be(damaged: Store,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    """The catch-up's read gets svc1 and both instances, and the keys of the two it cannot
    read (so that it deletes neither); the log names them, once however often they are read
    again."""
    with caplog.at_level(logging.ERROR, logger="dyncast"):
        for _ in range(3):
            services, instances, unreadable, _ = damaged.load_shared()
            assert [s.name for s in services] == ["svc1"]
            assert sorted(i.dbid for i in instances) == ["10.0.0.21", "10.0.0.31"]
            assert unreadable == {("service", "bad"), ("instance", "10.0.0.99")}
    named = [r.getMessage() for r in caplog.records]
    assert len(named) == 2, named
    assert any("services record 'bad'" in m for m in named)
    assert any("instances record '10.0.0.99'" in m and "KeyError" in m for m in named)


def test_a_takeover_reads_the_readable_bindings_of_its_switch(
        damaged: Store, caplog: pytest.LogCaptureFixture) -> None:
    """Switch 1's two bindings come back; the unreadable one is named; switch 2's is not
    switch 1's."""
    with caplog.at_level(logging.ERROR, logger="dyncast"):
        assert sorted(b.ident for b in damaged.bindings_at(1)) == [1, 2]
        assert [b.ident for b in damaged.bindings_at(2)] == [3]
    assert [m for r in caplog.records if "bindings record '9'" in (m := r.getMessage())]


def test_a_start_still_refuses_the_store(damaged: Store) -> None:
    """`load` (a start) names the first unreadable record and reads nothing."""
    with pytest.raises(StoreError, match="cannot be read"):
        damaged.load()


# --- the claim, after the server dropped it (apps/storeclaim.py) --------------------------
def _end_claim_session(store: Store) -> None:
    """The claim's session ends as at a server restart (pg_terminate_backend)."""
    from sqlalchemy import text

    held = store._claim.held
    assert held is not None and not isinstance(held, io.TextIOBase)
    pid = held.connection.dbapi_connection.info.backend_pid  # type: ignore[union-attr]
    other = Store(str(store.engine.url.render_as_string(hide_password=False)))
    try:
        with other.engine.begin() as conn:
            conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})
    finally:
        other.close()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL schema (a session lock: a SQLite flock ends only with its process)."""
    with fresh_schema() as url:
        yield url


def test_a_claim_the_server_dropped_is_taken_again_before_the_next_batch(
        pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The claim's session ends: the next batch takes the claim again and lands, and a second
    lone controller is then refused as at the start (before, the store stayed unclaimed)."""
    monkeypatch.setattr(storeclaim, "CLAIM_CHECK_S", 0.0)
    first = open_store_claimed(pg_url, "dyncast.toml")
    try:
        _end_claim_session(first)
        assert first.apply([StoreWrite("service", "svc1", SVC1.to_dict())]) == 1
        with pytest.raises(ConfigError, match="in use by another controller"):
            open_store_claimed(pg_url, "dyncast.toml")
    finally:
        first.close()


def test_a_claim_another_controller_took_meanwhile_keeps_our_writes_out(
        pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The claim's session ends and another lone controller starts on the store: our next
    batch fails (a StoreError saying so; the flusher keeps the writes) and writes nothing;
    once the other has gone, the claim is ours again and the batch lands."""
    monkeypatch.setattr(storeclaim, "CLAIM_CHECK_S", 0.0)
    first = open_store_claimed(pg_url, "dyncast.toml")
    try:
        _end_claim_session(first)
        second = open_store_claimed(pg_url, "dyncast.toml")
        batch = [StoreWrite("service", "svc1", SVC1.to_dict())]
        with pytest.raises(StoreError, match="claimed by another controller"):
            first.apply(batch)
        assert second.load().services == []
        second.close()
        assert first.apply(batch) == 1
    finally:
        first.close()
