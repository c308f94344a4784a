"""The market-data assets through `dg.materialize`: moto with emulated prices, a stubbed Price List,
feed bytes; on SQLite and the real Postgres."""

from __future__ import annotations

import json
from datetime import timedelta

import boto3
import dagster as dg
import pandas as pd
from botocore.stub import Stubber
from sqlalchemy import select

from spot_pipelines.assets.market_data import on_demand_prices, spot_advisor, spot_price_history
from spot_pipelines.core import market_data as md
from spot_pipelines.core.clock import utc_today
from spot_pipelines.db import market_data as market
from spot_pipelines.db.engine import get_engine, session_factory
from spot_pipelines.resources.app_database import AppDatabase
from spot_pipelines.resources.credential_vault import aws_config
from tests.support.aws_fakes import fail_region
from tests.support.market_data import REGIONS, TYPES, price_list_item, stubbed_apis

TODAY = utc_today()
DAY1, DAY2 = TODAY - timedelta(days=3), TODAY - timedelta(days=2)
PRICE_CONFIG = {"ops": {"spot_price_history": {"config": {"regions": REGIONS}}}}


def _range_tags(start, end) -> dict[str, str]:
    return {
        "dagster/asset_partition_range_start": start.isoformat(),
        "dagster/asset_partition_range_end": end.isoformat(),
    }


def _stored_prices(url: str) -> pd.DataFrame:
    t = market.SpotPrice.__table__
    with get_engine(url).connect() as conn:
        rows = conn.execute(select(t).order_by(t.c.availability_zone_id, t.c.instance_type, t.c.ts)).mappings().all()
    return pd.DataFrame(rows, columns=md.SPOT_PRICE_COLUMNS)


def _materialize(assets, db_url, apis, **kwargs):
    return dg.materialize(
        assets,
        resources={"app_db": AppDatabase(url=db_url), "market_apis": apis},
        instance=kwargs.pop("instance", None) or dg.DagsterInstance.ephemeral(),
        **kwargs,
    )


def _checks(result) -> dict[str, bool]:
    return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}


def test_partition_range_is_one_run_and_rerunning_leaves_the_same_rows(prices, db_url):
    instance = dg.DagsterInstance.ephemeral()
    result = _materialize(
        [spot_price_history],
        db_url,
        stubbed_apis(),
        instance=instance,
        run_config=PRICE_CONFIG,
        tags=_range_tags(DAY1, DAY2),
    )
    assert result.success
    mats = result.asset_materializations_for_node("spot_price_history")
    assert sorted(m.partition for m in mats) == [DAY1.isoformat(), DAY2.isoformat()]
    assert _checks(result) == {
        "prices_positive": True,
        "all_enabled_regions_present": True,
        "no_duplicate_prices": True,
    }
    first = _stored_prices(db_url)
    assert set(first["day"]) == {DAY1, DAY2} and set(first["region"]) == set(REGIONS)
    assert set(first["instance_type"]) == set(TYPES) and first["availability_zone_id"].notna().all()
    opening = first[first["is_day_open"]]
    assert len(opening) == 2 * len(first.drop_duplicates(["availability_zone_id", "instance_type"]))
    metadata = mats[0].metadata
    assert metadata["dagster/row_count"].value == len(first)

    # A single day again, and the whole range again: exactly the same rows.
    assert _materialize(
        [spot_price_history],
        db_url,
        stubbed_apis(),
        instance=instance,
        run_config=PRICE_CONFIG,
        partition_key=DAY2.isoformat(),
    ).success
    assert _materialize(
        [spot_price_history],
        db_url,
        stubbed_apis(),
        instance=instance,
        run_config=PRICE_CONFIG,
        tags=_range_tags(DAY1, DAY2),
    ).success
    pd.testing.assert_frame_equal(first, _stored_prices(db_url))


