"""recommendation_backtest: the recommendation policy replayed day by day on stored history, against baselines,
on the advisor-band prior and on the walk-forward interruption model (its worth in dollars)."""

from datetime import timedelta

import dagster as dg

from spot_pipelines.assets import core_config, preview_table
from spot_pipelines.core.backtest import FIT_COLUMNS, MODEL, POLICY, BacktestConfig, run_backtest
from spot_pipelines.core.errors import ValidationError
from spot_pipelines.core.optimization import RecommendConfig
from spot_pipelines.core.reporting import records
from spot_pipelines.core.risk import BurstConfig, _day_start
from spot_pipelines.core.validation import parse_as_of
from spot_pipelines.db import discovery as instance_rows
from spot_pipelines.db import interruptions as event_rows
from spot_pipelines.db import market_data as market_rows
from spot_pipelines.db import placement as placement_rows
from spot_pipelines.resources.app_database import AppDatabase


class BacktestRunConfig(dg.Config):
    """The window (the `window_days` whole days before `as_of`'s day; default today) and the policy's tunables
    (defaults from core RecommendConfig and BacktestConfig)."""

    window_days: int = BacktestConfig.window_days
    lookback_days: int = BacktestConfig.lookback_days
    model_retrain_days: int = BacktestConfig.model_retrain_days
    model_training_days: int = BacktestConfig.model_training_days
    as_of: str | None = None
    min_discount_pct: float = RecommendConfig.min_discount_pct
    max_p_interruption: float = RecommendConfig.max_p_interruption
    restart_cost_usd: float = RecommendConfig.restart_cost_usd
    restart_cost_on_demand_hours: float = RecommendConfig.restart_cost_on_demand_hours
    burst_warnings: int = BurstConfig.burst_warnings
    burst_window_hours: float = BurstConfig.burst_window_hours
    burst_quiet_hours: float = BurstConfig.burst_quiet_hours


COLUMNS = {
    "policy": (
        "string",
        "recommend (the product's policy on the advisor-band prior and observed warning rate), recommend_stateless, "
        "recommend_model (the same on the walk-forward interruption model), a baseline, or hindsight_best",
    ),
    "cost_usd_per_instance_month": ("float", "USD per instance per 730 h, list prices, restarts included"),
    "savings_vs_on_demand_usd_per_instance_month": ("float", "USD per instance per 730 h against on_demand"),
    "savings_vs_on_demand_pct": ("float", "percent of the always-on-demand cost"),
    "interruptions_per_1000_instance_hours": ("float", "observed-warning interruptions taken per 1,000 h"),
    "interruptions": ("int", "interruptions over the window"),
    "moves": ("int", "relaunches the policy chose (to, from or between spot pools)"),
    "restarts": ("int", "interruptions + moves, each charged the restart cost"),
    "flips_per_instance_month": ("float", "moves between spot and on-demand per instance per 730 h"),
    "regret_usd_per_instance_month": ("float", "USD per instance per 730 h above the hindsight-best pool"),
    "total_cost_usd": ("float", "USD over the window for the whole replayed fleet"),
}
SCHEMA = dg.TableSchema(
    columns=[dg.TableColumn(name, kind, description=text) for name, (kind, text) in COLUMNS.items()]
)
PLOTTED = ("cost_usd_per_instance_month", "regret_usd_per_instance_month", "flips_per_instance_month")
POLICY_PLOTTED = (
    "savings_vs_on_demand_usd_per_instance_month",
    "savings_vs_on_demand_pct",
    "interruptions_per_1000_instance_hours",
    "restarts",
)
FIT_DESCRIPTIONS = {
    "day": "UTC day of the refit: it learns from the model_training_days before it only",
    "risk": "model: the fit passed the quality rule and prices the days until the next refit; prior: it did not",
    "label_source": "observed_interruptions, or advisor_band_weak when too few warnings were observed",
    "n_train": "training rows (market-days)",
    "n_holdout": "holdout rows (the newest days, time-based)",
    "brier": "the fit's Brier score on its holdout",
    "baseline_brier": "the advisor-band baseline's Brier score on the same holdout",
    "reason": "interruption_model_quality's verdict (a tie keeps the prior), or why it could not train",
}


