"""execution: the realised hourly price of an executed recommendation's replacement

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02

`realised_hourly_usd` is the stored list price of what was launched (the spot price in force for its
type and AZ ID at execution, or its on-demand price), NULL when that input is missing — never zero;
`realised_price_basis` says which stored price it is.
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("spot_recommendations") as batch:
        batch.add_column(sa.Column("realised_hourly_usd", sa.Float(), nullable=True))
        batch.add_column(sa.Column("realised_price_basis", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("spot_recommendations") as batch:
        batch.drop_column("realised_price_basis")
        batch.drop_column("realised_hourly_usd")
