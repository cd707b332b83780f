"""Persistence with sqlalchemy: services, instances (with their latest metrics), bindings, and
each agent's last accepted request sequence (so a replay is refused across restarts).

The core never calls this module; it queues `StoreWrite`s and the shell applies them in
batches, in one short transaction, off the packet-in path. Writes to the same record within a
batch collapse to the last one. Two backends are tested: SQLite (the default, a file) and
PostgreSQL (`postgresql+psycopg://user:password@host/db`). The tables below are the live
schema; `apps.migrations` (alembic) creates and upgrades them, at every `Store()`.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from json.encoder import encode_basestring_ascii as _quote
from typing import Any, Literal, Protocol

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    delete,
    select,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import SQLAlchemyError

from apps import migrations
from apps.storeclaim import Claim
from apps.storerecords import StoreError, agent_seq, binding, instance, read
from controller.dataplane.affinity import Binding
from controller.errors import ConfigError
from controller.intents import StoreWrite
from controller.model import Instance, Service, service_from_dict

metadata = MetaData()  # a change here needs a revision in apps/migrations/versions
services_table = Table(
    "services", metadata,
    Column("name", String(64), primary_key=True),
    Column("dsid", String(15), nullable=False),
    Column("data", Text, nullable=False),
)
instances_table = Table(
    "instances", metadata,
    Column("dbid", String(15), primary_key=True),
    Column("service", String(64), nullable=False),
    Column("metrics_at", Float, nullable=True),
    Column("data", Text, nullable=False),
)
bindings_table = Table(
    "bindings", metadata,
    Column("id", String(20), primary_key=True),
    Column("service", String(64), nullable=False),
    Column("dbid", String(15), nullable=False),
    Column("data", Text, nullable=False),
)
cluster_members_table = Table(  # the cluster's leases (apps/cluster.py), not core records
    "cluster_members", metadata,
    Column("member_id", String(64), primary_key=True),
    Column("address", String(200), nullable=False),
    Column("beat_at", Float, nullable=False),
    Column("lease_until", Float, nullable=False),
    Column("epoch", BigInteger, nullable=False),
    Column("settings", String(64), nullable=True),  # the shared settings' digest (0005)
)
cluster_changes_table = Table(  # changes too large to notify (apps/changefeed.py)
    "cluster_changes", metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
           autoincrement=True),
    Column("member_id", String(64), nullable=False),
    Column("at", Float, nullable=False),
    Column("data", Text, nullable=False),
)
agent_seqs_table = Table(  # controller/auth/verifier.py: a sequence only rises
    "agent_sequences", metadata,
    Column("agent", String(64), primary_key=True),
    Column("data", Text, nullable=False),
)
secrets_table = Table(  # shared secrets (`Store.secret`, migration 0006), not core records
    "controller_secrets", metadata,
    Column("name", String(64), primary_key=True),
    Column("value", String(128), nullable=False),
)
dsid_claims_table = Table(  # a cluster's D-SID claims (apps/dsidclaims.py, migration 0007)
    "cluster_dsid_claims", metadata,
    Column("dsid", String(15), primary_key=True),
    Column("service", String(64), nullable=False),
    Column("member_id", String(64), nullable=False),
    Column("at", Float, nullable=False),
)
TABLES = {"service": services_table, "instance": instances_table, "binding": bindings_table,
          "agent_seq": agent_seqs_table}
KEYS = {"service": "name", "instance": "dbid", "binding": "id", "agent_seq": "agent"}
CHUNK = 500  # keys per DELETE ... IN (...)
CONNECT_TIMEOUT_S = 10  # PostgreSQL: a connection not made in this long fails (libpq's
# connect_timeout; `?connect_timeout=N` in store_url sets another). Without it a server that
# stopped answering (a host gone, a firewall dropping packets) held a flush, /readyz, or the
# start, for as long as the kernel retried: minutes
# INSERT ... ON CONFLICT DO UPDATE, per database
LOG = logging.getLogger("dyncast")
UPSERTS: dict[str, Callable[[Table], Any]] = {"postgresql": pg_insert, "sqlite": sqlite_insert}


class Fence(Protocol):
    """A cluster member's fence (apps/fencing.py): which single-writer records a batch may
    write, checked in its transaction; and the lock a takeover's read takes."""

    def check(self, conn: Any, last: dict[tuple[str, str], StoreWrite],
              token: int | Literal["current"] | None) -> set[tuple[str, str]]: ...

    def lock_others(self, conn: Any) -> None: ...


