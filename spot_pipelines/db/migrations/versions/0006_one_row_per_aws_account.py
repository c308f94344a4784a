"""one row per AWS account: a unique index on accounts.aws_account_id

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23

Two names for one AWS account discover the same instances twice and double count their savings.
Existing duplicates are reported and the upgrade refused: which row to keep is the operator's call,
so nothing is merged or deleted here. A unique index (not a table rebuild) keeps SQLite from
dropping and recreating `accounts`, which would cascade-delete every instance row.
"""

import sqlalchemy as sa
from alembic import op

from spot_pipelines.core.accounts import duplicates_report

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

INDEX = "uq_accounts_aws_account_id"


def upgrade() -> None:
    accounts = sa.table("accounts", sa.column("id"), sa.column("name"), sa.column("aws_account_id"))
    shared = sa.select(accounts.c.aws_account_id).group_by(accounts.c.aws_account_id).having(sa.func.count() > 1)
    rows = (
        op.get_bind()
        .execute(
            sa.select(accounts.c.aws_account_id, accounts.c.name, accounts.c.id).where(
                accounts.c.aws_account_id.in_(shared)
            )
        )
        .all()
    )
    if rows:
        raise duplicates_report([tuple(r) for r in rows])
    op.create_index(INDEX, "accounts", ["aws_account_id"], unique=True)


def downgrade() -> None:
    op.drop_index(INDEX, table_name="accounts")