def test_throttled_region_fails_the_run_but_keeps_its_stored_rows(prices, sqlite_url):
    assert _materialize(
        [spot_price_history], sqlite_url, stubbed_apis(), run_config=PRICE_CONFIG, partition_key=DAY1.isoformat()
    ).success
    before = _stored_prices(sqlite_url)

    # Throttled at the HTTP layer, so botocore's own retries run first (2 attempts here).
    throttle = fail_region("RequestLimitExceeded", "eu-west-1", "DescribeSpotPriceHistory", status=503)

    def ec2_for(region):
        client = boto3.client("ec2", region_name=region, config=aws_config(max_attempts=2))
        client.meta.events.register("before-send.ec2", throttle)
        return client

    fail_fast = {"ops": {"spot_price_history": {"config": {"regions": REGIONS, "retry_failed_regions": False}}}}
    result = _materialize(
        [spot_price_history],
        sqlite_url,
        stubbed_apis(ec2_for=ec2_for),
        run_config=fail_fast,
        partition_key=DAY1.isoformat(),
        raise_on_error=False,
    )
    assert not result.success
    failure = result.failure_data_for_node("spot_price_history")
    assert "eu-west-1" in failure.error.message and "RequestLimitExceeded" in failure.error.message
    after = _stored_prices(sqlite_url)
    pd.testing.assert_frame_equal(
        after[after["region"] == "eu-west-1"].reset_index(drop=True),
        before[before["region"] == "eu-west-1"].reset_index(drop=True),
    )
    # us-east-1 answered, so it was replaced with the same (deterministic) rows.
    pd.testing.assert_frame_equal(after, before)


def test_region_not_enabled_is_skipped_and_reported(prices, sqlite_url):
    config = {"ops": {"spot_price_history": {"config": {"regions": ["us-east-1", "ap-east-1"]}}}}
    result = _materialize(
        [spot_price_history], sqlite_url, stubbed_apis(), run_config=config, partition_key=DAY1.isoformat()
    )
    assert result.success
    metadata = result.asset_materializations_for_node("spot_price_history")[0].metadata
    assert "ap-east-1" in metadata["skipped_regions"].value
    assert metadata["regions"].value == ["us-east-1"]


def test_inventory_types_plus_families_and_missing_types(prices, sqlite_url):
    config = {
        "ops": {
            "spot_price_history": {
                "config": {"regions": ["us-east-1"], "all_instance_types": False, "instance_families": ["m5"]}
            }
        }
    }
    result = _materialize(
        [spot_price_history], sqlite_url, stubbed_apis(), run_config=config, partition_key=DAY1.isoformat()
    )
    assert result.success
    stored = _stored_prices(sqlite_url)
    # The fleet is empty here: only the m5 family is asked for, and AWS answers for those.
    assert "m5.large" in set(stored["instance_type"])
    assert all(t.startswith("m5.") for t in stored["instance_type"])
    metadata = result.asset_materializations_for_node("spot_price_history")[0].metadata
    assert isinstance(metadata["instance_types"].value, int)


def _pricing_stub(items_by_region: dict[str, list[str]]):
    pricing = boto3.client("pricing", region_name="us-east-1")
    stub = Stubber(pricing)
    for region, items in items_by_region.items():
        stub.add_response(
            "get_products",
            {"PriceList": items, "FormatVersion": "aws_v1"},
            {
                "ServiceCode": "AmazonEC2",
                "Filters": md.price_list_filters(region),
                "FormatVersion": "aws_v1",
                "MaxResults": 100,
            },
        )
    stub.activate()
    return pricing


def test_on_demand_prices_from_the_price_list(aws, sqlite_url):
    pricing = _pricing_stub(
        {
            "us-east-1": [
                price_list_item("m5.large", "us-east-1", "0.0960000000"),
                price_list_item("c5.large", "us-east-1", None),
            ]
        }
    )
    config = {"ops": {"on_demand_prices": {"config": {"regions": ["us-east-1"]}}}}
    result = _materialize([on_demand_prices], sqlite_url, stubbed_apis(pricing=pricing), run_config=config)
    assert result.success
    metadata = result.asset_materializations_for_node("on_demand_prices")[0].metadata
    assert metadata["source"].value == "price_list_api" and metadata["fallback_reason"].value == ""
    assert any("c5.large" in p for p in metadata["skipped_items"].value)
    assert _checks(result) == {"prices_positive": True, "prices_recent": True}
    assert _on_demand(sqlite_url) == {("us-east-1", "m5.large"): 0.096}


