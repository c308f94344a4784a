"""interruption_risk_scores: a transparent risk score per spot market, with its features kept."""

from datetime import timedelta

import dagster as dg

from spot_pipelines.assets import AFTER_NEW_DATA, preview_table, table_metadata, upstream_present
from spot_pipelines.core.clock import utcnow
from spot_pipelines.core.errors import ValidationError
from spot_pipelines.core.reporting import records
from spot_pipelines.core.risk import RISK_BANDS, WINDOW_DAYS, score_markets, window_end
from spot_pipelines.core.validation import parse_as_of
from spot_pipelines.db import interruptions as event_rows
from spot_pipelines.db import market_data as market_rows
from spot_pipelines.db import placement as placement_rows
from spot_pipelines.db import risk as risk_rows
from spot_pipelines.resources.app_database import AppDatabase

PREVIEW = [
    "region",
    "availability_zone_id",
    "instance_type",
    "spot_price",
    "price_to_on_demand",
    "advisor_band",
    "observed_interruptions",
    "score",
    "risk_band",
]
RISK_COLUMNS = {
    "window_start": "UTC start of the scoring window",
    "window_end": "UTC end of the scoring window (exclusive)",
    "price_to_on_demand": "ratio 0-1: spot price / on-demand price",
    "price_mean": "USD/h: mean spot price over the window",
    "changes_per_day": "price changes per day",
    "mean_abs_change_pct": "percent: mean absolute size of a price change",
    "spike_ratio_7d": "ratio: the 7-day peak price / the window mean",
    "hours_since_change": "hours since the last price change",
    "advisor_savings_pct": "percent: the Spot Advisor's savings over on-demand",
    "observed_interruptions": "interruption warnings received for the market in the window",
    "observed_rebalances": "rebalance recommendations received for the market's pool in the window (a model "
    "feature, weaker than a warning: never counted as an interruption)",
    "placement_score": "AWS spot placement score 1-10 of the market's AZ ID and type, the newest stored in the "
    "window (empty: AWS gave none, never invented)",
    "risk_band": ", ".join(RISK_BANDS[:-1]) + " or " + RISK_BANDS[-1],
    "scored_at": "UTC time of scoring",
}


class RiskScoreConfig(dg.Config):
    window_days: int = WINDOW_DAYS
    as_of: str | None = None  # ISO timestamp; default: now


@dg.asset(
    group_name="optimization",
    metadata=table_metadata(risk_rows.InterruptionRiskScore.__table__, RISK_COLUMNS),
    kinds={"pandas", "sql"},
    owners=["team:optimization"],
    deps=[
        dg.AssetKey("spot_price_history"),
        dg.AssetKey("spot_advisor"),
        dg.AssetKey("on_demand_prices"),
        dg.AssetKey("spot_interruption_events"),
    ],
    automation_condition=AFTER_NEW_DATA & upstream_present("spot_price_history", "on_demand_prices"),
    description=(
        "Interruption risk per spot market (region, AZ ID, instance type, product) over a trailing window: "
        "price/on-demand ratio, volatility, number and size of changes, 7-day spikes, time since the last "
        "change, the Spot Advisor band and savings, and observed interruption warnings; a score in [0, 1] and "
        "a band. Kept beside them as model features: rebalance recommendations in the pool (a weaker signal, "
        "never counted as a warning) and the newest stored spot placement score in the window (read from the "
        "spot_placement_scores table, which is downstream of the predictions, so not a dependency; empty where "
        "AWS gave none). Markets without price history or on-demand price are skipped with a reason."
    ),
)
def interruption_risk_scores(
    context: dg.AssetExecutionContext, config: RiskScoreConfig, app_db: AppDatabase
) -> dg.MaterializeResult:
    as_of = parse_as_of(config.as_of)
    prices, on_demand, advisor, events, placement = _read_window(app_db, as_of, config.window_days)
    try:
        result = score_markets(
            prices, on_demand, advisor, events, as_of=as_of, window_days=config.window_days, placement=placement
        )
    except ValidationError as exc:
        raise dg.Failure(description=f"interruption_risk_scores: {exc}", allow_retries=False) from None
    scores = result.scores.assign(scored_at=utcnow())
    columns = {c.name for c in risk_rows.InterruptionRiskScore.__table__.columns}
    with app_db.transaction() as session:
        risk_rows.replace_rows(
            session, risk_rows.InterruptionRiskScore, records(scores[[c for c in scores if c in columns]])
        )
    context.log.info(
        f"scored {len(scores)} markets over {result.window_start:%Y-%m-%d}..{result.window_end:%Y-%m-%d}, "
        f"skipped {len(result.skipped)}"
    )
    return dg.MaterializeResult(metadata=_scores_metadata(result, scores, prices, events))


def _read_window(app_db: AppDatabase, as_of, window_days: int) -> tuple:
    """(spot prices, on-demand prices, the Spot Advisor of the day, interruption events, placement scores) of the
    window; placement scores fetched before its end only."""
    end_day = window_end(as_of).date()
    start_day = end_day - timedelta(days=window_days)
    end = window_end(as_of)
    with app_db.connection() as conn:
        return (
            market_rows.read_prices(conn, start_day, end_day),
            market_rows.read_on_demand(conn),
            market_rows.read_advisor(conn, as_of.date()),
            event_rows.read_events(conn, end - timedelta(days=window_days), end),
            placement_rows.read_between(conn, end - timedelta(days=window_days), end),
        )


def _scores_metadata(result, scores, prices, events) -> dict:
    skipped_reasons = result.skipped["reason"].value_counts().to_dict() if len(result.skipped) else {}
    top = scores.sort_values("score", ascending=False)
    return {
        "dagster/row_count": len(scores),
        "window": f"{result.window_start:%Y-%m-%d} .. {result.window_end:%Y-%m-%d} (exclusive)",
        "price_rows": len(prices),
        "interruption_warnings_in_window": int((events["event_type"] == "spot_interruption_warning").sum())
        if len(events)
        else 0,
        "rebalance_recommendations_in_window": int((events["event_type"] == "rebalance_recommendation").sum())
        if len(events)
        else 0,
        "markets_with_placement_score": int(scores["placement_score"].notna().sum()) if len(scores) else 0,
        "skipped_markets": len(result.skipped),
        "skipped_reasons": dg.MetadataValue.json(skipped_reasons),
        "skipped_preview": preview_table(records(result.skipped), list(result.skipped.columns)),
        # One series per band, so the Plots tab shows how the risk mix moves.
        **{f"{band}_risk_markets": int((scores["risk_band"] == band).sum()) for band in RISK_BANDS},
        "preview": preview_table(records(top.round(4)), PREVIEW, descriptions=RISK_COLUMNS),
    }