@dataclass
class Snapshot:
    """What the store held at start."""

    services: list[Service] = field(default_factory=list)
    instances: list[Instance] = field(default_factory=list)
    bindings: list[Binding] = field(default_factory=list)
    agent_seqs: dict[str, int] = field(default_factory=dict)
    agent_keys: dict[str, str] = field(default_factory=dict)  # the key_id each was taken under


def _row(kind: str, key: str, value: dict[str, Any]) -> dict[str, Any]:
    """The column values for one record."""
    data = _binding_json(value) if kind == "binding" else None
    row: dict[str, Any] = {KEYS[kind]: key,
                           "data": data or json.dumps(value, sort_keys=True)}
    if kind == "service":
        row["dsid"] = value["dsid"]
    elif kind == "instance":
        row["service"] = value["service"]
        row["metrics_at"] = value.get("metrics_at")
    elif kind == "binding":
        row["service"] = value["service"]
        row["dbid"] = value["dbid"]
    return row


def _binding_json(v: dict[str, Any]) -> str | None:
    """A binding record (one per new flow: the most frequent write) as `json.dumps(v,
    sort_keys=True)` gives it, written out directly at about a third of the cost; None when
    the record is not the usual one (integer ports and identifiers, a finite float time: the
    caller then uses json.dumps)."""
    try:
        f = v["flow"]
        if len(v) != 6 or len(f) != 5:
            return None
        ident, ingress, at = v["id"], v["ingress"], v["created_at"]
        proto, sport, dport = f["proto"], f["sport"], f["dport"]
        if (type(ident) is int and type(ingress) is int and type(at) is float
                and at - at == 0.0 and type(proto) is int and type(sport) is int
                and type(dport) is int):
            return (f'{{"created_at": {at!r}, "dbid": {_quote(v["dbid"])}, "flow": {{"dport": '
                    f'{dport}, "dsid": {_quote(f["dsid"])}, "proto": {proto}, "sport": '
                    f'{sport}, "src": {_quote(f["src"])}}}, "id": {ident}, "ingress": '
                    f'{ingress}, "service": {_quote(v["service"])}}}')
        return None  # (an integer time, a null): json.dumps writes it
    except (KeyError, TypeError):  # a field missing, not a str or not a number
        return None


def open_store(url: str, source: str, shared: bool = False) -> Store:
    """The store at `url` for the configuration file `source`, claimed for this controller
    (`shared`: a cluster member's claim, which other members share); a ConfigError naming
    `controller.store_url` and why (the start then ends with that one line, not a traceback)
    when it cannot be reached, its driver is missing, it is not a store, or another
    controller's claim excludes ours."""
    shown = make_url(url).render_as_string(hide_password=True)
    try:
        store = Store(url)
        taken = store.claim(shared)
        store.lldp_key = store.secret("lldp") if taken else b""
    except (SQLAlchemyError, ImportError, OSError, migrations.MigrationError) as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ConfigError(source, "controller.store_url", f"cannot open {shown}: "
                          f"{reason[:300]}") from None
    if not taken:
        store.close()
        other = "a controller not in a [cluster]" if shared else "another controller"
        raise ConfigError(source, "controller.store_url", f"{shown} is in use by {other}: a "
                          "controller not in a [cluster] must have its store to itself (each "
                          "would overwrite the other's records); give each its own store_url, "
                          "or run them as a [cluster]")
    return store


