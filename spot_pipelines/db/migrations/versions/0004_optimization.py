"""optimization: interruption_risk_scores, model_registry, interruption_predictions,
spot_recommendations, recommendation_actions

Revision ID: 0004
Revises: 0001
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

from spot_pipelines.db.base import JSONType, UTCDateTime

revision = "0004"
down_revision = "0001"
branch_labels = None
depends_on = None

_BigId = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def _market_columns() -> list[sa.Column]:
    return [
        sa.Column("region", sa.String(32), primary_key=True),
        sa.Column("availability_zone_id", sa.String(32), primary_key=True),
        sa.Column("instance_type", sa.String(64), primary_key=True),
        sa.Column("product_description", sa.String(64), primary_key=True),
    ]


def upgrade() -> None:
    op.create_table(
        "interruption_risk_scores",
        *_market_columns(),
        sa.Column("window_start", UTCDateTime, nullable=False),
        sa.Column("window_end", UTCDateTime, nullable=False),
        sa.Column("spot_price", sa.Float, nullable=False),
        sa.Column("on_demand_price", sa.Float, nullable=False),
        sa.Column("price_to_on_demand", sa.Float, nullable=False),
        sa.Column("price_mean", sa.Float, nullable=False),
        sa.Column("volatility", sa.Float, nullable=False),
        sa.Column("changes_per_day", sa.Float, nullable=False),
        sa.Column("mean_abs_change_pct", sa.Float, nullable=False),
        sa.Column("spike_ratio_7d", sa.Float, nullable=False),
        sa.Column("hours_since_change", sa.Float, nullable=False),
        sa.Column("advisor_band", sa.Integer),
        sa.Column("advisor_savings_pct", sa.Float),
        sa.Column("observed_interruptions", sa.Integer, nullable=False),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("risk_band", sa.String(16), nullable=False),
        sa.Column("scored_at", UTCDateTime, nullable=False),
        sa.CheckConstraint("score >= 0 AND score <= 1", name="ck_risk_scores_score"),
        sa.CheckConstraint("spot_price > 0 AND on_demand_price > 0", name="ck_risk_scores_prices"),
    )
    op.create_index("ix_interruption_risk_scores_scored_at", "interruption_risk_scores", ["scored_at"])

    op.create_table(
        "model_registry",
        sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("trained_at", UTCDateTime, nullable=False),
        sa.Column("data_start", UTCDateTime, nullable=False),
        sa.Column("data_end", UTCDateTime, nullable=False),
        sa.Column("holdout_start", UTCDateTime, nullable=False),
        sa.Column("n_train", sa.Integer, nullable=False),
        sa.Column("n_holdout", sa.Integer, nullable=False),
        sa.Column("metrics", JSONType, nullable=False),
        sa.Column("features", JSONType, nullable=False),
        sa.Column("label_source", sa.String(32), nullable=False),
        sa.Column("horizon_hours", sa.Integer, nullable=False),
        sa.Column("artifact_uri", sa.Text, nullable=False),
        sa.Column("artifact_sha256", sa.String(64), nullable=False),
        sa.Column("sklearn_version", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("status_reason", sa.Text),
        sa.Column("checked_at", UTCDateTime),
        sa.CheckConstraint("status IN ('candidate', 'ready', 'blocked')", name="ck_model_registry_status"),
    )
    op.create_index("ix_model_registry_status", "model_registry", ["status"])

    op.create_table(
        "interruption_predictions",
        *_market_columns(),
        sa.Column("model_version", sa.Integer, nullable=False),
        sa.Column("p_interruption", sa.Float, nullable=False),
        sa.Column("horizon_hours", sa.Integer, nullable=False),
        sa.Column("risk_score", sa.Float, nullable=False),
        sa.Column("spot_price", sa.Float, nullable=False),
        sa.Column("on_demand_price", sa.Float, nullable=False),
        sa.Column("predicted_at", UTCDateTime, nullable=False),
        sa.CheckConstraint("p_interruption >= 0 AND p_interruption <= 1", name="ck_predictions_p"),
    )
    op.create_index("ix_interruption_predictions_model_version", "interruption_predictions", ["model_version"])

    op.create_table(
        "spot_recommendations",
        sa.Column("id", _BigId, primary_key=True, autoincrement=True),
        sa.Column("generation_id", sa.String(64), nullable=False),
        sa.Column("account_id", sa.Integer, sa.ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
        sa.Column("instance_id", sa.String(32), nullable=False),
        sa.Column("region", sa.String(32), nullable=False),
        sa.Column("availability_zone_id", sa.String(32)),
        sa.Column("current_instance_type", sa.String(64), nullable=False),
        sa.Column("current_lifecycle", sa.String(16), nullable=False),
        sa.Column("group_key", sa.String(256)),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("target_instance_type", sa.String(64)),
        sa.Column("target_availability_zone_id", sa.String(32)),
        sa.Column("target_market", sa.String(16)),
        sa.Column("candidates", JSONType, nullable=False),
        sa.Column("on_demand_hourly_cost", sa.Float, nullable=False),
        sa.Column("current_hourly_cost", sa.Float, nullable=False),
        sa.Column("recommended_hourly_cost", sa.Float, nullable=False),
        sa.Column("p_interruption", sa.Float),
        sa.Column("monthly_savings_usd", sa.Float, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("model_version", sa.Integer),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("generated_at", UTCDateTime, nullable=False),
        sa.Column("approved_at", UTCDateTime),
        sa.Column("approved_by", sa.String(128)),
        sa.Column("status_changed_at", UTCDateTime),
        sa.Column("executed_at", UTCDateTime),
        sa.Column("replacement_instance_id", sa.String(32)),
        sa.Column("error", sa.Text),
        sa.CheckConstraint(
            "action IN ('move_to_spot', 'diversify', 'stay_on_demand', 'return_to_on_demand')",
            name="ck_spot_recommendations_action",
        ),
        sa.CheckConstraint(
            "status IN ('proposed', 'approved', 'executing', 'executed', 'failed', 'rejected', 'superseded')",
            name="ck_spot_recommendations_status",
        ),
        sa.CheckConstraint("on_demand_hourly_cost > 0", name="ck_spot_recommendations_od_price"),
    )
    op.create_index("ix_spot_recommendations_generation_id", "spot_recommendations", ["generation_id"])
    op.create_index("ix_spot_recommendations_status", "spot_recommendations", ["status"])
    op.create_index("ix_spot_recommendations_generated_at", "spot_recommendations", ["generated_at"])
    op.create_index("ix_spot_recommendations_account_instance", "spot_recommendations", ["account_id", "instance_id"])

    op.create_table(
        "recommendation_actions",
        sa.Column("id", _BigId, primary_key=True, autoincrement=True),
        sa.Column(
            "recommendation_id", _BigId, sa.ForeignKey("spot_recommendations.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("run_id", sa.String(64)),
        sa.Column("dry_run", sa.Boolean, nullable=False),
        sa.Column("step", sa.Integer, nullable=False),
        sa.Column("operation", sa.String(64), nullable=False),
        sa.Column("params", JSONType, nullable=False),
        sa.Column("before_state", JSONType),
        sa.Column("after_state", JSONType),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("started_at", UTCDateTime, nullable=False),
        sa.Column("finished_at", UTCDateTime),
        sa.CheckConstraint("outcome IN ('planned', 'succeeded', 'failed')", name="ck_recommendation_actions_outcome"),
    )
    op.create_index("ix_recommendation_actions_recommendation_id", "recommendation_actions", ["recommendation_id"])


def downgrade() -> None:
    op.drop_table("recommendation_actions")
    op.drop_table("spot_recommendations")
    op.drop_table("interruption_predictions")
    op.drop_table("model_registry")
    op.drop_table("interruption_risk_scores")
