"""Optional output members stay optional (issue 10 item 10): botocore's EC2 model marks no output
member as required (its own DescribeAvailabilityZones example has no ZoneId), and the Price List
items and the advisor feed are documents whose members can be absent too. A missing member fails
only what it belongs to (a region, an item, an entry), named, and nothing is made up."""

from __future__ import annotations

import json
from datetime import timedelta

import boto3
import pandas as pd
import pytest
from botocore.awsrequest import AWSResponse
from botocore.stub import Stubber

from spot_pipelines.assets.market_data import spot_price_history
from spot_pipelines.core import market_data as md
from spot_pipelines.core.clock import utcnow
from spot_pipelines.core.errors import ValidationError
from tests.market_data.test_assets import PRICE_CONFIG, _materialize, _stored_prices
from tests.support.market_data import DAY, REGIONS, TYPES, price_list_item, stubbed_apis

START, _ = md.day_window(DAY)


# ------------------------------------------------------------------ DescribeAvailabilityZones


class _Body:
    def __init__(self, body: bytes):
        self._body = body

    def stream(self, **_):
        yield self._body


def zones_without_ids(region: str, keep_ids: bool = False):
    """A before-send hook answering `region`'s DescribeAvailabilityZones with moto's zones as the
    EC2 XML protocol carries them, minus every `zoneId` (as in botocore's documented example)."""
    zones = boto3.client("ec2", region_name=region).describe_availability_zones(AllAvailabilityZones=True)[
        "AvailabilityZones"
    ]
    items = "".join(
        f"<item><zoneName>{z['ZoneName']}</zoneName><zoneState>available</zoneState>"
        f"<regionName>{region}</regionName>" + (f"<zoneId>{z['ZoneId']}</zoneId>" if keep_ids else "") + "</item>"
        for z in zones
    )
    body = (
        f'<DescribeAvailabilityZonesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">'
        f"<requestId>t</requestId><availabilityZoneInfo>{items}</availabilityZoneInfo>"
        f"</DescribeAvailabilityZonesResponse>"
    ).encode()

    def hook(request, event_name: str = "", **_):
        if region in request.url and event_name.endswith(".DescribeAvailabilityZones"):
            return AWSResponse(request.url, 200, {}, _Body(body))
        return None

    return hook


def _clients_with(hook):
    def client_for(region):
        client = boto3.client("ec2", region_name=region)
        client.meta.events.register("before-send.ec2", hook)
        return client

    return client_for


def test_zone_listing_without_zone_ids_fails_only_its_region(prices):
    client_for = _clients_with(zones_without_ids("eu-west-1"))
    listing = md.zone_ids(client_for("eu-west-1"))  # parsed through botocore, no KeyError
    assert "eu-west-1a" in listing and set(listing.values()) == {None}
    fetch = md.fetch_spot_history(client_for, REGIONS, DAY, TYPES, ["Linux/UNIX"])
    assert fetch.fetched_regions == ["us-east-1"] and set(fetch.rows["region"]) == {"us-east-1"}
    cause = fetch.failed_regions["eu-west-1"]
    assert cause.startswith("ZoneId:") and "eu-west-1a" in cause and "made-up" in cause
    assert fetch.bad_data_regions == {"eu-west-1"}  # retrying the same listing would not help
    # The same hook with the IDs kept answers like moto itself: the region is fetched.
    kept = md.fetch_spot_history(
        _clients_with(zones_without_ids("eu-west-1", keep_ids=True)), REGIONS, DAY, TYPES, ["Linux/UNIX"]
    )
    assert sorted(kept.fetched_regions) == sorted(REGIONS) and not kept.failed_regions


def test_asset_stores_the_other_regions_and_reports_the_zone_id_cause(prices, db_url):
    key = DAY.isoformat()
    assert _materialize(
        [spot_price_history], db_url, stubbed_apis(), run_config=PRICE_CONFIG, partition_key=key
    ).success
    before = _stored_prices(db_url)
    apis = stubbed_apis(ec2_for=_clients_with(zones_without_ids("eu-west-1")))
    result = _materialize(
        [spot_price_history], db_url, apis, run_config=PRICE_CONFIG, partition_key=key, raise_on_error=False
    )
    assert not result.success
    failure = result.failure_data_for_node("spot_price_history")
    failed = failure.user_failure_data.metadata["failed"].value
    assert list(failed) == [f"{key} eu-west-1"] and failed[f"{key} eu-west-1"].startswith("ZoneId:")
    assert not any(e.event_type_value == "STEP_UP_FOR_RETRY" for e in result.all_events)
    after = _stored_prices(db_url)
    # us-east-1 was stored again (same answer), eu-west-1 kept its rows: nothing lost, nothing invented.
    pd.testing.assert_frame_equal(after, before, check_exact=True)
    assert set(after["region"]) == set(REGIONS)


