"""Each agent's last accepted request sequence, so that a request captured before a controller
restart is refused after it (controller/auth/verifier.py, docs/security.md).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create `agent_sequences` (agent id -> JSON {"agent", "seq"})."""
    op.create_table(
        "agent_sequences",
        sa.Column("agent", sa.String(64), primary_key=True),
        sa.Column("data", sa.Text, nullable=False),
    )


def downgrade() -> None:
    """Drop `agent_sequences`."""
    op.drop_table("agent_sequences")
