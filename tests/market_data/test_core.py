"""Pure market-data logic: spot price windows, Price List parsing, the Spot Advisor feed."""

from __future__ import annotations

import json
from datetime import timedelta

import boto3
import pytest
from botocore.stub import Stubber

from spot_pipelines.core import market_data as md
from spot_pipelines.core.errors import ValidationError
from tests.support.market_data import DAY, REGIONS, TYPES, price_list_item

START, END = md.day_window(DAY)


# ------------------------------------------------------------------ spot price history


def test_region_history_keeps_day_open_price_and_maps_az_ids(prices, ec2):
    client = ec2("eu-west-1")
    rows, missing, calls = md.region_history(client, "eu-west-1", DAY, TYPES, ["Linux/UNIX"])
    zones = {z["ZoneName"]: z["ZoneId"] for z in client.describe_availability_zones()["AvailabilityZones"]}
    assert missing == [] and calls >= 2
    assert (rows["day"] == DAY).all()
    assert rows["ts"].min() == START and rows["ts"].max() < END
    # One opening row per market, stamped 00:00, and every AZ name mapped to this account's AZ ID.
    opening = rows[rows["is_day_open"]]
    assert len(opening) == len(TYPES) * len(zones)
    assert (opening["ts"] == START).all()
    assert not rows[~rows["is_day_open"]]["ts"].eq(START).any()
    assert dict(zip(rows["availability_zone"], rows["availability_zone_id"])) == zones


def test_opening_row_is_the_last_change_before_the_day(prices, ec2):
    client = ec2("us-east-1")
    rows, _, _ = md.region_history(client, "us-east-1", DAY, ["m5.large"], ["Linux/UNIX"])
    before, _, _ = md.region_history(client, "us-east-1", DAY - timedelta(days=1), ["m5.large"], ["Linux/UNIX"])
    for az_id, group in rows[rows["is_day_open"]].groupby("availability_zone_id"):
        last_yesterday = before[before["availability_zone_id"] == az_id].sort_values("ts").iloc[-1]
        assert group["price"].iloc[0] == last_yesterday["price"]


def _stub_region(client, records, zones=(("us-east-1a", "use1-az4"),)):
    stub = Stubber(client)
    stub.add_response(
        "describe_availability_zones",
        {
            "AvailabilityZones": [
                {"ZoneName": n, "ZoneId": i, "RegionName": "us-east-1", "State": "available"} for n, i in zones
            ]
        },
    )
    stub.add_response("describe_spot_price_history", {"SpotPriceHistory": records})
    return stub


def _rec(ts, price, itype="m5.large", zone="us-east-1a"):
    return {
        "AvailabilityZone": zone,
        "InstanceType": itype,
        "ProductDescription": "Linux/UNIX",
        "SpotPrice": price,
        "Timestamp": ts,
    }


def test_change_at_midnight_wins_over_the_carried_in_price():
    client = boto3.client("ec2", region_name="us-east-1")
    with _stub_region(
        client,
        [
            _rec(START + timedelta(hours=5), "0.0400"),
            _rec(START, "0.0390"),
            _rec(START - timedelta(hours=3), "0.0350"),
            _rec(START - timedelta(days=2), "0.0300"),
        ],
    ):
        rows, _, _ = md.region_history(client, "us-east-1", DAY, ["m5.large"], ["Linux/UNIX"])
    assert sorted(zip(rows["ts"], rows["price"], rows["is_day_open"])) == [
        (START, 0.039, False),
        (START + timedelta(hours=5), 0.04, False),
    ]


