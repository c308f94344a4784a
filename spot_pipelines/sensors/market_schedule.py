"""daily_market_data_schedule: yesterday's spot prices and Spot Advisor, and fresh on-demand prices.

Plus the job operators backfill with: `dagster job backfill -j spot_price_history_job …`.
"""

from datetime import timedelta

import dagster as dg

from spot_pipelines.assets.market_data import (
    market_daily_partitions,
    on_demand_prices,
    spot_advisor,
    spot_price_history,
)

spot_price_history_job = dg.define_asset_job(
    "spot_price_history_job", selection=[spot_price_history], partitions_def=market_daily_partitions,
    description="Spot price history by daily partition; backfill a range with "
                "`dagster job backfill -j spot_price_history_job --from A --to B` (runs need the daemon).",
)
daily_market_data_job = dg.define_asset_job(
    "daily_market_data", selection=[spot_price_history, spot_advisor, on_demand_prices],
    partitions_def=market_daily_partitions,
    description="One day of spot price history and the Spot Advisor snapshot, and on-demand prices.",
)


@dg.schedule(
    name="daily_market_data_schedule",
    cron_schedule="30 1 * * *",
    execution_timezone="UTC",
    job=daily_market_data_job,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="01:30 UTC: yesterday's spot_price_history and spot_advisor partitions, and on_demand_prices.",
)
def daily_market_data_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    yesterday = (context.scheduled_execution_time - timedelta(days=1)).date().isoformat()
    return dg.RunRequest(run_key=f"market-data-{yesterday}", partition_key=yesterday,
                         tags={"spot_pipelines/trigger": "daily_market_data_schedule"})


market_data_jobs = [spot_price_history_job, daily_market_data_job]
