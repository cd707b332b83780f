"""Alembic's entry point: run the migrations on the connection `apps.migrations` hands over.

There is no alembic.ini and no engine made here: `apps.migrations.upgrade()` (called by
`Store()` and by `python -m apps.migrations`) opens one transaction and passes its connection
in `config.attributes["connection"]`, so the whole upgrade commits or rolls back as one.
"""

from __future__ import annotations

from alembic import context

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through apps.migrations (python -m apps.migrations), "
                       "not the alembic command: no connection was handed over")
context.configure(connection=connection, target_metadata=None)
with context.begin_transaction():
    context.run_migrations()
