"""Partition definitions shared by assets, sensors and schedules."""

from datetime import date, timedelta

import dagster as dg

from spot_pipelines.core.clock import utc_today
from spot_pipelines.core.errors import ValidationError
from spot_pipelines.settings import settings

# Dynamic partition names are global across code locations, hence the project prefix.
AWS_ACCOUNTS_PARTITION = "spot_pipelines_aws_accounts"
aws_accounts_partitions = dg.DynamicPartitionsDefinition(name=AWS_ACCOUNTS_PARTITION)


def daily_account_runs(
    context: dg.ScheduleEvaluationContext, names: list[str], *, run_key_prefix: str, trigger: str
) -> list[dg.RunRequest]:
    """One run per named account that has its partition, keyed by account and scheduled day (so a
    schedule's retried tick never launches a second run for the same day)."""
    day = context.scheduled_execution_time.strftime("%Y-%m-%d")
    existing = set(context.instance.get_dynamic_partitions(AWS_ACCOUNTS_PARTITION))
    return [
        dg.RunRequest(
            run_key=f"{run_key_prefix}-{name}-{day}", partition_key=name, tags={"spot_pipelines/trigger": trigger}
        )
        for name in names
        if name in existing
    ]


HISTORY_DAYS = 90  # how far back DescribeSpotPriceHistory serves


def market_daily_partitions_def(start: date) -> dg.DailyPartitionsDefinition:
    # end_offset=1: today's partition exists while the day runs, so the hourly latest-only refresh of
    # spot_price_history can fill it; it is complete once the nightly load of that day has run.
    return dg.DailyPartitionsDefinition(start_date=start.isoformat(), timezone="UTC", end_offset=1)


# A fixed start (SPOT_PRICE_HISTORY_START, else the product's first day): the set never moves with the clock,
# so old partitions keep their status; what AWS no longer serves is refused at run time (`check_fetchable`).
# The set ends with today's (still open) day.
market_daily_partitions = market_daily_partitions_def(settings().price_history_start)


def check_fetchable(partition_keys: list[str], today: date | None = None) -> None:
    """Refuse days older than DescribeSpotPriceHistory serves, naming the first such partition."""
    oldest = (today or utc_today()) - timedelta(days=HISTORY_DAYS)
    too_old = sorted(key for key in partition_keys if date.fromisoformat(key) < oldest)
    if too_old:
        raise ValidationError(
            "partition",
            f"{too_old[0]} is older than the {HISTORY_DAYS} days AWS serves spot "
            f"price history for (oldest fetchable: {oldest.isoformat()}); "
            f"{len(too_old)} such day(s) asked for",
        )
