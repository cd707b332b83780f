"""Each cluster member's shared-settings digest (`controller.cluster.agreement`).

`cluster_members.settings`: a short digest of the settings every member must share, written
with each heartbeat, so that a member configured apart from the others is seen (logged, shown
by `GET /dyncast/v1/cluster`, counted by `dyncast_cluster_settings_disagree`). Nullable: a
member of an earlier version writes none.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the column."""
    op.add_column("cluster_members", sa.Column("settings", sa.String(64), nullable=True))


def downgrade() -> None:
    """Drop it."""
    op.drop_column("cluster_members", "settings")