class Store:
    """A sqlalchemy database holding the controller's records."""

    def __init__(self, url: str) -> None:
        """Connect and bring the schema to the newest revision (a no-op when it is there)."""
        sqlite = url.startswith("sqlite")
        args: dict[str, Any] = {"check_same_thread": False} if sqlite else {}
        if url.startswith("postgresql") and "connect_timeout" not in make_url(url).query:
            args["connect_timeout"] = CONNECT_TIMEOUT_S  # a server that never answers
        # pre_ping: a server that restarted costs one retried query, not a failed batch
        self.engine: Engine = create_engine(url, connect_args=args, pool_pre_ping=not sqlite)
        try:
            migrations.upgrade(self.engine)
        except BaseException:
            self.engine.dispose()
            raise
        self.fence: Fence | None = None  # a cluster member's (apps/cluster.py); else none
        self.lldp_key = b""  # the store's LLDP key (`secret`), read by `open_store`
        self._claim = Claim()  # our claim on the store (`claim`), while we hold it
        self._named: set[tuple[str, str]] = set()  # records read again and skipped, logged

    def claim(self, shared: bool) -> bool:
        """Claim the store for this controller, for as long as it runs (apps/storeclaim.py);
        False when another controller's claim excludes it."""
        return self._claim.take(self.engine, shared)

    def secret(self, name: str) -> bytes:
        """The store's secret `name` (32 random bytes), made by the first process that asks
        and read by every one after (a cluster's members alike)."""
        upsert = UPSERTS.get(self.engine.dialect.name)
        if upsert is None:
            raise ConfigError("(store)", "controller.store_url", f"{self.engine.dialect.name}"
                              ": neither PostgreSQL nor SQLite")
        with self.engine.begin() as conn:
            conn.execute(upsert(secrets_table).values(name=name, value=secrets.token_hex(32))
                         .on_conflict_do_nothing(index_elements=["name"]))
            value = conn.execute(select(secrets_table.c.value)
                                 .where(secrets_table.c.name == name)).scalar_one()
        return bytes.fromhex(value)

    def apply(self, writes: list[StoreWrite],
              token: int | Literal["current"] | None = "current") -> int:
        """Apply a batch of writes in one transaction; return how many records it touched. A
        cluster member's fence first drops (in the same transaction) the single-writer
        records it may no longer write (controller/cluster/fencing.py), judged under the lease
        epoch `token` the batch was drained under ("current": the one held at the check)."""
        last: dict[tuple[str, str], StoreWrite] = {}
        for w in writes:
            last[(w.kind, w.key)] = w
        if not last:
            return 0
        self._claim.hold(self.engine)
        with self.engine.begin() as conn:
            if self.fence is not None:
                for refused in self.fence.check(conn, last, token):
                    del last[refused]
            self._write(conn, last)
        return len(last)

    def _write(self, conn: Any, last: dict[tuple[str, str], StoreWrite]) -> None:
        """Per kind: one DELETE per chunk of keys, one many-row INSERT. Where the INSERT is an
        upsert (PostgreSQL, SQLite: a record written replaces the row it finds) only the
        records deleted need the DELETE; elsewhere every record written does too. The writes
        are sorted by kind in one pass (a batch is mostly bindings: one per new flow)."""
        upserts = self.engine.dialect.name in UPSERTS
        by_kind: dict[str, list[StoreWrite]] = {kind: [] for kind in TABLES}
        for w in last.values():
            group = by_kind.get(w.kind)
            if group is not None:  # (no table: nothing to write, as before)
                group.append(w)
        for kind, table in TABLES.items():
            writes = by_kind[kind]
            if not writes:
                continue
            keys = [w.key for w in writes if w.value is None or not upserts]
            for i in range(0, len(keys), CHUNK):
                conn.execute(delete(table).where(table.c[KEYS[kind]].in_(keys[i:i + CHUNK])))
            if kind == "binding" and upserts:  # one per new flow: straight to the driver
                self._upsert_bindings(conn, [(w.key, w.value) for w in writes
                                             if w.value is not None])
                continue
            rows = [_row(kind, w.key, w.value) for w in writes if w.value is not None]
            if rows:
                conn.execute(self._insert(table, KEYS[kind]), rows)

    def _upsert_bindings(self, conn: Any, records: list[tuple[str, dict[str, Any]]]) -> None:
        """The binding records of a batch as one executemany of the driver, with the upsert
        `_insert` makes (the same rows: tests/test_store.py), without sqlalchemy's work per row
        (a third of the cost of a binding written)."""
        if not records:
            return
        mark = "?" if self.engine.dialect.paramstyle == "qmark" else "%s"
        conn.exec_driver_sql(
            f"INSERT INTO bindings (id, service, dbid, data) VALUES ({mark}, {mark}, {mark}, "
            f"{mark}) ON CONFLICT (id) DO UPDATE SET service = excluded.service, "
            "dbid = excluded.dbid, data = excluded.data",
            [(key, v["service"], v["dbid"], _binding_json(v) or json.dumps(v, sort_keys=True))
             for key, v in records])

    def _insert(self, table: Table, key: str) -> Any:
        """The INSERT of a batch: an upsert where the database has one. Cluster members write
        the same records (each applies the changes the others accepted), so on PostgreSQL a
        member's INSERT must not fail on the row another wrote."""
        insert = UPSERTS.get(self.engine.dialect.name)
        if insert is None:
            return table.insert()
        stmt = insert(table)
        return stmt.on_conflict_do_update(
            index_elements=[table.c[key]],
            set_={c.name: stmt.excluded[c.name] for c in table.columns if c.name != key})

    def load(self) -> Snapshot:
        """Read every record back into core values; a StoreError naming the table and key
        of a record that cannot be read (made by hand, or by another program)."""
        snap = Snapshot()
        with self.engine.connect() as conn:
            snap.services = read(conn, services_table, "name",
                                  lambda d: service_from_dict(d, strict=False))
            snap.instances = read(conn, instances_table, "dbid", instance)
            snap.bindings = read(conn, bindings_table, "id", binding)
            for agent, seq, key in read(conn, agent_seqs_table, "agent", agent_seq):
                snap.agent_seqs[agent] = seq
                if key is not None:  # (none from an earlier version)
                    snap.agent_keys[agent] = key
        return snap

    def load_shared(self) -> tuple[list[Service], list[Instance], set[tuple[str, str]],
                                   list[tuple[str, int, str | None]]]:
        """The services and instances (the records cluster members share), read again, and the
        (kind, key) of those that cannot be read: skipped (`_unreadable` names them), not
        gone (a catch-up must not delete what it could not read); and the agents' stored
        sequences (agent, sequence, key id)."""
        bad: list[tuple[str, str, str]] = []
        with self.engine.connect() as conn:
            services = read(conn, services_table, "name",
                            lambda d: service_from_dict(d, strict=False), bad)
            instances = read(conn, instances_table, "dbid", instance, bad)
            seqs = read(conn, agent_seqs_table, "agent", agent_seq, bad)
        self._unreadable(bad)
        kinds = {t.name: kind for kind, t in TABLES.items()}
        return services, instances, {(kinds[table], key) for table, key, _ in bad}, seqs

    def bindings_at(self, ingress: int) -> list[Binding]:
        """The stored bindings of one ingress switch (a cluster member taking it over reads
        what its previous master stored); a member's fence makes it wait first for the batches
        the others are writing (apps/fencing.py). One that cannot be read is skipped (named
        by `_unreadable`): its entries are adopted from the switch's table instead."""
        bad: list[tuple[str, str, str]] = []
        with self.engine.begin() as conn:
            if self.fence is not None:
                self.fence.lock_others(conn)
            found = read(conn, bindings_table, "id", lambda d: binding(d) if d.get(
                "ingress") == ingress else None, bad)
        self._unreadable(bad)
        return [b for b in found if b is not None]

    def _unreadable(self, bad: list[tuple[str, str, str]]) -> None:
        """Name each record read again and skipped, once per record and process (a catch-up
        reads every record: not a line each time)."""
        for table, key, why in bad:
            if (table, key) not in self._named:
                self._named.add((table, key))
                LOG.error("dyncast: store: the %s record %r cannot be read (%s); skipped, the "
                          "rest read: fix or delete that row", table, key, why)

    def close(self) -> None:
        """Release our claim and the database connections."""
        self._claim.release()
        self.engine.dispose()


def load_store(store: Store, source: str) -> Snapshot:
    """`store.load()` for a start: a record that cannot be read is a ConfigError naming
    `controller.store_url`, the table and the key (one line, exit 1), not a traceback."""
    try:
        return store.load()
    except StoreError as exc:
        raise ConfigError(source, "controller.store_url", str(exc)) from None
