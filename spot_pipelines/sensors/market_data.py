"""daily_market_data_schedule: yesterday's spot prices and Spot Advisor, and fresh on-demand prices;
hourly_spot_price_schedule: today's spot prices, the price in force per market, every hour."""

from datetime import timedelta, timezone

import dagster as dg

from spot_pipelines.assets.market_data import daily_market_data_job, spot_price_history_job

HOURLY_PRICE_CRON = "5 * * * *"  # a few minutes past each hour (UTC)
LATEST_ONLY_CONFIG = {"ops": {"spot_price_history": {"config": {"latest_only": True}}}}


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


@dg.schedule(
    name="hourly_spot_price_schedule",
    cron_schedule=HOURLY_PRICE_CRON,
    execution_timezone="UTC",
    job=spot_price_history_job,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Every hour at :05 UTC: today's spot_price_history partition in latest_only mode (the price in "
    "force per market, merged into the day); the nightly load replaces the day with its complete history.",
)
def hourly_spot_price_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    tick = context.scheduled_execution_time.astimezone(timezone.utc)
    today = tick.date().isoformat()
    return dg.RunRequest(
        run_key=f"spot-prices-latest-{tick:%Y-%m-%dT%H}",
        partition_key=today,
        run_config=LATEST_ONLY_CONFIG,
        tags={"spot_pipelines/trigger": "hourly_spot_price_schedule"},
    )