def test_latest_only_asks_for_the_price_in_force_and_lands_it_in_the_day():
    """StartTime = EndTime = the moment; a price set before the day is the day-open row, one set during
    the day keeps its own timestamp (the same rows a full load of the day stores)."""
    at = START + timedelta(hours=9, minutes=5)
    client = boto3.client("ec2", region_name="us-east-1")
    stub = Stubber(client)
    stub.add_response(
        "describe_availability_zones",
        {"AvailabilityZones": [{"ZoneName": "us-east-1a", "ZoneId": "use1-az4", "RegionName": "us-east-1"}]},
    )
    stub.add_response(
        "describe_spot_price_history",
        {
            "SpotPriceHistory": [
                _rec(START - timedelta(days=3), "0.0300"),  # set three days ago, still in force
                _rec(START + timedelta(hours=7), "0.0410", itype="c5.large"),  # changed this morning
            ]
        },
        {"StartTime": at, "EndTime": at, "ProductDescriptions": ["Linux/UNIX"], "MaxResults": md.PAGE_SIZE},
    )
    with stub:
        rows, missing, _ = md.region_history(client, "us-east-1", DAY, None, ["Linux/UNIX"], at=at)
    stub.assert_no_pending_responses()
    assert missing == [] and (rows["day"] == DAY).all() and set(rows["availability_zone_id"]) == {"use1-az4"}
    assert sorted(zip(rows["instance_type"], rows["ts"], rows["price"], rows["is_day_open"])) == [
        ("c5.large", START + timedelta(hours=7), 0.041, False),
        ("m5.large", START, 0.03, True),
    ]


def test_latest_only_refuses_a_moment_outside_the_day():
    with pytest.raises(ValidationError) as err:
        md.latest_window(DAY, END)
    assert err.value.field == "latest_only" and str(DAY) in str(err.value)


def test_latest_only_against_the_emulator_is_the_last_change_before_the_moment(prices, ec2):
    client = ec2("us-east-1")
    full, _, _ = md.region_history(client, "us-east-1", DAY, TYPES, ["Linux/UNIX"])
    at = START + timedelta(hours=13, minutes=5)
    latest, _, calls = md.region_history(client, "us-east-1", DAY, TYPES, ["Linux/UNIX"], at=at)
    key = ["availability_zone_id", "instance_type", "product_description"]
    expected = full[full["ts"] <= at].sort_values("ts").groupby(key).tail(1)
    assert len(latest) == len(expected) == full.drop_duplicates(key).shape[0] and calls == 2
    merged = latest.merge(expected, on=[*key, "ts"], suffixes=("", "_full"))
    assert len(merged) == len(latest) and (merged["price"] == merged["price_full"]).all()
    assert (merged["is_day_open"] == merged["is_day_open_full"]).all()


def test_malformed_price_names_region_type_and_zone():
    client = boto3.client("ec2", region_name="us-east-1")
    with _stub_region(
        client, [_rec(START + timedelta(hours=1), "0.04"), _rec(START + timedelta(hours=2), "abc", itype="c5.large")]
    ):
        with pytest.raises(ValidationError) as err:
            md.region_history(client, "us-east-1", DAY, None, ["Linux/UNIX"])
    assert err.value.field == "SpotPrice"
    assert "'abc'" in str(err.value) and "us-east-1" in str(err.value) and "c5.large" in str(err.value)


def test_empty_response_for_a_type_is_reported():
    client = boto3.client("ec2", region_name="us-east-1")
    with _stub_region(client, [_rec(START + timedelta(hours=1), "0.04")]):
        rows, missing, _ = md.region_history(client, "us-east-1", DAY, ["m5.large", "p5.48xlarge"], ["Linux/UNIX"])
    assert missing == ["p5.48xlarge"] and len(rows) == 1


