"""The fleet's recent rollups: every instance publishes its last hour in 10 s buckets.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "observability_fleet_rollups",
        sa.Column("service", sa.String(100), primary_key=True),
        sa.Column("instance", sa.String(160), primary_key=True),
        sa.Column("bucket_start", sa.BigInteger, primary_key=True),
        sa.Column("data", sa.Text, nullable=False),
    )
    op.create_index(
        "ix_observability_fleet_rollups_bucket",
        "observability_fleet_rollups",
        ["service", "bucket_start"],
    )


def downgrade() -> None:
    op.drop_index("ix_observability_fleet_rollups_bucket", "observability_fleet_rollups")
    op.drop_table("observability_fleet_rollups")
