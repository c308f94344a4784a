"""risk: the interruption model's new features on interruption_risk_scores

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03

`observed_rebalances`: rebalance recommendations in the market's pool over the scoring window (a weaker signal
than a warning: a model feature, never an interruption or a label). `placement_score`: the pool's latest stored
AZ-level spot placement score (1-10) within the window, NULL where AWS gave none — never a made-up number.
interruption_predictions reads both back as model inputs.
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("interruption_risk_scores") as batch:
        batch.add_column(sa.Column("observed_rebalances", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("placement_score", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("interruption_risk_scores") as batch:
        batch.drop_column("placement_score")
        batch.drop_column("observed_rebalances")