def test_regions_fail_or_skip_on_their_own(prices):
    """A throttling region (after retries) fails, a disabled one is skipped, the others are fetched."""

    def client_for(region):
        client = boto3.client("ec2", region_name=region)
        if region == "ap-south-1":
            stub = Stubber(client)
            stub.add_client_error(
                "describe_availability_zones", "RequestLimitExceeded", "Request limit exceeded.", http_status_code=503
            )
            stub.activate()
        elif region == "me-south-1":
            stub = Stubber(client)
            stub.add_client_error(
                "describe_availability_zones",
                "OptInRequired",
                "You are not subscribed to this service.",
                http_status_code=401,
            )
            stub.activate()
        return client

    fetch = md.fetch_spot_history(client_for, [*REGIONS, "ap-south-1", "me-south-1"], DAY, TYPES, ["Linux/UNIX"])
    assert sorted(fetch.fetched_regions) == sorted(REGIONS)
    assert "RequestLimitExceeded" in fetch.failed_regions["ap-south-1"]
    assert "me-south-1" in fetch.skipped_regions and "OptInRequired" in fetch.skipped_regions["me-south-1"]
    assert set(fetch.rows["region"]) == set(REGIONS)


def test_types_of_families():
    catalog = ["m7g.large", "m7g.xlarge", "m7gd.large", "c5.large"]
    assert md.types_of_families(["m7g"], catalog) == ["m7g.large", "m7g.xlarge"]


# ------------------------------------------------------------------ Price List


def test_price_list_item_parsing_and_missing_usd():
    assert md.parse_price_list_item(price_list_item("m5.large", "us-east-1", "0.0960000000"), "us-east-1") == (
        "m5.large",
        0.096,
    )
    with pytest.raises(ValidationError) as err:
        md.parse_price_list_item(price_list_item("m5.large", "cn-north-1", None), "cn-north-1")
    assert "pricePerUnit.USD" in err.value.field and "m5.large" in str(err.value) and "cn-north-1" in str(err.value)


def test_fetch_on_demand_pages_and_reports_bad_items():
    pricing = boto3.client("pricing", region_name="us-east-1")
    stub = Stubber(pricing)
    filters = md.price_list_filters("us-east-1")
    stub.add_response(
        "get_products",
        {
            "PriceList": [
                price_list_item("m5.large", "us-east-1", "0.0960000000"),
                price_list_item("c5.large", "us-east-1", None),
            ],
            "FormatVersion": "aws_v1",
            "NextToken": "page2",
        },
        {"ServiceCode": "AmazonEC2", "Filters": filters, "FormatVersion": "aws_v1", "MaxResults": 100},
    )
    stub.add_response(
        "get_products",
        {"PriceList": [price_list_item("r5.large", "us-east-1", "0.1260000000")], "FormatVersion": "aws_v1"},
        {
            "ServiceCode": "AmazonEC2",
            "Filters": filters,
            "FormatVersion": "aws_v1",
            "MaxResults": 100,
            "NextToken": "page2",
        },
    )
    with stub:
        fetch = md.fetch_on_demand(pricing, ["us-east-1"], as_of=END)
    assert {(r["instance_type"], r["usd_per_hour"]) for r in fetch.rows} == {("m5.large", 0.096), ("r5.large", 0.126)}
    assert fetch.api_calls == 2 and fetch.source == "price_list_api"
    assert len(fetch.problems) == 1 and "c5.large" in fetch.problems[0] and "us-east-1" in fetch.problems[0]
    assert {f["Field"] for f in filters} == {
        "regionCode",
        "operatingSystem",
        "tenancy",
        "preInstalledSw",
        "capacitystatus",
        "marketoption",
    }


def test_bundled_on_demand_says_why():
    fetch = md.bundled_on_demand("AccessDeniedException")
    assert fetch.source == "bundled_snapshot" and fetch.fallback_reason == "AccessDeniedException"
    assert len(fetch.rows) > 1000 and all(r["as_of"] == md.BUNDLED_ON_DEMAND_AS_OF for r in fetch.rows[:5])


# ------------------------------------------------------------------ Spot Advisor


def _feed(**changes) -> bytes:
    doc = json.loads(md.BUNDLED_ADVISOR.read_bytes())
    doc["spot_advisor"] = {
        "us-east-1": {
            "Linux": {"m5.large": {"s": 64, "r": 1}, "c6g.xlarge": {"s": 55, "r": 0}},
            "Windows": {"m5.large": {"s": 40, "r": 2}},
        }
    }
    doc.update(changes)
    return json.dumps(doc).encode()


