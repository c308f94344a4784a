"""daily_market_data_schedule and the price emulator it is tested against."""

from __future__ import annotations

from datetime import datetime, time, timedelta, timezone

import boto3
import dagster as dg

from spot_pipelines.core.clock import utc_today
from spot_pipelines.sensors.market_data import daily_market_data_schedule


def test_schedule_requests_yesterdays_partitions():
    today = utc_today()
    tick = datetime.combine(today, time(1, 30), tzinfo=timezone.utc)
    request = daily_market_data_schedule(dg.build_schedule_context(scheduled_execution_time=tick))
    yesterday = (today - timedelta(days=1)).isoformat()
    assert request.partition_key == yesterday and request.run_key == f"market-data-{yesterday}"
    assert daily_market_data_schedule.cron_schedule == "30 1 * * *"
    assert daily_market_data_schedule.execution_timezone == "UTC"


def test_emulator_pages_and_filters(prices):
    ec2 = boto3.client("ec2", region_name="us-east-1")
    # A week: a day alone may hold fewer price changes than one page.
    start = datetime.combine(utc_today() - timedelta(days=8), time(), tzinfo=timezone.utc)
    kwargs = {
        "StartTime": start,
        "EndTime": start + timedelta(days=7),
        "InstanceTypes": ["m5.large"],
        "ProductDescriptions": ["Linux/UNIX"],
        "Filters": [{"Name": "availability-zone", "Values": ["us-east-1a"]}],
    }
    pages = list(ec2.get_paginator("describe_spot_price_history").paginate(**kwargs, PaginationConfig={"PageSize": 5}))
    records = [r for p in pages for r in p["SpotPriceHistory"]]
    assert len(pages) > 1 and len(records) > 5
    assert {r["AvailabilityZone"] for r in records} == {"us-east-1a"} and {r["InstanceType"] for r in records} == {
        "m5.large"
    }
    assert sum(r["Timestamp"] < kwargs["StartTime"] for r in records) == 1  # the carried-in price
    again = [
        r for p in ec2.get_paginator("describe_spot_price_history").paginate(**kwargs) for r in p["SpotPriceHistory"]
    ]
    assert [r["SpotPrice"] for r in again] == [r["SpotPrice"] for r in records]
