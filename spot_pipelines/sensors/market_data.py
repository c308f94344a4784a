"""daily_market_data_schedule: yesterday's spot prices and Spot Advisor, and fresh on-demand prices."""

from datetime import timedelta

import dagster as dg

from spot_pipelines.assets.market_data import daily_market_data_job


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
    return dg.RunRequest(
        run_key=f"market-data-{yesterday}",
        partition_key=yesterday,
        tags={"spot_pipelines/trigger": "daily_market_data_schedule"},
    )
