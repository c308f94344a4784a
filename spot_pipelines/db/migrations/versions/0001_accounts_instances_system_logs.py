"""accounts, instances and system_logs

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

from spot_pipelines.db.base import JSONType, UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("aws_account_id", sa.String(12), nullable=False),
        sa.Column("auth_method", sa.String(8), nullable=False),
        sa.Column("role_arn", sa.String(2048)),
        sa.Column("external_id", sa.String(1224)),
        sa.Column("access_key_id", sa.String(128)),
        sa.Column("encrypted_secret", sa.Text),
        sa.Column("regions", JSONType),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("last_error", sa.Text),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.Column("last_discovered_at", UTCDateTime),
        sa.CheckConstraint("auth_method IN ('role', 'keys')", name="ck_accounts_auth_method"),
        sa.CheckConstraint("status IN ('pending', 'connected', 'active', 'failed')", name="ck_accounts_status"),
    )
    op.create_index("ix_accounts_status", "accounts", ["status"])

    op.create_table(
        "instances",
        sa.Column("account_id", sa.Integer, sa.ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("instance_id", sa.String(32), primary_key=True),
        sa.Column("region", sa.String(32), nullable=False),
        sa.Column("availability_zone", sa.String(32)),
        sa.Column("availability_zone_id", sa.String(32)),
        sa.Column("instance_type", sa.String(64), nullable=False),
        sa.Column("lifecycle", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("platform", sa.String(64), nullable=False),
        sa.Column("architecture", sa.String(16)),
        sa.Column("launch_time", UTCDateTime),
        sa.Column("tags", JSONType, nullable=False),
        sa.Column("first_seen_at", UTCDateTime, nullable=False),
        sa.Column("last_seen_at", UTCDateTime, nullable=False),
        sa.Column("terminated_at", UTCDateTime),
    )
    op.create_index("ix_instances_account_region", "instances", ["account_id", "region"])
    op.create_index("ix_instances_type_az_id", "instances", ["instance_type", "availability_zone_id"])

    op.create_table(
        "system_logs",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("component", sa.String(64), nullable=False),
        sa.Column("level", sa.String(16), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("details", JSONType),
        sa.Column("run_id", sa.String(64)),
    )
    op.create_index("ix_system_logs_created_at", "system_logs", ["created_at"])
    op.create_index("ix_system_logs_component", "system_logs", ["component"])


def downgrade() -> None:
    op.drop_table("system_logs")
    op.drop_table("instances")
    op.drop_table("accounts")
