"""Schema migrations of the store (alembic): bring a database to the newest revision.

`Store()` calls `upgrade()` at every start; `python -m apps.migrations` does the same from the
command line. Revisions live in versions/, one file each, and env.py runs them on the
connection handed over here, in one transaction (PostgreSQL has transactional DDL: an upgrade
there commits whole or not at all; a PostgreSQL advisory lock keeps two controllers starting at
once from both upgrading). A database made before migrations existed (the three tables of
0001, no `alembic_version`) is adopted: stamped at 0001, then upgraded like any other. No
alembic.ini is involved.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, Engine

LOG = logging.getLogger("dyncast")
HERE = Path(__file__).resolve().parent
FIRST = "0001"
FIRST_TABLES = ("services", "instances", "bindings")
LOCK_KEY = 0x64796E63  # "dync": the PostgreSQL advisory lock held while upgrading


class MigrationError(RuntimeError):
    """The database cannot be brought to the newest revision safely."""


def alembic_config(connection: Connection | None = None) -> Config:
    """An alembic configuration for versions/, with `connection` handed to env.py."""
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    cfg.attributes["connection"] = connection
    return cfg


@functools.cache
def head() -> str:
    """The newest revision in versions/ (read once per process)."""
    heads = ScriptDirectory.from_config(alembic_config()).get_heads()
    if len(heads) != 1:
        raise MigrationError(f"apps/migrations/versions must have exactly one head, has {heads}")
    return heads[0]


@functools.cache
def revisions() -> frozenset[str]:
    """Every revision in versions/ (read once per process)."""
    script = ScriptDirectory.from_config(alembic_config())
    return frozenset(rev.revision for rev in script.walk_revisions())


def current(conn: Connection) -> str | None:
    """The database's revision; None when it has no `alembic_version` table."""
    return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine) -> tuple[str | None, str]:
    """Bring the database to the newest revision; return the revisions before and after.

    One query (plus a lock on PostgreSQL) when it is there already.
    """
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK_KEY})
        before = current(conn)
        after = head()
        if before == after:
            return before, after
        if before is not None and before not in revisions():
            raise MigrationError(
                f"the database is at schema revision {before!r}, which this controller does "
                f"not know (its newest is {after!r}): it was made or upgraded by a newer "
                "version; run that version, or restore a backup made before the upgrade")
        cfg = alembic_config(conn)
        if before is None and _adopt(conn):
            command.stamp(cfg, FIRST)
            LOG.info("store: adopted a database made before migrations (stamped %s)", FIRST)
        command.upgrade(cfg, after)
        LOG.info("store: schema upgraded from %s to %s", before or "nothing", after)
        return before, after


def _adopt(conn: Connection) -> bool:
    """Whether the database holds the tables of 0001 without a revision (the store made them
    with `create_all` before migrations existed); refuse a database that holds only some."""
    present = [t for t in FIRST_TABLES if inspect(conn).has_table(t)]
    if present and len(present) < len(FIRST_TABLES):
        missing = [t for t in FIRST_TABLES if t not in present]
        raise MigrationError(f"the database has the tables {present} but not {missing}, and no "
                             "alembic_version: it was not made by this store; not adopting it")
    return bool(present)