def _stubbed(records, zones=(("us-east-1a", "use1-az4"), ("us-east-1b", None)), listing=True):
    client = boto3.client("ec2", region_name="us-east-1")
    stub = Stubber(client)
    listed = [
        {"ZoneName": n, "RegionName": "us-east-1", "State": "available", **({"ZoneId": i} if i else {})}
        for n, i in zones
    ]
    stub.add_response("describe_availability_zones", {"AvailabilityZones": listed} if listing else {})
    stub.add_response("describe_spot_price_history", {"SpotPriceHistory": records})
    stub.activate()
    return client


def _rec(hours, price="0.0400", zone="us-east-1a", **members):
    rec = {
        "AvailabilityZone": zone,
        "InstanceType": "m5.large",
        "ProductDescription": "Linux/UNIX",
        "SpotPrice": price,
        "Timestamp": START + timedelta(hours=hours),
        **members,
    }
    return {k: v for k, v in rec.items() if v is not None}


def test_zone_without_id_and_without_prices_does_not_matter():
    rows, _, _ = md.region_history(_stubbed([_rec(1)]), "us-east-1", DAY, ["m5.large"], ["Linux/UNIX"])
    assert rows["availability_zone_id"].tolist() == ["use1-az4"]


def test_record_with_its_own_az_id_maps_a_zone_the_listing_left_without_one():
    client = _stubbed([_rec(1), _rec(2, zone="us-east-1b", AvailabilityZoneId="use1-az6")])
    rows, _, _ = md.region_history(client, "us-east-1", DAY, ["m5.large"], ["Linux/UNIX"])
    assert sorted(zip(rows["availability_zone"], rows["availability_zone_id"])) == [
        ("us-east-1a", "use1-az4"),
        ("us-east-1b", "use1-az6"),
    ]


def test_price_in_a_zone_without_any_id_fails_the_region():
    with pytest.raises(ValidationError) as err:
        md.region_history(_stubbed([_rec(1), _rec(2, zone="us-east-1b")]), "us-east-1", DAY, None, ["Linux/UNIX"])
    assert err.value.field == "ZoneId" and "['us-east-1b']" in str(err.value) and "us-east-1" in str(err.value)


def test_listing_without_availability_zones_member_fails_the_region_by_name():
    with pytest.raises(ValidationError) as err:
        md.region_history(_stubbed([_rec(1)], listing=False), "us-east-1", DAY, None, ["Linux/UNIX"])
    assert err.value.field == "AvailabilityZone" and "['us-east-1a']" in str(err.value)
    assert "not in its DescribeAvailabilityZones listing" in str(err.value)


# ------------------------------------------------------------------ DescribeSpotPriceHistory records


@pytest.mark.parametrize(
    "member, field",
    [
        ("InstanceType", "SpotPriceHistory.InstanceType"),
        ("ProductDescription", "SpotPriceHistory.ProductDescription"),
        ("Timestamp", "SpotPriceHistory.Timestamp"),
        ("AvailabilityZone", "SpotPriceHistory.AvailabilityZone"),
        ("SpotPrice", "SpotPrice"),
    ],
)
def test_record_without_a_member_fails_the_region_naming_it(member, field):
    # The listing holds us-east-1b without an ID: a record with neither zone name nor ID must not match it.
    client = _stubbed([_rec(1), _rec(2, **{member: None})])
    with pytest.raises(ValidationError) as err:
        md.region_history(client, "us-east-1", DAY, None, ["Linux/UNIX"])
    assert err.value.field == field and "us-east-1" in str(err.value)


def test_record_without_zone_name_but_with_a_known_az_id_is_placed():
    client = _stubbed([_rec(1), _rec(2, zone=None, AvailabilityZoneId="use1-az4", price="0.0410")])
    rows, _, _ = md.region_history(client, "us-east-1", DAY, ["m5.large"], ["Linux/UNIX"])
    assert sorted(zip(rows["availability_zone"], rows["availability_zone_id"], rows["price"])) == [
        ("us-east-1a", "use1-az4", 0.04),
        ("us-east-1a", "use1-az4", 0.041),
    ]


def test_page_without_spot_price_history_member_reports_the_types_as_unpriced():
    client = boto3.client("ec2", region_name="us-east-1")
    stub = Stubber(client)
    stub.add_response("describe_availability_zones", {"AvailabilityZones": []})
    stub.add_response("describe_spot_price_history", {})
    with stub:
        rows, missing, calls = md.region_history(client, "us-east-1", DAY, ["m5.large"], ["Linux/UNIX"])
    assert rows.empty and missing == ["m5.large"] and calls == 2


