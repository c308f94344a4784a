"""market data: spot_price_history, on_demand_prices, spot_advisor, instance_types

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

from spot_pipelines.db.base import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "spot_price_history",
        sa.Column("day", sa.Date, nullable=False),
        sa.Column("ts", UTCDateTime, nullable=False),
        sa.Column("region", sa.String(32), nullable=False),
        sa.Column("availability_zone", sa.String(32), nullable=False),
        sa.Column("availability_zone_id", sa.String(32), nullable=False),
        sa.Column("instance_type", sa.String(64), nullable=False),
        sa.Column("product_description", sa.String(64), nullable=False),
        sa.Column("price", sa.Float, nullable=False),
        sa.Column("is_day_open", sa.Boolean, nullable=False, server_default=sa.false()),
        # The unique key (one price per AZ ID, type, product and instant) is the primary key.
        sa.PrimaryKeyConstraint(
            "availability_zone_id", "instance_type", "product_description", "ts", name="pk_spot_price_history"
        ),
    )
    op.create_index(
        "ix_spot_price_history_type_az_ts", "spot_price_history", ["instance_type", "availability_zone_id", "ts"]
    )
    op.create_index("ix_spot_price_history_day", "spot_price_history", ["day"])

    op.create_table(
        "on_demand_prices",
        sa.Column("region", sa.String(32), primary_key=True),
        sa.Column("instance_type", sa.String(64), primary_key=True),
        sa.Column("operating_system", sa.String(16), primary_key=True),
        sa.Column("usd_per_hour", sa.Float, nullable=False),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("as_of", UTCDateTime, nullable=False),
        sa.CheckConstraint("source IN ('price_list_api', 'bundled_snapshot')", name="ck_on_demand_prices_source"),
    )

    op.create_table(
        "spot_advisor",
        sa.Column("day", sa.Date, primary_key=True),
        sa.Column("region", sa.String(32), primary_key=True),
        sa.Column("operating_system", sa.String(16), primary_key=True),
        sa.Column("instance_type", sa.String(64), primary_key=True),
        sa.Column("interruption_band", sa.Integer, nullable=False),
        sa.Column("savings_pct", sa.Integer, nullable=False),
        sa.Column("source", sa.String(32), nullable=False),
        sa.CheckConstraint("source IN ('feed', 'bundled_snapshot')", name="ck_spot_advisor_source"),
    )
    op.create_index("ix_spot_advisor_type_region", "spot_advisor", ["instance_type", "region"])

    op.create_table(
        "instance_types",
        sa.Column("instance_type", sa.String(64), primary_key=True),
        sa.Column("family", sa.String(32), nullable=False),
        sa.Column("vcpu", sa.Integer),
        sa.Column("memory_gib", sa.Float),
        sa.Column("architecture", sa.String(16), nullable=False),
        sa.Column("source", sa.String(32), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("instance_types")
    op.drop_table("spot_advisor")
    op.drop_table("on_demand_prices")
    op.drop_table("spot_price_history")
