"""The store's first schema: services, instances and bindings, each a JSON `data` column.

Exactly what `metadata.create_all` made before migrations existed, so such a database is
adopted by stamping it at this revision (see `apps.migrations.upgrade`). A frozen copy, not an
import of `apps.store`: later revisions change the live tables, never this file.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the three tables."""
    op.create_table(
        "services",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("dsid", sa.String(15), nullable=False),
        sa.Column("data", sa.Text, nullable=False),
    )
    op.create_table(
        "instances",
        sa.Column("dbid", sa.String(15), primary_key=True),
        sa.Column("service", sa.String(64), nullable=False),
        sa.Column("metrics_at", sa.Float, nullable=True),
        sa.Column("data", sa.Text, nullable=False),
    )
    op.create_table(
        "bindings",
        sa.Column("id", sa.String(20), primary_key=True),
        sa.Column("service", sa.String(64), nullable=False),
        sa.Column("dbid", sa.String(15), nullable=False),
        sa.Column("data", sa.Text, nullable=False),
    )


def downgrade() -> None:
    """Drop the three tables (and every record in them)."""
    for table in ("bindings", "instances", "services"):
        op.drop_table(table)
