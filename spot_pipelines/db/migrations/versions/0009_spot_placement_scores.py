"""placement: spot_placement_scores, a daily history of AWS spot placement scores per request configuration

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

from spot_pipelines.db.base import UTCDateTime

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "spot_placement_scores",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("day", sa.Date, nullable=False, index=True),
        sa.Column("config_key", sa.String(64), nullable=False, index=True),
        sa.Column("region", sa.String(32), nullable=False),
        sa.Column("availability_zone_id", sa.String(32), nullable=False),
        sa.Column("instance_types", sa.Text, nullable=False),
        sa.Column("target_capacity", sa.Integer, nullable=False),
        sa.Column("score", sa.Integer, nullable=False),
        sa.Column("fetched_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("day", "config_key", "availability_zone_id", name="uq_spot_placement_scores"),
    )


def downgrade() -> None:
    op.drop_table("spot_placement_scores")