# ------------------------------------------------------------------ Price List items


def _item(mutate) -> str:
    doc = json.loads(price_list_item("m5.large", "us-east-1", "0.0960000000"))
    mutate(doc)
    return json.dumps(doc)


def _dimension(doc) -> dict:
    term = next(iter(doc["terms"]["OnDemand"].values()))
    return next(iter(term["priceDimensions"].values()))


@pytest.mark.parametrize(
    "mutate, field, words",
    [
        (lambda d: _dimension(d).pop("unit"), "terms.OnDemand.*.priceDimensions.*.pricePerUnit.USD", "unit Hrs"),
        (lambda d: d["product"]["attributes"].pop("instanceType"), "product.attributes.instanceType", "us-east-1"),
        (lambda d: d.pop("product"), "product.attributes.instanceType", "us-east-1"),
        (lambda d: d.pop("terms"), "terms.OnDemand.*.priceDimensions.*.pricePerUnit.USD", "m5.large"),
        (
            lambda d: _dimension(d).pop("pricePerUnit"),
            "terms.OnDemand.*.priceDimensions.*.pricePerUnit.USD",
            "m5.large",
        ),
    ],
)
def test_price_list_item_without_a_member_is_refused_by_name(mutate, field, words):
    with pytest.raises(ValidationError) as err:
        md.parse_price_list_item(_item(mutate), "us-east-1")
    assert err.value.field == field and words in str(err.value)


def test_get_products_page_without_price_list_member_prices_nothing():
    pricing = boto3.client("pricing", region_name="us-east-1")
    stub = Stubber(pricing)
    stub.add_response("get_products", {"FormatVersion": "aws_v1"})
    stub.add_response(
        "get_products",
        {
            "PriceList": [
                price_list_item("m5.large", "eu-west-1", "0.1070000000"),
                _item(lambda d: _dimension(d).pop("unit")),
            ]
        },
    )
    with stub:
        fetch = md.fetch_on_demand(pricing, ["us-east-1", "eu-west-1"], as_of=utcnow(), max_workers=1)
    # us-east-1 got an empty page; eu-west-1's item without a unit is skipped and said so.
    assert [(r["region"], r["instance_type"], r["usd_per_hour"]) for r in fetch.rows] == [
        ("eu-west-1", "m5.large", 0.107)
    ]
    assert len(fetch.problems) == 1 and "unit Hrs" in fetch.problems[0] and fetch.api_calls == 2


# ------------------------------------------------------------------ Spot Advisor feed


def _feed(entries: dict, **top) -> bytes:
    doc = {
        "ranges": [{"index": i, "label": str(i), "dots": i, "max": 5 * (i + 1)} for i in range(5)],
        "instance_types": {"m5.large": {"emr": True, "cores": 2, "ram_gb": 8.0}},
        "spot_advisor": {"us-east-1": {"Linux": entries}},
    }
    doc.update(top)
    return json.dumps({k: v for k, v in doc.items() if v is not None}).encode()


def test_advisor_entry_without_band_or_savings_is_skipped_by_name():
    feed = md.parse_advisor(
        _feed({"m5.large": {"s": 64, "r": 1}, "c5.large": {"s": 60}, "r5.large": {"r": 2}, "t3.large": "x"}), DAY
    )
    assert [r["instance_type"] for r in feed.rows] == ["m5.large"]
    problems = " | ".join(feed.problems)
    assert "c5.large: missing ['r']" in problems and "r5.large: missing ['s']" in problems
    assert "t3.large: entry 'x' is not an object" in problems
    assert sorted(k[2] for k in feed.skipped_keys) == ["c5.large", "r5.large", "t3.large"]


def test_advisor_feed_without_ranges_or_instance_types_still_parses():
    feed = md.parse_advisor(_feed({"m5.large": {"s": 64, "r": 4}}, ranges=None, instance_types=None), DAY)
    assert [(r["instance_type"], r["interruption_band"]) for r in feed.rows] == [("m5.large", 4)]
    assert feed.catalog == [] and feed.problems == []


def test_advisor_type_without_cores_or_ram_has_unknown_size_not_a_made_up_one():
    feed = md.parse_advisor(_feed({}, instance_types={"m5.large": {"emr": True}}), DAY)
    assert feed.catalog == [
        {
            "instance_type": "m5.large",
            "family": "m5",
            "vcpu": None,
            "memory_gib": None,
            "architecture": "x86_64",
            "source": "spot_advisor_feed",
        }
    ]
