"""daily_market_data_schedule, the jobs, freshness, and the names other systems rely on."""

from __future__ import annotations

from datetime import datetime, time, timedelta, timezone

import boto3
import dagster as dg

from spot_pipelines.assets.market_data import market_daily_partitions
from spot_pipelines.core.clock import utc_today
from spot_pipelines.definitions import defs
from spot_pipelines.sensors.market_schedule import daily_market_data_schedule


def test_schedule_requests_yesterdays_partitions():
    today = utc_today()
    tick = datetime.combine(today, time(1, 30), tzinfo=timezone.utc)
    request = daily_market_data_schedule(dg.build_schedule_context(scheduled_execution_time=tick))
    yesterday = (today - timedelta(days=1)).isoformat()
    assert request.partition_key == yesterday and request.run_key == f"market-data-{yesterday}"
    assert daily_market_data_schedule.cron_schedule == "30 1 * * *"
    assert daily_market_data_schedule.execution_timezone == "UTC"


def test_definitions_hold_the_market_data_contract():
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert {"spot_price_history", "on_demand_prices", "spot_advisor"} <= keys
    assert defs.resolve_schedule_def("daily_market_data_schedule").job_name == "daily_market_data"
    job = defs.resolve_job_def("spot_price_history_job")
    assert job.partitions_def == market_daily_partitions
    for name in ("spot_price_history", "spot_advisor"):
        node = graph.get(dg.AssetKey(name))
        assert node.partitions_def == market_daily_partitions
        assert node.backfill_policy == dg.BackfillPolicy.single_run()
        assert node.freshness_policy is not None
    checks = {(k.asset_key.to_user_string(), k.name) for k in graph.asset_check_keys}
    assert {("spot_price_history", "prices_positive"), ("spot_price_history", "all_enabled_regions_present"),
            ("spot_price_history", "no_duplicate_prices"), ("on_demand_prices", "prices_positive"),
            ("on_demand_prices", "prices_recent"), ("spot_advisor", "bands_in_range")} <= checks


def test_emulator_pages_and_filters(prices):
    ec2 = boto3.client("ec2", region_name="us-east-1")
    # A week: a day alone may hold fewer price changes than one page.
    start = datetime.combine(utc_today() - timedelta(days=8), time(), tzinfo=timezone.utc)
    kwargs = {"StartTime": start, "EndTime": start + timedelta(days=7),
              "InstanceTypes": ["m5.large"], "ProductDescriptions": ["Linux/UNIX"],
              "Filters": [{"Name": "availability-zone", "Values": ["us-east-1a"]}]}
    pages = list(ec2.get_paginator("describe_spot_price_history").paginate(**kwargs, PaginationConfig={"PageSize": 5}))
    records = [r for p in pages for r in p["SpotPriceHistory"]]
    assert len(pages) > 1 and len(records) > 5
    assert {r["AvailabilityZone"] for r in records} == {"us-east-1a"} and {r["InstanceType"] for r in records} == {"m5.large"}
    assert sum(r["Timestamp"] < kwargs["StartTime"] for r in records) == 1  # the carried-in price
    again = [r for p in ec2.get_paginator("describe_spot_price_history").paginate(**kwargs) for r in p["SpotPriceHistory"]]
    assert [r["SpotPrice"] for r in again] == [r["SpotPrice"] for r in records]
