"""The cluster's lease table and ticket sequence (issue 21).

`cluster_members`: one heartbeat row per controller member (its id, REST address, last beat
and lease end on the database's clock, lease epoch). `dyncast_cluster_ticket`: the sequence
every heartbeat takes a ticket from (role requests' generation ids, lease epochs); PostgreSQL
only: a cluster refuses SQLite, and one member on SQLite never reads the table.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the table (and, on PostgreSQL, the sequence)."""
    op.create_table(
        "cluster_members",
        sa.Column("member_id", sa.String(64), primary_key=True),
        sa.Column("address", sa.String(200), nullable=False),
        sa.Column("beat_at", sa.Float, nullable=False),
        sa.Column("lease_until", sa.Float, nullable=False),
        sa.Column("epoch", sa.BigInteger, nullable=False),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute("CREATE SEQUENCE IF NOT EXISTS dyncast_cluster_ticket")  # survives a table wipe


def downgrade() -> None:
    """Drop them."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP SEQUENCE IF EXISTS dyncast_cluster_ticket")
    op.drop_table("cluster_members")
