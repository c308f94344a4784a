"""merge the market data, operations and optimization branches

Revision ID: 0005
Revises: 0002, 0003, 0004
Create Date: 2026-11-22

The three domains were built side by side, each branching from 0001; this joins them so later
migrations have one head to build on.
"""

revision = "0005"
down_revision = ("0002", "0003", "0004")
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
