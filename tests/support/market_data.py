"""Helpers of the market-data tests: real-shaped Price List items and stubbed market APIs."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from spot_pipelines.assets.market_data import MarketDataAPIs
from spot_pipelines.core.clock import utc_today

DAY = utc_today() - timedelta(days=3)  # a recent, complete UTC day
DAY_START = datetime(DAY.year, DAY.month, DAY.day, tzinfo=timezone.utc)
TYPES = ["m5.large", "c6g.xlarge", "r5.xlarge"]
REGIONS = ["us-east-1", "eu-west-1"]


def price_list_item(instance_type: str, region: str, usd: str | None, *, sku: str = "ABCDEF") -> str:
    """A GetProducts PriceList entry as AWS returns it (a JSON string), trimmed to what matters."""
    dimension = {
        "unit": "Hrs",
        "endRange": "Inf",
        "beginRange": "0",
        "appliesTo": [],
        "rateCode": f"{sku}.JRTCKXETXF.6YS6EN2CT7",
        "description": f"${usd} per On Demand Linux {instance_type} Instance Hour",
    }
    if usd is not None:
        dimension["pricePerUnit"] = {"USD": usd}
    else:
        dimension["pricePerUnit"] = {"CNY": "1.0000000000"}
    published = utc_today().replace(day=1)  # the month's price list, as AWS publishes it
    return json.dumps(
        {
            "product": {
                "productFamily": "Compute Instance",
                "sku": sku,
                "attributes": {
                    "instanceType": instance_type,
                    "regionCode": region,
                    "operatingSystem": "Linux",
                    "tenancy": "Shared",
                    "preInstalledSw": "NA",
                    "capacitystatus": "Used",
                    "marketoption": "OnDemand",
                    "vcpu": "2",
                    "servicecode": "AmazonEC2",
                    "location": "US East (N. Virginia)",
                },
            },
            "serviceCode": "AmazonEC2",
            "terms": {
                "OnDemand": {
                    f"{sku}.JRTCKXETXF": {
                        "priceDimensions": {f"{sku}.JRTCKXETXF.6YS6EN2CT7": dimension},
                        "sku": sku,
                        "effectiveDate": f"{published:%Y-%m-%d}T00:00:00Z",
                        "offerTermCode": "JRTCKXETXF",
                        "termAttributes": {},
                    }
                }
            },
            "version": f"{published:%Y%m%d}000000",
            "publicationDate": f"{published:%Y-%m-%d}T00:00:00Z",
        }
    )


def stubbed_apis(pricing=None, feed: bytes | Exception | None = None, ec2_for=None) -> MarketDataAPIs:
    """MarketDataAPIs whose Price List client, feed and (optionally) EC2 clients are the test's."""

    class TestAPIs(MarketDataAPIs):
        def pricing(self):
            if pricing is None:
                return super().pricing()
            return pricing

        def advisor_feed(self) -> bytes:
            if isinstance(feed, Exception):
                raise feed
            if feed is None:
                raise OSError("no network in tests")
            return feed

        def ec2(self, region: str = "us-east-1"):
            return ec2_for(region) if ec2_for else super().ec2(region)

    return TestAPIs()
