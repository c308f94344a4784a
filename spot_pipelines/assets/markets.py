"""spot_market_analytics: p50/p95 price, volatility and the share of cheap hours per market over 7/30/90 days."""

import dagster as dg

from spot_pipelines.assets import core_config
from spot_pipelines.core.clock import utcnow
from spot_pipelines.core.errors import ValidationError
from spot_pipelines.core.markets import AnalyticsConfig, price_analytics, window_start
from spot_pipelines.core.reporting import records
from spot_pipelines.db import market_data as market_rows
from spot_pipelines.resources.app_database import AppDatabase

COLUMNS = {
    "region": ("string", ""),
    "availability_zone_id": ("string", ""),
    "instance_type": ("string", ""),
    "product_description": ("string", ""),
    "window_days": ("int", "trailing whole days up to today's UTC midnight"),
    "hours": ("int", "hours of the window with a price in force"),
    "p50": ("float", "USD/h: median hourly spot price"),
    "p95": ("float", "USD/h: 95th percentile hourly spot price"),
    "volatility": ("float", "standard deviation of hourly log price changes"),
    "on_demand": ("float", "USD/h: list on-demand price (empty: none known)"),
    "share_below": ("float", "0-1: share of hours below below_pct % of on-demand (empty: no on-demand price)"),
}
SCHEMA = dg.TableSchema(columns=[dg.TableColumn(n, k, description=d or None) for n, (k, d) in COLUMNS.items()])


class AnalyticsRunConfig(dg.Config):
    below_pct: float = AnalyticsConfig.below_pct


@dg.asset(
    group_name="market_data",
    kinds={"pandas"},
    owners=["team:optimization"],
    deps=[dg.AssetKey("spot_price_history"), dg.AssetKey("on_demand_prices")],
    metadata={"dagster/column_schema": SCHEMA},
    description=(
        "Per spot market and trailing window (7, 30, 90 days): p50 and p95 hourly price, volatility (std of hourly "
        "log changes) and the share of hours below below_pct % of on-demand, from spot_price_history. Also on the "
        "command line: `spot-pipelines markets show TYPE --region R`."
    ),
)
def spot_market_analytics(config: AnalyticsRunConfig, app_db: AppDatabase) -> dg.MaterializeResult:
    try:
        ac = core_config(AnalyticsConfig, config)
    except ValidationError as exc:
        raise dg.Failure(description=f"spot_market_analytics config: {exc}", allow_retries=False) from None
    now = utcnow()
    with app_db.connection() as conn:
        prices = market_rows.read_prices(conn, window_start(now, ac).date(), now.date())
        on_demand = market_rows.read_on_demand(conn)
    table = price_analytics(prices, on_demand, as_of=now, config=ac).round(6)
    rows = records(table)
    month = [r for r in rows if r["window_days"] == 30]
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(table),
            "markets": int(table[list(COLUMNS)[:4]].drop_duplicates().shape[0]) if len(table) else 0,
            "below_threshold": f"{ac.below_pct:g}% of on-demand",  # a setting, not a series to plot
            "no_on_demand_price": int(table["on_demand"].isna().sum()) if len(table) else 0,
            "cheapest_30d": dg.MetadataValue.table(
                records=[dg.TableRecord(r) for r in sorted(month, key=lambda r: r["p50"])[:20]], schema=SCHEMA
            ),
            "preview": dg.MetadataValue.table(records=[dg.TableRecord(r) for r in rows[:20]], schema=SCHEMA),
        }
    )
