"""operations: spot interruption events, component health, dead letters, Kubernetes inventory

Revision ID: 0003
Revises: 0001
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

from spot_pipelines.db.base import JSONType, UTCDateTime

revision = "0003"
down_revision = "0001"
branch_labels = None
depends_on = None

_BIGID = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    op.create_table(
        "spot_interruption_events",
        sa.Column("event_id", sa.String(64), primary_key=True),
        sa.Column("event_type", sa.String(32), nullable=False),
        sa.Column("event_time", UTCDateTime, nullable=False),
        sa.Column("received_at", UTCDateTime, nullable=False),
        sa.Column("aws_account_id", sa.String(12), nullable=False),
        sa.Column("account_id", sa.Integer, sa.ForeignKey("accounts.id", ondelete="SET NULL")),
        sa.Column("region", sa.String(32), nullable=False),
        sa.Column("availability_zone", sa.String(32)),
        sa.Column("availability_zone_id", sa.String(32)),
        sa.Column("instance_id", sa.String(32), nullable=False),
        sa.Column("instance_type", sa.String(64)),
        sa.Column("action_or_state", sa.String(32)),
        sa.Column("detail", JSONType),
        sa.CheckConstraint(
            "event_type IN ('spot_interruption_warning', 'rebalance_recommendation', 'state_change')",
            name="ck_spot_interruption_events_type",
        ),
    )
    op.create_index("ix_spot_interruption_events_time", "spot_interruption_events", ["event_time"])
    op.create_index(
        "ix_spot_interruption_events_account_time", "spot_interruption_events", ["account_id", "event_time"]
    )
    op.create_index(
        "ix_spot_interruption_events_type_az_id", "spot_interruption_events", ["instance_type", "availability_zone_id"]
    )
    op.create_index("ix_spot_interruption_events_instance", "spot_interruption_events", ["instance_id"])

    op.create_table(
        "dead_letters",
        sa.Column("id", _BIGID, primary_key=True, autoincrement=True),
        sa.Column("received_at", UTCDateTime, nullable=False),
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("body", sa.Text),
        sa.Column("message_id", sa.String(128)),
    )
    op.create_index("ix_dead_letters_received_at", "dead_letters", ["received_at"])
    op.create_index("ix_dead_letters_source_message", "dead_letters", ["source", "message_id"], unique=True)

    op.create_table(
        "component_health",
        sa.Column("id", _BIGID, primary_key=True, autoincrement=True),
        sa.Column("round_id", sa.String(36), nullable=False),
        sa.Column("checked_at", UTCDateTime, nullable=False),
        sa.Column("component", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("latency_ms", sa.Float),
        sa.Column("details", JSONType),
        sa.CheckConstraint(
            "status IN ('healthy', 'degraded', 'critical', 'not_configured')", name="ck_component_health_status"
        ),
    )
    op.create_index("ix_component_health_component_checked", "component_health", ["component", "checked_at"])
    op.create_index("ix_component_health_checked_at", "component_health", ["checked_at"])

    op.create_table(
        "component_health_state",
        sa.Column("component", sa.String(64), primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("since", UTCDateTime, nullable=False),
        sa.Column("checked_at", UTCDateTime, nullable=False),
    )

    op.create_table(
        "k8s_nodes",
        sa.Column("cluster", sa.String(128), primary_key=True),
        sa.Column("name", sa.String(253), primary_key=True),
        sa.Column("provider_id", sa.String(256)),
        sa.Column("instance_id", sa.String(32)),
        sa.Column("account_id", sa.Integer, sa.ForeignKey("accounts.id", ondelete="SET NULL")),
        sa.Column("capacity_type", sa.String(16), nullable=False),
        sa.Column("capacity_type_source", sa.String(64)),
        sa.Column("instance_type", sa.String(64)),
        sa.Column("region", sa.String(32)),
        sa.Column("zone", sa.String(32)),
        sa.Column("ready", sa.Boolean, nullable=False),
        sa.Column("unschedulable", sa.Boolean, nullable=False),
        sa.Column("labels", JSONType),
        sa.Column("observed_at", UTCDateTime, nullable=False),
    )
    op.create_index("ix_k8s_nodes_instance_id", "k8s_nodes", ["instance_id"])

    op.create_table(
        "k8s_pods",
        sa.Column("cluster", sa.String(128), primary_key=True),
        sa.Column("namespace", sa.String(253), primary_key=True),
        sa.Column("name", sa.String(253), primary_key=True),
        sa.Column("node_name", sa.String(253)),
        sa.Column("phase", sa.String(32)),
        sa.Column("owner_kind", sa.String(64)),
        sa.Column("owner_name", sa.String(253)),
        sa.Column("on_spot", sa.Boolean, nullable=False),
        sa.Column("observed_at", UTCDateTime, nullable=False),
    )
    op.create_index("ix_k8s_pods_node", "k8s_pods", ["cluster", "node_name"])

    op.create_table(
        "k8s_watcher_heartbeats",
        sa.Column("cluster", sa.String(128), primary_key=True),
        sa.Column("heartbeat_at", UTCDateTime, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("node_count", sa.Integer, nullable=False),
        sa.Column("pod_count", sa.Integer, nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("last_success_at", UTCDateTime),
    )


def downgrade() -> None:
    for table in (
        "k8s_watcher_heartbeats",
        "k8s_pods",
        "k8s_nodes",
        "component_health_state",
        "component_health",
        "dead_letters",
        "spot_interruption_events",
    ):
        op.drop_table(table)
