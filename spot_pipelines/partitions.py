"""Partition definitions shared by assets, sensors and schedules."""

import os
from datetime import date, timedelta

import dagster as dg

from spot_pipelines.core.clock import utc_today
from spot_pipelines.core.errors import ValidationError

# Dynamic partition names are global across code locations, hence the project prefix.
AWS_ACCOUNTS_PARTITION = "spot_pipelines_aws_accounts"
aws_accounts_partitions = dg.DynamicPartitionsDefinition(name=AWS_ACCOUNTS_PARTITION)

START_DATE_ENV = "SPOT_PRICE_HISTORY_START"
HISTORY_DAYS = 90  # how far back DescribeSpotPriceHistory serves


def market_data_start_date() -> str:
    """`SPOT_PRICE_HISTORY_START` (YYYY-MM-DD), else 90 days back: what AWS still serves."""
    configured = os.environ.get(START_DATE_ENV)
    if configured:
        try:
            return date.fromisoformat(configured).isoformat()
        except ValueError:
            raise ValidationError(START_DATE_ENV, f"{configured!r} is not a YYYY-MM-DD date") from None
    return (utc_today() - timedelta(days=HISTORY_DAYS)).isoformat()


market_daily_partitions = dg.DailyPartitionsDefinition(start_date=market_data_start_date(), timezone="UTC")