@dg.asset(
    group_name="optimization",
    kinds={"pandas"},
    owners=["team:optimization"],
    deps=[
        dg.AssetKey("discovered_instances"),
        dg.AssetKey("spot_price_history"),
        dg.AssetKey("spot_advisor"),
        dg.AssetKey("on_demand_prices"),
        dg.AssetKey("spot_interruption_events"),
        dg.AssetKey("spot_placement_scores"),
    ],
    metadata={"dagster/column_schema": SCHEMA},
    description=(
        "Walk-forward replay of spot_recommendations' policy: for each day of the window, recommend() runs on "
        "what was stored before that day and the fleet is simulated hour by hour at the stored prices, with an "
        "interruption (and its restart cost) wherever a warning was observed in that market. Against always "
        "on-demand, cheapest spot, lowest advisor band and a price-capacity-optimized-like rule: cost per "
        "instance-month, savings, interruptions per 1,000 instance-hours, restarts, and regret against the "
        "hindsight-best pool. recommend_model runs the same policy on the interruption model refit walk-forward "
        "(every model_retrain_days days, on the model_training_days before) and falls back to the prior on days "
        "its fit would be blocked (its features include rebalance recommendations and the stored placement scores, "
        "each as known before the day); model_worth_usd_per_instance_month is recommend's cost minus "
        "recommend_model's. "
        "List prices; commitments ignored."
    ),
)
def recommendation_backtest(
    context: dg.AssetExecutionContext, config: BacktestRunConfig, app_db: AppDatabase
) -> dg.MaterializeResult:
    try:
        bc, rc = core_config(BacktestConfig, config), core_config(RecommendConfig, config)
        burst = core_config(BurstConfig, config)
        end = _day_start(parse_as_of(config.as_of))
        start = end - timedelta(days=bc.window_days)
        first = start - timedelta(days=bc.history_days)  # the lookback, or the model's training data
        with app_db.connection() as conn:
            inputs = {
                "fleet": instance_rows.read_running_instances(conn),
                "catalog": market_rows.read_catalog(conn),
                "on_demand": market_rows.read_on_demand(conn),
                "prices": market_rows.read_prices(conn, first.date(), end.date()),
                "advisor": market_rows.read_advisor(conn, end.date(), lookback_days=(end - first).days + 31),
                "events": event_rows.read_events(conn, first, end),
                "placement": placement_rows.read_between(conn, first, end),
            }
        result = run_backtest(**inputs, start=start, config=bc, recommend_config=rc, burst=burst)
    except ValidationError as exc:
        raise dg.Failure(description=f"recommendation_backtest: {exc}", allow_retries=False) from None
    context.log.info(
        f"backtest {result.window_start:%Y-%m-%d}..{result.window_end - timedelta(days=1):%Y-%m-%d}: "
        f"{result.instances} instances, {len(result.skipped)} skipped; model on {result.model_days} day(s), prior on "
        f"{result.prior_days}, worth {result.model_worth_usd_per_instance_month:.4f} USD per instance-month"
    )
    return dg.MaterializeResult(metadata=_metadata(result))


def _metadata(result) -> dict:
    """The policies as a table, and the figures worth a series in the Plots tab."""
    table = result.policies.round(4)
    rows = records(table)
    numbers = {}
    for row in rows:
        for col in PLOTTED + (POLICY_PLOTTED if row["policy"] in (POLICY, MODEL) else ()):
            if row[col] is not None:
                numbers[f"{row['policy']}_{col}"] = float(row[col])
    return {
        "dagster/row_count": len(table),
        "window": f"{result.window_start:%Y-%m-%d}..{result.window_end - timedelta(days=1):%Y-%m-%d}",
        "instances": result.instances,
        "instance_hours": result.instance_hours,
        "prices": "list prices; commitments ignored",
        "policies": dg.MetadataValue.table(records=[dg.TableRecord(row) for row in rows], schema=SCHEMA),
        **numbers,
        "model_worth_usd_per_instance_month": round(result.model_worth_usd_per_instance_month, 4),
        "model_days_on_model": result.model_days,
        "model_days_on_prior": result.prior_days,
        "model_fits": preview_table(
            records(result.model_fits.round(5)), FIT_COLUMNS, limit=50, descriptions=FIT_DESCRIPTIONS
        ),
        "skipped_count": len(result.skipped),
        "skipped": preview_table(records(result.skipped), ["what", "reason"], limit=50),
    }
