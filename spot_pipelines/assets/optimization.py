"""spot_recommendations: risk-adjusted actions for every discovered running instance."""

from datetime import timedelta

import dagster as dg
import pandas as pd

from spot_pipelines.assets import AFTER_NEW_DATA, core_config, upstream_present
from spot_pipelines.core.clock import utcnow
from spot_pipelines.core.commitments import InForce
from spot_pipelines.core.errors import ValidationError
from spot_pipelines.core.optimization import RecommendConfig, recommend
from spot_pipelines.core.placement import with_placement_scores
from spot_pipelines.core.reporting import markdown_table, records
from spot_pipelines.core.risk import BurstConfig, hot_pools, with_hot_pools
from spot_pipelines.db import accounts as account_rows
from spot_pipelines.db import commitments as commitment_rows
from spot_pipelines.db import discovery as instance_rows
from spot_pipelines.db import interruptions as event_rows
from spot_pipelines.db import market_data as market_rows
from spot_pipelines.db import ml as ml_rows
from spot_pipelines.db import optimization as opt
from spot_pipelines.db import placement as placement_rows
from spot_pipelines.resources.app_database import AppDatabase


class RecommendationsConfig(dg.Config):
    """The tunable part of core RecommendConfig (defaults from it; `core_config` builds it)."""

    min_discount_pct: float = RecommendConfig.min_discount_pct
    max_p_interruption: float = RecommendConfig.max_p_interruption
    restart_cost_usd: float = RecommendConfig.restart_cost_usd
    restart_cost_on_demand_hours: float = RecommendConfig.restart_cost_on_demand_hours
    diversify_min_pools: int = RecommendConfig.diversify_min_pools
    max_pool_share: float = RecommendConfig.max_pool_share
    same_az_only: bool = RecommendConfig.same_az_only
    allowed_families: dict[str, list[str]] | None = RecommendConfig.allowed_families
    allow_burstable: bool = RecommendConfig.allow_burstable
    burst_warnings: int = BurstConfig.burst_warnings
    burst_window_hours: float = BurstConfig.burst_window_hours
    burst_quiet_hours: float = BurstConfig.burst_quiet_hours
    min_placement_score: int | None = RecommendConfig.min_placement_score


def summary_markdown(recs: pd.DataFrame, names: dict[int, str]) -> str:
    """List and net savings side by side, per account and in total (net: under the pool's commitments)."""
    if recs.empty:
        return "_no running instances to recommend for_"
    actionable = recs[recs["action"] != "stay_on_demand"]
    money = {
        "list_monthly_savings_usd": ("list_monthly_savings_usd", "sum"),
        "net_monthly_savings_usd": ("net_monthly_savings_usd", "sum"),
    }
    by_account = (
        actionable.assign(account=actionable["account_id"].map(names).fillna(actionable["account_id"].astype(str)))
        .groupby("account")
        .agg(recommendations=("instance_id", "size"), **money)
        .sort_values("net_monthly_savings_usd", ascending=False)
        .round(2)
        .reset_index()
    )
    kept = recs[(recs["action"] == "stay_on_demand") & (recs["commitment_covered_fraction"] > 0)]
    by_action = recs.groupby("action").agg(instances=("instance_id", "size"), **money).round(2).reset_index()
    top = actionable.head(10).assign(account=lambda f: f["account_id"].map(names))
    covered = kept.assign(account=lambda f: f["account_id"].map(names))
    return "\n\n".join(
        [
            f"**Total monthly savings if all are executed: net ${actionable['net_monthly_savings_usd'].sum():,.2f} "
            f"(list ${actionable['list_monthly_savings_usd'].sum():,.2f})**",
            "### Savings by account",
            markdown_table(records(by_account), list(by_account.columns)),
            "### By action",
            markdown_table(records(by_action), list(by_action.columns)),
            "### Top recommendations",
            markdown_table(records(top), [*TOP_COLUMNS, "reason"], limit=10),
            f"### Kept on-demand because commitments cover them ({len(kept)})",
            markdown_table(records(covered), ["account", "instance_id", "current_instance_type", "reason"], limit=10),
        ]
    )


TOP_COLUMNS = [
    "account",
    "instance_id",
    "current_instance_type",
    "action",
    "target_instance_type",
    "target_availability_zone_id",
    "list_monthly_savings_usd",
    "net_monthly_savings_usd",
]


