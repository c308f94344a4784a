"""spot_recommendations: risk-adjusted actions for every discovered running instance."""

import dagster as dg
import pandas as pd

from spot_pipelines.assets import (
    AFTER_NEW_DATA,
    core_config,
    preview_table,
    problems_check,
    table_metadata,
    upstream_present,
)
from spot_pipelines.core.clock import utcnow
from spot_pipelines.core.commitments import InForce, pool_label
from spot_pipelines.core.errors import ValidationError
from spot_pipelines.core.optimization import (
    RecommendConfig,
    RecommendResult,
    recommend,
    unaccounted_instances,
    unprofitable_moves,
    zero_priced,
)
from spot_pipelines.core.placement import with_placement_scores
from spot_pipelines.core.reporting import records
from spot_pipelines.core.risk import BurstConfig, with_hot_pools
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
    "account": "account name",
    "current_instance_type": "EC2 instance type now",
    "current_lifecycle": "on-demand or spot now",
    "group_key": "ASG / EKS node group / Karpenter pool the instance belongs to",
    "action": "move_to_spot, diversify, stay_on_demand or return_to_on_demand",
    "target_instance_type": "EC2 instance type to move to",
    "target_availability_zone_id": "AZ ID to move to",
    "target_market": "spot or on-demand after the action",
    "candidates": "the top qualifying spot markets, cheapest risk-adjusted first",
    "reason": "why, in words",
    "status": "proposed, approved, executing, executed, failed, rejected or superseded",
    "generation_id": "the run that generated the row",
    "generated_at": "UTC time of the generation",
    "approved_by": "who approved or rejected",
    "approved_at": "UTC time of the approval",
    "status_changed_at": "UTC time of the last status change",
    "executed_at": "UTC time the execution finished",
    "replacement_instance_id": "EC2 instance id launched in its place",
    "error": "why the execution failed, or why the row was superseded",
    "realised_price_basis": "how realised_hourly_usd was priced",
    "realised_hourly_usd": "USD/h: list price of what was launched",
    "recommendations": "number of recommendations",
    "instances": "number of instances",
    "executed_monthly_savings_usd": "USD/month (730 h): of those, executed",
}


def summary_tables(recs: pd.DataFrame, names: dict[int, str]) -> dict[str, dg.MetadataValue]:
    """Savings by account and by action, the top recommendations by net savings and the instances kept on-demand
    for their commitments, as inline tables with account names; the totals in one sentence."""
    named = recs.assign(account=recs["account_id"].map(names).fillna(recs["account_id"].astype(str)))
    money = {
        "list_monthly_savings_usd": ("list_monthly_savings_usd", "sum"),
        "net_monthly_savings_usd": ("net_monthly_savings_usd", "sum"),
    }
    moves = named[named["action"] != "stay_on_demand"]
    by_account = (
        moves.groupby("account")
        .agg(recommendations=("instance_id", "size"), **money)
        .sort_values("net_monthly_savings_usd", ascending=False)
        .round(2)
        .reset_index()
    )
    by_action = recs.groupby("action").agg(instances=("instance_id", "size"), **money).round(2).reset_index()
    top = moves.sort_values("net_monthly_savings_usd", ascending=False).round(4)
    kept = named[(named["action"] == "stay_on_demand") & (named["commitment_covered_fraction"] > 0)]
    return {
        "summary": dg.MetadataValue.md(
            "_no running instances to recommend for_"
            if recs.empty
            else f"**Total monthly savings if all are executed: net ${moves['net_monthly_savings_usd'].sum():,.2f} "
            f"(list ${moves['list_monthly_savings_usd'].sum():,.2f})**"
        ),
        "top_recommendations": preview_table(records(top), [*TOP_COLUMNS, "reason"], 10, COLUMN_DESCRIPTIONS),
        "savings_by_account": preview_table(records(by_account), list(by_account.columns), 50, COLUMN_DESCRIPTIONS),
        "savings_by_action": preview_table(records(by_action), list(by_action.columns), 10, COLUMN_DESCRIPTIONS),
        "kept_on_demand_for_commitments": preview_table(
            records(kept), ["account", "instance_id", "current_instance_type", "reason"], 10, COLUMN_DESCRIPTIONS
        ),
    }


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
    metadata=table_metadata(opt.SpotRecommendation.__table__, COLUMN_DESCRIPTIONS),
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
    check_specs=[
        dg.AssetCheckSpec(
            "every_running_instance_accounted",
            asset="spot_recommendations",
            description="Every running instance is recommended, unchanged (spot, pool still qualifies) or skipped "
            "with a reason.",
        ),
        dg.AssetCheckSpec(
            "moves_save_money",
            asset="spot_recommendations",
            description="No move_to_spot whose net monthly saving is zero, negative or unknown.",
        ),
        dg.AssetCheckSpec(
            "no_zero_prices",
            asset="spot_recommendations",
            description="No recommendation has an on-demand, current or recommended hourly cost of zero or less.",
        ),
    ],
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
    with app_db.connection() as conn:  # the burst state lives in the stored warnings, not in this run
        hot = event_rows.read_hot_pools(conn, utcnow(), burst)
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
            "on_demand_share": round(float((instances["lifecycle"] == "on-demand").mean()), 4)
            if len(instances)
            else 0.0,
            "held_back_pending_decisions": len(rows) - written,
            "hot_pools": len(hot),
            **metadata,
        },
        check_results=_checks(instances, result),
    )


