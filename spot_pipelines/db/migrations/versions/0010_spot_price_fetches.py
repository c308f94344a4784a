"""market_data: spot_price_fetches, when each (day, region) of spot prices was last fetched and as of when

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03

Price freshness is measured by fetches, not by the newest price change: a market whose price has not
changed for a day is fresh when it was fetched a minute ago. `prices_as_of` is the moment the stored
prices are known to hold at (the fetch's request time, or the end of the day for a past day's full
load); no rows are backfilled (earlier fetches were not recorded: the first load after the upgrade
records one).
"""

import sqlalchemy as sa
from alembic import op

from spot_pipelines.db.base import UTCDateTime

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "spot_price_fetches",
        sa.Column("day", sa.Date, nullable=False),
        sa.Column("region", sa.String(32), nullable=False),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("fetched_at", UTCDateTime(), nullable=False),
        sa.Column("prices_as_of", UTCDateTime(), nullable=False),
        sa.Column("rows_fetched", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("day", "region", name="pk_spot_price_fetches"),
    )
    op.create_index("ix_spot_price_fetches_prices_as_of", "spot_price_fetches", ["prices_as_of"])


def downgrade() -> None:
    op.drop_index("ix_spot_price_fetches_prices_as_of", table_name="spot_price_fetches")
    op.drop_table("spot_price_fetches")
