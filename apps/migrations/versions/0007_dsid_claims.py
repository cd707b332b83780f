"""A cluster's claims on D-SIDs: which service holds each (controller/cluster/claims.py).

`cluster_dsid_claims` (dsid, service, member_id, at): a member takes a D-SID's row before it
creates a service on it, or moves one there, in one transaction; so of two services created on
one D-SID at two members at once, one is refused. Written only by cluster members.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the table."""
    op.create_table(
        "cluster_dsid_claims",
        sa.Column("dsid", sa.String(15), primary_key=True),
        sa.Column("service", sa.String(64), nullable=False),
        sa.Column("member_id", sa.String(64), nullable=False),
        sa.Column("at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    """Drop it."""
    op.drop_table("cluster_dsid_claims")
