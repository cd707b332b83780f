"""Shared state across cluster members: PostgreSQL LISTEN/NOTIFY carries each accepted change
(`controller/cluster/changes.py`) to every other member, which applies it through its own API.

Boundary: shell. `ChangeFeed` does the database work (blocking: the app calls it through
`tpool`, in worker OS threads): a dedicated psycopg connection that LISTENs, an engine that
NOTIFYs. `SharedSide` is a mixin of `apps.dyncast_app.DyncastApp`: `share` queues a change the
REST side accepted, a green thread publishes the queue (one transaction a batch), another
waits for the others' changes and applies each on the event loop (`RestSide._serve`). With
`[cluster]` absent or disabled none of it runs.

The channel is named after the store's schema, so clusters (or tests) sharing one server but
not one schema do not hear each other. A member whose listening connection broke misses the
changes notified meanwhile: when it listens again it applies the others' writes to services and
instances it has not heard, from the log of changes (`cluster_changes`, kept an hour; each in
its order, judged by its stamp), then reads the store's services and instances and applies
what still differs (controller/cluster/catchup.py); see docs/cluster.md.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import psycopg
from eventlet import tpool
from psycopg import sql
from sqlalchemy import create_engine, delete, insert, select, text
from sqlalchemy.engine import Engine, make_url

from apps import logs
from apps.framework import hub
from apps.store import cluster_changes_table as changes_table
from controller.api import Reply
from controller.auth.verifier import Signed
from controller.cluster.catchup import catch_up
from controller.cluster.changes import (
    Change,
    Ref,
    decode,
    encode,
    encode_ref,
    fits,
    ident_of,
    shared,
)
from controller.cluster.order import Order
from controller.cluster.records import record_of

LOG = logging.getLogger("dyncast")
WAIT_S = 0.5  # a wait for notifications returns at least this often (to notice a stop)
KEEP_S = 3600.0  # logged changes (and large ones) older than this are pruned
MARGIN_S = 5.0  # a catch-up reads the log from this long before the last wait that returned
HEARD_MAX = 100_000  # logged changes remembered as heard (their row ids)
CLOCK_S = 0.25  # a wait reads the database's clock at most this often
RETRY_S = 1.0  # after the listening connection failed
APPLY_SLICE = 100  # others' changes applied a step (each is one API call on the event loop)
OUTBOX_MAX = 10_000  # changes waiting to be published while the database is away


def logged(change: Change) -> bool:
    """True for a write to a shared record (a service, an instance's registration or state):
    logged as well as notified, so that a member that missed its notification applies it
    when it listens again (`ChangeFeed.missed`); a metric report is caught up from the
    store instead."""
    return record_of(change.method, change.path, change.body) is not None


def _db_now(conn: psycopg.Connection[Any]) -> float:
    """The database's clock, read on `conn`."""
    row = conn.execute("SELECT extract(epoch FROM clock_timestamp())").fetchone()
    assert row is not None
    return float(row[0])


class ChangeFeed:
    """Publish this member's changes; receive the others'."""

    def __init__(self, url: str, member_id: str) -> None:
        self.member_id = member_id
        self.engine: Engine = create_engine(url, pool_size=1, max_overflow=1,
                                            pool_pre_ping=True)
        self.dsn = make_url(url).set(drivername="postgresql").render_as_string(
            hide_password=False)
        self.listener: psycopg.Connection[Any] | None = None
        self.channel = ""
        self.heard_at: float | None = None  # the database's time at the last wait that
        # returned: every change logged before it (less MARGIN_S) has been heard
        self.heard: deque[int] = deque(maxlen=HEARD_MAX)  # logged changes heard, by row id
        self._heard: set[int] = set()
        self._clocked = float("-inf")  # (monotonic) when `heard_at` was last read

    def listen(self) -> None:
        """Open the listening connection (autocommit) and LISTEN on the schema's channel (a
        connection open before is closed)."""
        self.close_listener()
        conn = psycopg.connect(self.dsn, autocommit=True, connect_timeout=2)
        row = conn.execute("SELECT current_schema()").fetchone()
        self.channel = f"dyncast_changes_{row[0] if row else 'public'}"[:63]
        conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
        self.listener = conn
        if self.heard_at is None:  # the first: the store is read after it (the start)
            self.heard_at = _db_now(conn)

    def publish(self, changes: list[Change]) -> None:
        """Notify every member of `changes`, in order, in one transaction (a notification is
        delivered at commit); a change too large for a payload is stored and named."""
        if not self.channel:
            self.listen()
        with self.engine.begin() as conn:
            now = float(conn.execute(text("SELECT extract(epoch FROM clock_timestamp())"))
                        .scalar_one())
            stored = False
            for change in changes:
                payload = encode(change)
                if logged(change) or not fits(payload):  # (a record's write: `missed`)
                    row = int(conn.execute(insert(changes_table).values(
                        member_id=change.member, at=now, data=payload)
                        .returning(changes_table.c.id)).scalar_one())
                    payload, stored = encode(change, row), True
                    if not fits(payload):
                        payload = encode_ref(Ref(change.member, row))
                conn.execute(text("SELECT pg_notify(:c, :p)"),
                             {"c": self.channel, "p": payload})
            if stored:
                conn.execute(delete(changes_table).where(changes_table.c.at < now - KEEP_S))

    def wait(self, timeout: float) -> list[Change]:
        """The others' changes notified since the last call, waiting up to `timeout` for the
        first; raises if the connection failed (the next call opens a new one)."""
        if self.listener is None:
            self.listen()
        assert self.listener is not None
        try:
            clock = time.monotonic()  # the database's time, read at most every CLOCK_S
            now = _db_now(self.listener) if clock - self._clocked >= CLOCK_S else None
            got = [n.payload for n in self.listener.notifies(timeout=timeout, stop_after=1)]
            if got:
                got += [n.payload for n in self.listener.notifies(timeout=0.0)]
        except Exception:
            self.close_listener()
            raise
        if now is not None:  # (an older one: the catch-up reads a little more of the log)
            self.heard_at, self._clocked = now, clock
        out: list[Change] = []
        for payload in got:
            ident = ident_of(payload)
            if ident is not None and ident in self._heard:
                continue  # applied already, from the log (`missed`)
            self._hear(ident)
            item = decode(payload)
            if item is None:
                LOG.warning("dyncast: cluster: an unreadable change notification: %.200s",
                            payload)
            elif item.member == self.member_id:
                continue  # our own
            elif isinstance(item, Ref):
                out += self._load(item)
            else:
                out.append(item)
        return out

    def _load(self, ref: Ref) -> list[Change]:
        """A stored change (none if it was pruned or is unreadable)."""
        with self.engine.connect() as conn:
            data = conn.execute(select(changes_table.c.data).where(
                changes_table.c.id == ref.id)).scalar_one_or_none()
        item = decode(data) if data is not None else None
        if not isinstance(item, Change):
            LOG.warning("dyncast: cluster: stored change %d of %s is gone", ref.id, ref.member)
            return []
        return [item]

    def missed(self) -> list[Change]:
        """The others' logged changes (writes to services and instances) this member has not
        heard, logged since its last wait that returned (less MARGIN_S: notifications on
        their way then), in the order they were logged; none before it first listened (the
        store it read at its start holds them). Called when it listens again after a break,
        before the store is read (docs/cluster.md: catching up)."""
        if self.heard_at is None:
            return []
        with self.engine.connect() as conn:
            rows = conn.execute(select(changes_table.c.id, changes_table.c.data).where(
                changes_table.c.at >= self.heard_at - MARGIN_S,
                changes_table.c.member_id != self.member_id).order_by(changes_table.c.id)).all()
        out = []
        for ident, data in rows:
            item = decode(data)
            if int(ident) not in self._heard and isinstance(item, Change):
                out.append(item)
            self._hear(int(ident))
        return out

    def _hear(self, ident: int | None) -> None:
        """Note a logged change as heard (the last HEARD_MAX are remembered)."""
        if ident is None or ident in self._heard:
            return
        if len(self.heard) == self.heard.maxlen:
            self._heard.discard(self.heard[0])
        self.heard.append(ident)
        self._heard.add(ident)

    def close_listener(self) -> None:
        """Close the listening connection (quietly)."""
        conn, self.listener = self.listener, None
        if conn is not None:
            with contextlib.suppress(Exception):  # it may be broken already
                conn.close()

    def close(self) -> None:
        """Release the connections."""
        self.close_listener()
        self.engine.dispose()


class SharedSide:
    """The cluster's shared state in the app; the app provides `_serve` (apps/restside.py)
    and `core`."""

    core: Any
    feed: ChangeFeed | None
    _outbox: deque[Change]
    _outbox_ready: Any
    _serve: Callable[..., Reply]  # apps.restside.RestSide
    store: Any  # apps.store.Store
    flushing: tuple[Any, ...]  # apps.apploops.Loops: the store writes being applied now
    _caught_up: bool | None  # None: listening since the start; False: must catch up
    guard: Any = None  # apps.security.Guard, once installed: the agents' sequences

    def _feed_init(self, enabled: bool, member_id: str, store_url: str) -> None:
        """Make the feed and start listening (before the store is read: a change accepted
        meanwhile elsewhere is applied after it, not lost)."""
        self.feed, self._outbox, self._outbox_ready = None, deque(), hub.Event()
        self._caught_up = None
        self.order = Order(member_id, self.core.catalogue, self.core.counters)  # records'
        # stamps: which write to each shared record stands here
        if not enabled:
            return
        self.feed = ChangeFeed(store_url, member_id)
        try:
            self.feed.listen()
        except Exception as exc:  # the follower thread tries again, then catches up
            self._caught_up = False
            LOG.error("dyncast: cluster: cannot listen for changes yet: %s", exc)

    def _feed_threads(self) -> list[Any]:
        """The green threads to start (none without a cluster)."""
        if self.feed is None:
            return []
        return [hub.spawn(self._publisher), hub.spawn(self._follower)]

    def doomed(self, method: str, path: str) -> list[str]:
        """The instances a write is about to withdraw with it, for `share`."""
        return [] if self.feed is None else self.order.doomed(method, path)

    def share(self, method: str, path: str, body: bytes, reply: Reply,
              at: float | None = None, doomed: Sequence[str] = (),
              signed: Signed | None = None) -> None:
        """A request this member accepted (`at`; `doomed`: the instances it withdrew with it;
        `signed`: the agent's signature it came with): queue it for the others if they need
        it."""
        if self.feed is None or not shared(method, path, reply.status):
            return
        try:
            text_body = body.decode()
        except UnicodeDecodeError:
            return  # not JSON: it was not accepted as a change
        if at is not None:  # (the stamp the others order it by: controller/cluster/records.py)
            at = self.order.accepted(method, path, text_body, at, reply.status, doomed,
                                     self._serve_change)
        if len(self._outbox) >= OUTBOX_MAX:  # the database is away: the oldest go
            self._outbox.popleft()
            self.core.counters["changes_dropped"] += 1
        self._outbox.append(Change(self.feed.member_id, method, path, text_body, at, signed))
        self._outbox_ready.set()

    def _publisher(self) -> None:
        """Publish the queued changes, a batch a transaction, in a worker thread."""
        assert self.feed is not None
        while True:
            self._outbox_ready.wait()
            self._outbox_ready.clear()
            while self._outbox:
                batch = [self._outbox.popleft() for _ in range(min(len(self._outbox), 500))]
                try:
                    tpool.execute(self.feed.publish, batch)
                    self.core.counters["changes_published"] += len(batch)
                except Exception as exc:
                    keep = min(max(OUTBOX_MAX - len(self._outbox), 0), len(batch))
                    self._outbox.extendleft(reversed(batch[len(batch) - keep:]))
                    self.core.counters["changes_dropped"] += len(batch) - keep
                    if not self.core.counters["changes_publish_failed"] % 100:
                        LOG.error("dyncast: cluster: could not publish %d changes: %s",
                                  len(batch), exc)
                    self.core.counters["changes_publish_failed"] += 1
                    hub.sleep(RETRY_S)

    def _follower(self) -> None:
        """Wait for the others' changes in a worker thread; apply each on the event loop."""
        assert self.feed is not None
        while True:
            if not self._follow_once():
                hub.sleep(RETRY_S)

    def _follow_once(self) -> bool:
        """One wait for the others' changes, applied; after a failure, listen again and catch
        up from the store first. False if the database could not be reached."""
        assert self.feed is not None
        try:
            if self._caught_up is False:  # listening again: LISTEN, then read the store
                tpool.execute(self.feed.listen)
                self._catch_up()
            changes = tpool.execute(self.feed.wait, WAIT_S)
        except Exception as exc:
            self.core.counters["changes_listen_failed"] += 1
            if self._caught_up is not False:  # once per outage, as the heartbeat does
                LOG.error("dyncast: cluster: listening for changes failed (the store is read "
                          "again when it is back): %s", exc)
            self.feed.close_listener()
            self._caught_up = False
            return False
        self._apply_sliced(changes)
        return True

    def _apply_sliced(self, changes: list[Change]) -> None:
        """Apply the others' changes, yielding to the event loop every APPLY_SLICE (a wait, or
        a catch-up from the store, may bring thousands, each an API call on the loop)."""
        for i, change in enumerate(changes):
            if i and not i % APPLY_SLICE:
                hub.sleep(0)
            self.apply_change(change)

    def _catch_up(self) -> None:
        """Read the shared records from the store and apply what this member missed while it
        was not listening (controller/cluster/catchup.py), as the others' changes."""
        assert self.feed is not None
        missed = tpool.execute(self.feed.missed)  # the log first: every write in its order,
        self._apply_sliced(missed)  # judged by its stamp (a write pending here included)
        before = self.core.writes.keys() | {(w.kind, w.key) for w in self.flushing}
        services, instances, unreadable, seqs = tpool.execute(self.store.load_shared)
        if self.guard is not None:  # the sequences the others stored meanwhile: no replays
            for agent, seq, key in seqs:
                self.guard.verifier.witness(agent, seq, key)
        # not judged from the store: this member's writes not stored yet, before the read or
        # after it (a batch the flusher landed while the read ran may be missing from what it
        # read: a service deleted here came back), and records that cannot be read (skipped
        # and named in the log: not deleted here)
        pending = (before | self.core.writes.keys() | {(w.kind, w.key) for w in self.flushing}
                   | unreadable)
        cat = self.core.catalogue
        changes = catch_up(self.feed.member_id, cat.services, cat.instances, services,
                           instances, pending, {s.name for s in self.core.config.services},
                           time.time())
        self._apply_sliced(changes)
        self.core.counters["changes_caught_up"] += len(missed) + len(changes)
        self._caught_up = True
        LOG.warning("dyncast: cluster: listening for changes again; %d caught up from the "
                    "log of changes, %d from the store", len(missed), len(changes))

    def apply_change(self, change: Change) -> None:
        """Apply another member's change as if this member had accepted it (not passed on),
        unless a later write to its record stands here (controller/cluster/order.py). The
        agent's sequence it was accepted under is refused here from now on too."""
        if change.signed is not None and self.guard is not None:
            s = change.signed
            self.guard.verifier.witness(s.agent, s.seq, s.key)
        if self.order.apply(change, self._serve_change) is None:
            LOG.info("dyncast: cluster: %s's change %s %s left out here: a later write to its "
                     "record stands", change.member, change.method, change.path)

    def _serve_change(self, change: Change) -> Reply:
        """Serve another member's change (or what it still writes here) as its request."""
        reply = self._serve(change.method, change.path, change.body.encode(),
                            accepted=change.at, remote=True)  # its reports replace older ones
        self.core.counters["changes_applied"] += 1
        if reply.status == 409:  # a record here excludes it: the members now hold different
            self.core.counters["changes_conflicting"] += 1  # records (docs/cluster.md)
            body = reply.body if isinstance(reply.body, dict) else {}
            logs.event("config", "cluster_change_conflicts", logging.ERROR,
                       member=change.member, method=change.method, path=change.path,
                       field=body.get("field"), error=body.get("error"),
                       reason="another member accepted a write that a record here excludes "
                       "(e.g. one D-SID for two services): the members now differ; delete "
                       "or change one of the two")
        elif reply.status >= 400:  # already here (a repeat, or read from the store at start)
            LOG.info("dyncast: cluster: %s's change %s %s refused here: %s %s",
                     change.member, change.method, change.path, reply.status, reply.body)
        if reply.status >= 400:
            self.core.counters["changes_refused"] += 1
        return reply