def test_parse_advisor_rows_and_catalog():
    feed = md.parse_advisor(_feed(), DAY)
    assert {
        (r["operating_system"], r["instance_type"], r["interruption_band"], r["savings_pct"]) for r in feed.rows
    } == {("Linux", "m5.large", 1, 64), ("Linux", "c6g.xlarge", 0, 55), ("Windows", "m5.large", 2, 40)}
    catalog = {c["instance_type"]: c for c in feed.catalog}
    assert catalog["c6i.32xlarge"]["vcpu"] == 128 and catalog["c6i.32xlarge"]["architecture"] == "x86_64"
    assert catalog["r7g.medium"]["architecture"] == "arm64" and catalog["r7g.medium"]["memory_gib"] == 8.0


def test_unknown_band_is_skipped_and_reported():
    doc = json.loads(_feed())
    doc["spot_advisor"]["us-east-1"]["Linux"]["m5.large"]["r"] = 7
    feed = md.parse_advisor(json.dumps(doc).encode(), DAY)
    assert ("us-east-1", "Linux", "m5.large") in feed.skipped_keys
    assert any("us-east-1 Linux m5.large" in p and "r=7" in p for p in feed.problems)
    assert len(feed.rows) == 2


def test_truncated_feed_falls_back_to_the_bundled_snapshot_and_says_so():
    raw = _feed()
    with pytest.raises(ValidationError):
        md.parse_advisor(raw[: len(raw) // 2], DAY)
    feed = md.load_advisor(DAY, lambda: raw[: len(raw) // 2])
    assert feed.source == "bundled_snapshot" and "not a complete JSON document" in feed.fallback_reason
    assert len(feed.rows) > 20_000
    unreachable = md.load_advisor(DAY, lambda: (_ for _ in ()).throw(OSError("timed out")))
    assert unreachable.source == "bundled_snapshot" and "unreachable" in unreachable.fallback_reason


@pytest.mark.parametrize(
    "itype, arch",
    [
        ("m6g.large", "arm64"),
        ("c7gn.xlarge", "arm64"),
        ("r8g.medium", "arm64"),
        ("t4g.nano", "arm64"),
        ("a1.large", "arm64"),
        ("im4gn.large", "arm64"),
        ("is4gen.large", "arm64"),
        ("g5g.xlarge", "arm64"),
        ("mac2-m2.metal", "arm64"),
        ("mac1.metal", "x86_64"),
        ("g4dn.xlarge", "x86_64"),
        ("gr6.4xlarge", "x86_64"),
        ("m5.large", "x86_64"),
        ("c7i-flex.large", "x86_64"),
        ("u7i-12tb.224xlarge", "x86_64"),
    ],
)
def test_architecture_of(itype, arch):
    assert md.architecture_of(itype) == arch


def test_ingesting_the_emulator_gives_exactly_the_generators_day(prices, ec2):
    """Generator → emulator (AWS-shaped window) → region_history round-trips to the stored form."""
    from spot_pipelines.demo.synthetic_prices import default_markets, spot_history_day

    client = ec2("eu-west-1")
    zones = [(z["ZoneName"], z["ZoneId"]) for z in client.describe_availability_zones()["AvailabilityZones"]]
    rows, _, _ = md.region_history(client, "eu-west-1", DAY, TYPES, ["Linux/UNIX"])
    expected = spot_history_day(
        default_markets(regions=["eu-west-1"], instance_types=TYPES, seed=prices.seed, zones={"eu-west-1": zones}), DAY
    )
    key = ["availability_zone_id", "instance_type", "ts"]
    got = rows.sort_values(key).reset_index(drop=True)
    want = expected.astype(
        {
            c: object
            for c in ("region", "availability_zone", "availability_zone_id", "instance_type", "product_description")
        }
    ).sort_values(key)
    assert got[md.SPOT_PRICE_COLUMNS].values.tolist() == want[md.SPOT_PRICE_COLUMNS].values.tolist()