def test_on_demand_falls_back_to_the_snapshot_and_keeps_newer_prices(aws, sqlite_url):
    good = _pricing_stub({"us-east-1": [price_list_item("m5.large", "us-east-1", "0.0960000000")]})
    config = {"ops": {"on_demand_prices": {"config": {"regions": ["us-east-1"]}}}}
    assert _materialize([on_demand_prices], sqlite_url, stubbed_apis(pricing=good), run_config=config).success

    denied = boto3.client("pricing", region_name="us-east-1")
    stub = Stubber(denied)
    stub.add_client_error(
        "get_products", "AccessDeniedException", "not authorized to perform pricing:GetProducts", http_status_code=400
    )
    stub.activate()
    result = _materialize([on_demand_prices], sqlite_url, stubbed_apis(pricing=denied), run_config=config)
    assert result.success
    metadata = result.asset_materializations_for_node("on_demand_prices")[0].metadata
    assert metadata["source"].value == "bundled_snapshot"
    assert "AccessDeniedException" in metadata["fallback_reason"].value
    # The snapshot is months old: the (non-blocking) age check says so.
    assert _checks(result) == {"prices_positive": True, "prices_recent": False}
    prices = _on_demand(sqlite_url)
    with session_factory(sqlite_url)() as s:
        m5 = s.get(market.OnDemandPrice, ("us-east-1", "m5.large", "Linux"))
    assert len(prices) > 1000 and prices[("us-east-1", "m5.large")] == 0.096 and m5.source == "price_list_api"


def _on_demand(url: str) -> dict[tuple[str, str], float]:
    """Stored Linux prices, (region, instance type) → USD per hour, as the optimizer reads them."""
    with get_engine(url).connect() as conn:
        frame = market.read_on_demand(conn)
    linux = frame[frame["operating_system"] == "Linux"]
    return dict(zip(zip(linux["region"], linux["instance_type"]), linux["usd_per_hour"]))


def _feed(**entries) -> bytes:
    doc = json.loads(md.BUNDLED_ADVISOR.read_bytes())
    doc["spot_advisor"] = {
        "us-east-1": {"Linux": {"m5.large": {"s": 64, "r": 1}, "c6g.xlarge": {"s": 55, "r": 0}, **entries}}
    }
    return json.dumps(doc).encode()


def _advisor_rows(url) -> set[tuple]:
    with session_factory(url)() as s:
        return {
            (r.day, r.instance_type, r.interruption_band, r.source) for r in s.scalars(select(market.SpotAdvisorEntry))
        }


def test_spot_advisor_from_the_feed_then_bad_feeds_lose_nothing(sqlite_url):
    key = DAY2.isoformat()
    result = _materialize([spot_advisor], sqlite_url, stubbed_apis(feed=_feed()), partition_key=key)
    assert result.success and _checks(result) == {"bands_in_range": True}
    good = _advisor_rows(sqlite_url)
    assert good == {(DAY2, "m5.large", 1, "feed"), (DAY2, "c6g.xlarge", 0, "feed")}
    with session_factory(sqlite_url)() as s:
        assert s.get(market.InstanceTypeSpec, "c6g.xlarge").architecture == "arm64"

    # Unknown band for one entry: reported with region and type, its stored row survives.
    bad_band = _feed(**{"m5.large": {"s": 60, "r": 9}})
    result = _materialize([spot_advisor], sqlite_url, stubbed_apis(feed=bad_band), partition_key=key)
    metadata = result.asset_materializations_for_node("spot_advisor")[0].metadata
    assert any("us-east-1 Linux m5.large" in p for p in metadata["skipped_entries"].value)
    assert _advisor_rows(sqlite_url) == good

    # A truncated feed: the bundled snapshot is used, said so, and does not replace the day from the feed.
    truncated = _feed()[:5000]
    result = _materialize([spot_advisor], sqlite_url, stubbed_apis(feed=truncated), partition_key=key)
    metadata = result.asset_materializations_for_node("spot_advisor")[0].metadata
    assert metadata["source"].value == "bundled_snapshot"
    assert "not a complete JSON document" in metadata["fallback_reason"].value
    assert "live feed" in metadata["not_written"].value[key]
    assert _advisor_rows(sqlite_url) == good


