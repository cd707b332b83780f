"""One controller's claim on its store: taken at the start, held while it runs, released at
its end, however it ends.

A controller alone takes it exclusively, cluster members `shared`ly: so two lone controllers,
or a lone one and a cluster, never write one store (each would overwrite the other's records:
instances one had marked down, bindings it retired). PostgreSQL: a session advisory lock (on
the store's schema) on a connection held open; SQLite: an flock on the file beside the
database, `PATH.lock`.

A PostgreSQL server restart ends the session and its lock with it. So before a batch of
writes, at most every CLAIM_CHECK_S, the claim's connection is asked whether it is still
there (`hold`); if not, the claim is taken again as at the start. If another controller has
taken it meanwhile, `hold` raises a StoreError: the batch fails and is kept, as in an outage
(logged once, `/readyz` 503), until the claim can be ours again. What is left: batches written
within CLAIM_CHECK_S of the restart, before the check, by a controller whose claim another has
just taken.
"""

from __future__ import annotations

import fcntl
import logging
import time
from typing import IO

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from apps.storerecords import StoreError

LOG = logging.getLogger("dyncast")
CLAIM_CHECK_S = 2.0  # PostgreSQL: how often a batch first checks that the claim is held
CLAIM_CLASS = 0x64796E64  # PostgreSQL: with the schema's hashtext, the advisory lock of a claim


class Claim:
    """What holds the claim (a connection, a lock file), while it is held."""

    def __init__(self) -> None:
        self.held: Connection | IO[str] | None = None
        self.shared = False
        self.postgres = False  # a session lock, which a server restart ends
        self.checked = time.monotonic()  # when the claim was last found held

    def take(self, engine: Engine, shared: bool) -> bool:
        """Take the claim; False when another controller's claim excludes ours."""
        url, self.shared = engine.url, shared
        if url.get_backend_name() == "postgresql":
            conn = engine.connect()
            fn = "pg_try_advisory_lock_shared" if shared else "pg_try_advisory_lock"
            took = conn.execute(text(f"SELECT {fn}(:c, hashtext(current_schema()))"),
                                {"c": CLAIM_CLASS}).scalar()
            conn.commit()  # a session lock: it outlives the transaction
            if not took:
                conn.close()
                return False
            self.held, self.postgres = conn, True
        elif url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
            lock = open(f"{url.database}.lock", "a")  # noqa: SIM115 (held until released)
            try:
                fcntl.flock(lock, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
            except BlockingIOError:
                lock.close()
                return False
            self.held = lock
        self.checked = time.monotonic()
        return True

    def hold(self, engine: Engine) -> None:
        """Before a batch (module docstring): a PostgreSQL claim whose session has ended is
        taken again (and tried again at every batch while the server is away: its own
        error); a StoreError when another controller's claim excludes ours now."""
        if not self.postgres:
            return
        conn, now = self.held, time.monotonic()
        if isinstance(conn, Connection):
            if now - self.checked < CLAIM_CHECK_S:
                return
            try:
                conn.exec_driver_sql("SELECT 1")
                conn.rollback()
                self.checked = now
                return
            except SQLAlchemyError:
                self._drop(conn)
                self.held = None
        if not self.take(engine, self.shared):
            raise StoreError(f"{engine.url.render_as_string(hide_password=True)} was claimed "
                             "by another controller while our claim's session was gone; our "
                             "writes are kept until it is ours again")
        LOG.warning("dyncast: store: our claim's session had ended (a server restart?); the "
                    "claim is taken again")

    def release(self) -> None:
        """Release the claim (the process's end does as much)."""
        held, self.held = self.held, None
        if isinstance(held, Connection):
            self._drop(held)
        elif held is not None:
            held.close()  # the lock file: its flock goes with it

    @staticmethod
    def _drop(conn: Connection) -> None:
        """Close the claim's connection and end its session (a pooled one keeps its lock)."""
        try:
            conn.invalidate()
            conn.close()
        except SQLAlchemyError:
            pass  # (already gone)

    def __repr__(self) -> str:  # (no connection details in a log line)
        return f"Claim(held={self.held is not None}, shared={self.shared})"
