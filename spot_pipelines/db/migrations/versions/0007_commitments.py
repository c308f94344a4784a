"""commitments: account_billing_families; commitment_refreshes, reserved_instances, savings_plans,
savings_plan_rates (one snapshot per refresh and account: history is kept); list and net monthly savings and
the commitment-covered fraction on spot_recommendations

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

from spot_pipelines.db.base import JSONType, UTCDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def _refresh_fk() -> sa.Column:
    return sa.Column(
        "refresh_id", sa.Integer, sa.ForeignKey("commitment_refreshes.id", ondelete="CASCADE"), primary_key=True
    )


NEW_RECOMMENDATION_COLUMNS = ("list_monthly_savings_usd", "net_monthly_savings_usd", "commitment_covered_fraction")


def upgrade() -> None:
    for column in NEW_RECOMMENDATION_COLUMNS:  # plain ADD COLUMN, nullable: rows written before stay as they were
        op.add_column("spot_recommendations", sa.Column(column, sa.Float))
    # A table of its own, not a column of accounts: the Account model keeps reading databases not yet migrated.
    op.create_table(
        "account_billing_families",
        sa.Column("account_id", sa.Integer, sa.ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("billing_family", sa.String(64), nullable=False),
    )
    op.create_table(
        "commitment_refreshes",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("account_id", sa.Integer, sa.ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
        sa.Column("fetched_at", UTCDateTime, nullable=False),
        sa.Column("utilization", JSONType, nullable=False),
        sa.Column("gaps", JSONType, nullable=False),
        sa.Column("skipped", JSONType, nullable=False),
    )
    op.create_index("ix_commitment_refreshes_account_id", "commitment_refreshes", ["account_id"])
    op.create_index("ix_commitment_refreshes_fetched_at", "commitment_refreshes", ["fetched_at"])
    op.create_table(
        "reserved_instances",
        _refresh_fk(),
        sa.Column("commitment_id", sa.String(64), primary_key=True),
        sa.Column("region", sa.String(32), nullable=False),
        sa.Column("scope", sa.String(32), nullable=False),
        sa.Column("availability_zone_id", sa.String(32)),
        sa.Column("instance_type", sa.String(64), nullable=False),
        sa.Column("product_description", sa.String(64), nullable=False),
        sa.Column("tenancy", sa.String(16), nullable=False),
        sa.Column("instance_count", sa.Integer, nullable=False),
        sa.Column("offering_class", sa.String(16), nullable=False),
        sa.Column("start", UTCDateTime),
        sa.Column("end", UTCDateTime, nullable=False),
        sa.Column("usd_per_hour", sa.Float),
    )
    op.create_table(
        "savings_plans",
        _refresh_fk(),
        sa.Column("commitment_id", sa.String(64), primary_key=True),
        sa.Column("plan_type", sa.String(16), nullable=False),
        sa.Column("region", sa.String(32)),
        sa.Column("instance_family", sa.String(32)),
        sa.Column("commitment_usd_per_hour", sa.Float, nullable=False),
        sa.Column("term_years", sa.Float, nullable=False),
        sa.Column("start", UTCDateTime),
        sa.Column("end", UTCDateTime, nullable=False),
    )
    op.create_table(
        "savings_plan_rates",
        _refresh_fk(),
        sa.Column("commitment_id", sa.String(64), primary_key=True),
        sa.Column("region", sa.String(32), primary_key=True),
        sa.Column("instance_type", sa.String(64), primary_key=True),
        sa.Column("product_description", sa.String(64), primary_key=True),
        sa.Column("usd_per_hour", sa.Float, nullable=False),
    )


def downgrade() -> None:
    for table in (
        "savings_plan_rates",
        "savings_plans",
        "reserved_instances",
        "commitment_refreshes",
        "account_billing_families",
    ):
        op.drop_table(table)
    for column in NEW_RECOMMENDATION_COLUMNS:  # native DROP COLUMN (SQLite >= 3.35): no table rebuild
        op.drop_column("spot_recommendations", column)
