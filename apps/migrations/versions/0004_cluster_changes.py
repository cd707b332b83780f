"""The cluster's changes too large for a notification (issue 21, shared state).

A member that accepts a change (a REST call that changed something, a metric report) tells
the others with PostgreSQL's NOTIFY (`apps/changefeed.py`). A payload is at most 8,000 bytes:
a larger change is written here and the notification names its row; rows older than an hour
are pruned by later writes.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the table."""
    op.create_table(
        "cluster_changes",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
                  autoincrement=True),
        sa.Column("member_id", sa.String(64), nullable=False),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("data", sa.Text, nullable=False),
    )


def downgrade() -> None:
    """Drop it."""
    op.drop_table("cluster_changes")