@dg.asset(
    group_name="optimization",
    kinds={"pandas", "sql"},
    owners=["team:optimization"],
    deps=[
        dg.AssetKey("discovered_instances"),
        dg.AssetKey("interruption_predictions"),
        dg.AssetKey("on_demand_prices"),
        dg.AssetKey("spot_advisor"),
        dg.AssetKey("aws_commitments"),
    ],
    automation_condition=AFTER_NEW_DATA
    & upstream_present("discovered_instances", "interruption_predictions", "on_demand_prices"),
    description=(
        "Per running instance: compatible spot candidates priced in its AZ ID, the risk-adjusted expected hourly "
        "cost (spot price + P(interruption) × restart cost), and an action (move_to_spot, diversify, "
        "stay_on_demand, return_to_on_demand) with list and net monthly savings (net: under the account's RIs and "
        "Savings Plans, read by aws_commitments) and the reason in words. New rows are "
        "`proposed`; the previous generation's proposed rows become `superseded`; decisions are never touched."
    ),
)
def spot_recommendations(
    context: dg.AssetExecutionContext, config: RecommendationsConfig, app_db: AppDatabase
) -> dg.MaterializeResult:
    try:
        rc, burst = core_config(RecommendConfig, config), core_config(BurstConfig, config)
    except ValidationError as exc:
        raise dg.Failure(description=f"spot_recommendations config: {exc}", allow_retries=False) from None
    instances, catalog, on_demand, markets, names, commitments = _read_inputs(app_db)
    if markets.empty and not instances.empty:
        context.log.warning("no interruption predictions yet: every instance will stay on demand")
    hot = _hot_pools(app_db, burst)
    with app_db.connection() as conn:
        scored = with_placement_scores(with_hot_pools(markets, hot), placement_rows.read_latest(conn))
    result = recommend(instances, catalog, on_demand, scored, rc, commitments)
    recs = result.recommendations
    generated_at = utcnow()
    rows = records(recs.assign(generation_id=context.run_id, status=opt.PROPOSED, generated_at=generated_at))
    with app_db.transaction() as session:
        written = opt.write_recommendations(session, rows, generated_at=generated_at)
    metadata = _metadata(result, commitments, names, _savings_over_time(app_db))
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": written,
            "running_instances": len(instances),
            "held_back_pending_decisions": len(rows) - written,
            "hot_pools": len(hot),
            **metadata,
        }
    )


# Units and meaning of the recommendation columns, for the column schema in the UI.
COLUMN_DESCRIPTIONS = {
    "on_demand_hourly_cost": "USD/h: list on-demand price of the current instance",
    "current_hourly_cost": "USD/h: what it costs now (risk-adjusted for spot)",
    "recommended_hourly_cost": "USD/h: risk-adjusted cost after the action",
    "p_interruption": "probability of an interruption within a day",
    "monthly_savings_usd": "USD/month (730 h): the saving the action is taken for; net, 0 for stay_on_demand",
    "list_monthly_savings_usd": "USD/month (730 h): against the list on-demand price, commitments ignored",
    "net_monthly_savings_usd": "USD/month (730 h): change of the pool's whole bill under its RIs and Savings Plans "
    "(a freed commitment counts only where other usage absorbs it), minus the new cost",
    "commitment_covered_fraction": "0-1: share of this instance's hour covered by an RI or Savings Plan now",
}


def _schema(frame: pd.DataFrame) -> dg.TableSchema:
    return dg.TableSchema(
        columns=[
            dg.TableColumn(str(c), str(t), description=COLUMN_DESCRIPTIONS.get(str(c))) for c, t in frame.dtypes.items()
        ]
    )


def _metadata(result, commitments: InForce, names: dict[int, str], history_table: str) -> dict:
    recs = result.recommendations
    actionable = recs[recs["action"] != "stay_on_demand"]
    kept = recs[(recs["action"] == "stay_on_demand") & (recs["commitment_covered_fraction"] > 0)]
    return {
        "dagster/column_schema": _schema(recs.drop(columns=["candidates"])),
        "recommendations_by_action": dg.MetadataValue.json(recs["action"].value_counts().to_dict()),
        "unchanged_spot_instances": result.unchanged,
        "monthly_savings_usd": round(float(actionable["monthly_savings_usd"].sum()), 2),
        "list_monthly_savings_usd": round(float(actionable["list_monthly_savings_usd"].sum()), 2),
        "net_monthly_savings_usd": round(float(actionable["net_monthly_savings_usd"].sum()), 2),
        "kept_on_demand_covered": len(kept),
        "reserved_instances": len(commitments.book.reserved),
        "savings_plans": len(commitments.book.savings_plans),
        "commitment_gaps": dg.MetadataValue.json(commitments.book.gaps),
        "commitments_used_unused": dg.MetadataValue.md(
            markdown_table(records(result.commitments), list(result.commitments.columns), limit=50)
        ),
        "skipped_instances": len(result.skipped),
        "skipped": dg.MetadataValue.md(markdown_table(records(result.skipped), list(result.skipped.columns))),
        "summary": dg.MetadataValue.md(summary_markdown(recs, names)),
        "savings_over_time": dg.MetadataValue.md(history_table),
    }


def _read_inputs(app_db: AppDatabase) -> tuple:
    """(running instances, instance-type catalog, on-demand prices, interruption predictions, account names, the
    commitments in force with each account's pool)."""
    with app_db.connection() as conn:
        return (
            instance_rows.read_running_instances(conn),
            market_rows.read_catalog(conn),
            market_rows.read_on_demand(conn),
            ml_rows.read_predictions(conn),
            account_rows.account_names(conn),
            InForce(commitment_rows.read_book(conn), commitment_rows.account_pools(conn), utcnow()),
        )


def _hot_pools(app_db: AppDatabase, burst: BurstConfig):
    """Pools in an interruption burst now, from the stored warnings (the state lives in them, not in this run)."""
    now = utcnow()
    with app_db.connection() as conn:
        events = event_rows.read_events(conn, now - HOT_LOOKBACK, now)
    return hot_pools(events, now, burst)


HOT_LOOKBACK = timedelta(days=14)


def _savings_over_time(app_db: AppDatabase) -> str:
    """Every generation's savings, this one included, as a markdown table."""
    with app_db.connection() as conn:
        history = opt.savings_over_time(conn)
    return markdown_table(
        records(history.assign(generated_at=history["generated_at"].astype(str)).round(2)),
        ["generated_at", "recommendations", "monthly_savings_usd", "executed_monthly_savings_usd"],
        limit=60,
    )