def test_spot_advisor_unreachable_feed_stores_the_snapshot_for_a_new_day(sqlite_url):
    result = _materialize(
        [spot_advisor], sqlite_url, stubbed_apis(feed=OSError("timed out")), partition_key=DAY1.isoformat()
    )
    assert result.success
    metadata = result.asset_materializations_for_node("spot_advisor")[0].metadata
    assert metadata["source"].value == "bundled_snapshot" and "unreachable" in metadata["fallback_reason"].value
    assert metadata["dagster/row_count"].value > 20_000


def test_spot_advisor_refuses_days_the_feed_cannot_show(sqlite_url):
    old = (TODAY - timedelta(days=30)).isoformat()
    result = _materialize(
        [spot_advisor], sqlite_url, stubbed_apis(feed=_feed()), partition_key=old, raise_on_error=False
    )
    assert not result.success
    assert "trailing month" in result.failure_data_for_node("spot_advisor").error.message
    assert _advisor_rows(sqlite_url) == set()


def test_blocking_check_fails_on_a_zero_price(prices, sqlite_url, monkeypatch):
    real = md.region_history

    def zero_first(*args, **kwargs):
        rows, missing, calls = real(*args, **kwargs)
        rows.loc[rows.index[0], "price"] = 0.0
        return rows, missing, calls

    monkeypatch.setattr(md, "region_history", zero_first)
    result = _materialize(
        [spot_price_history],
        sqlite_url,
        stubbed_apis(),
        run_config=PRICE_CONFIG,
        partition_key=DAY1.isoformat(),
        raise_on_error=False,
    )
    # A failed blocking check fails the step, so nothing downstream in the run consumes the prices.
    assert not result.success and _checks(result)["prices_positive"] is False
    spec = next(s for s in spot_price_history.check_specs if s.name == "prices_positive")
    assert spec.blocking


def test_malformed_price_fails_its_region_without_retry_and_keeps_stored_rows(prices, sqlite_url, monkeypatch):
    assert _materialize(
        [spot_price_history], sqlite_url, stubbed_apis(), run_config=PRICE_CONFIG, partition_key=DAY1.isoformat()
    ).success
    before = _stored_prices(sqlite_url)
    real = prices.records

    def with_bad_price(region, *args, **kwargs):
        frame = real(region, *args, **kwargs)
        if region == "eu-west-1" and len(frame):
            frame.loc[frame.index[len(frame) // 2], "price"] = float("nan")  # answered as SpotPrice "nan"
        return frame

    monkeypatch.setattr(prices, "records", with_bad_price)
    result = _materialize(
        [spot_price_history],
        sqlite_url,
        stubbed_apis(),
        run_config=PRICE_CONFIG,
        partition_key=DAY1.isoformat(),
        raise_on_error=False,
    )
    assert not result.success
    message = result.failure_data_for_node("spot_price_history").error.message
    assert "eu-west-1" in message and "SpotPrice" in message and "'nan'" in message
    # Bad data is not retried (the RetryPolicy would only fetch the same page again).
    assert not any(e.event_type_value == "STEP_UP_FOR_RETRY" for e in result.all_events)
    pd.testing.assert_frame_equal(before, _stored_prices(sqlite_url))