def _checks(instances: pd.DataFrame, result: RecommendResult) -> list[dg.AssetCheckResult]:
    recs = result.recommendations
    return [
        problems_check(
            "every_running_instance_accounted",
            unaccounted_instances(instances, result),
            f"{len(instances)} running: {len(recs)} recommended, {result.unchanged} unchanged, "
            f"{len(result.skipped)} skipped with a reason",
        ),
        problems_check("moves_save_money", unprofitable_moves(recs), "every move_to_spot saves money net"),
        problems_check("no_zero_prices", zero_priced(recs), "every recommendation is priced above zero"),
    ]


def _metadata(result, commitments: InForce, names: dict[int, str], history_table: dg.MetadataValue) -> dict:
    recs = result.recommendations
    actionable = recs[recs["action"] != "stay_on_demand"]
    kept = recs[(recs["action"] == "stay_on_demand") & (recs["commitment_covered_fraction"] > 0)]
    return {
        "unchanged_spot_instances": result.unchanged,
        "monthly_savings_usd": round(float(actionable["monthly_savings_usd"].sum()), 2),
        "list_monthly_savings_usd": round(float(actionable["list_monthly_savings_usd"].sum()), 2),
        "net_monthly_savings_usd": round(float(actionable["net_monthly_savings_usd"].sum()), 2),
        "kept_on_demand_covered": len(kept),
        "reserved_instances": len(commitments.book.reserved),
        "savings_plans": len(commitments.book.savings_plans),
        "commitment_gaps": dg.MetadataValue.json({pool_label(p, names): g for p, g in commitments.book.gaps.items()}),
        "commitments_used_unused": preview_table(
            records(result.commitments.assign(pool=result.commitments["pool"].map(lambda p: pool_label(p, names)))),
            list(result.commitments.columns),
            50,
        ),
        "skipped_instances": len(result.skipped),
        "skipped": preview_table(records(result.skipped), list(result.skipped.columns)),
        **summary_tables(recs, names),
        "savings_over_time": history_table,
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


def _savings_over_time(app_db: AppDatabase) -> dg.MetadataValue:
    """Every generation's savings, this one included, as a table."""
    with app_db.connection() as conn:
        history = opt.savings_over_time(conn)
    return preview_table(
        records(history.round(2)),
        ["generated_at", "recommendations", "monthly_savings_usd", "executed_monthly_savings_usd"],
        60,
        COLUMN_DESCRIPTIONS,
    )
