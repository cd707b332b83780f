"""The cluster's lease table in PostgreSQL: each member's heartbeat row (lease, epoch, the
digest of its shared settings) and the ticket sequence; and whether the store answers.

Boundary: shell, blocking database work: the app runs it in a worker OS thread through
`tpool` (apps/cluster.py), never on the event loop.
"""

from __future__ import annotations

from eventlet import patcher
from sqlalchemy import create_engine, delete, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Engine

from apps.store import cluster_members_table as members
from controller.cluster.membership import MemberRow, View
from controller.cluster.settings import ClusterConfig

PRUNE_S = 3600.0  # rows of members gone this long are deleted by the next beat


class LeaseTable:
    """This member's row in `cluster_members`: renewed by `beat`, removed by `leave`."""

    def __init__(self, url: str, cluster: ClusterConfig) -> None:
        """A small engine of its own (a long store batch never delays a beat), with a connect
        timeout; every statement of a beat is bounded by the lease too."""
        self.cluster = cluster
        self.timeout_ms = max(int(cluster.lease_s * 1000), 100)
        self.engine: Engine = create_engine(
            url, pool_size=2, max_overflow=1, pool_pre_ping=True,
            connect_args={"connect_timeout": max(int(cluster.lease_s), 1)})
        # a beat in flight never re-inserts the row `leave` deleted; an OS lock, not the green
        # one monkey-patching makes of threading.Lock: beats hold it in tpool's OS threads
        self.lock = patcher.original("threading").Lock()
        self.left = False

    def beat(self, settings: str | None = None) -> View:
        """Renew our lease (a new epoch if it had lapsed), take a ticket, read every row;
        publish the digest of our shared settings with it."""
        with self.lock:
            if self.left:
                raise RuntimeError("this member has left the cluster")
            return self._beat(settings)

    def _beat(self, settings: str | None) -> View:
        """`beat`, in one transaction."""
        c = self.cluster
        with self.engine.begin() as conn:
            conn.execute(text(f"SET LOCAL statement_timeout = {self.timeout_ms}"))
            now, ticket = conn.execute(text(
                "SELECT extract(epoch FROM clock_timestamp()), "
                "nextval('dyncast_cluster_ticket')")).one()
            now, ticket = float(now), int(ticket)
            old = conn.execute(select(members.c.epoch, members.c.lease_until).where(
                members.c.member_id == c.member_id).with_for_update()).first()
            epoch = old.epoch if old is not None and old.lease_until > now else ticket
            values = {"address": c.advertise, "beat_at": now, "lease_until": now + c.lease_s,
                      "epoch": epoch, "settings": settings}
            conn.execute(pg_insert(members).values(member_id=c.member_id, **values)
                         .on_conflict_do_update(index_elements=[members.c.member_id],
                                                set_=values))
            conn.execute(delete(members).where(members.c.lease_until < now - PRUNE_S))
            rows = conn.execute(select(members)).all()
        return View(tuple(MemberRow(r.member_id, r.address, r.beat_at, r.lease_until,
                                    int(r.epoch), r.settings) for r in rows), now, ticket)

    def leave(self) -> None:
        """Delete our row: the others take our switches at their next beat, not a lease later."""
        with self.lock, self.engine.begin() as conn:
            self.left = True
            conn.execute(text(f"SET LOCAL statement_timeout = {self.timeout_ms}"))
            conn.execute(delete(members).where(members.c.member_id == self.cluster.member_id))

    def close(self) -> None:
        """Release the connections."""
        self.engine.dispose()


def store_reachable(engine: Engine) -> bool:
    """True if the store answers a query (blocking: run it in a worker thread)."""
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return True
    except Exception:
        return False
