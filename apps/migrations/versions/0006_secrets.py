"""Secrets every process of a store shares: the key that tags the controller's LLDP frames.

`controller_secrets` (name, value): a random value made by the first process that asks for it
(`Store.secret`) and read by every one after, a cluster's members too, so that each takes the
others' LLDP frames and no host can make one (controller/network/network.py `keyed`).

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the table."""
    op.create_table(
        "controller_secrets",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("value", sa.String(128), nullable=False),
    )


def downgrade() -> None:
    """Drop it."""
    op.drop_table("controller_secrets")
