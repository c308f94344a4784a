"""A local stand-in for the commitment APIs moto lacks (EC2 DescribeReservedInstances, the Savings Plans service,
Cost Explorer utilization), for the demo and the tests that run the asset against the emulator.

Within `emulate_commitments()`, every botocore client created in this process answers those five operations from
a fixed set shaped like AWS's responses (timestamps, strings for amounts, rate properties), through the client's
real call path (parameters validated, events emitted) up to the HTTP request, which a `before-call` handler
replaces. The payments-prod account (the role-based one) holds one regional RI for its c5.2xlarge and a small
Compute Savings Plan; every other identity holds none."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import timedelta
from unittest import mock

import botocore.session

from spot_pipelines.core.bundled_data import bundled_on_demand_rows
from spot_pipelines.core.clock import utcnow
from spot_pipelines.demo.fleet import DEMO_ACCESS_KEY_ID, DEMO_REGION

YEAR_S = 365 * 86400
# The plan's rates (share of on-demand) for types the demo fleet runs. Discounts differ by type, as AWS's do, so
# commitment freed by one instance covers another at a different discount: net differs from list.
SP_RATES = {"r5.large": 0.66, "m5a.xlarge": 0.73, "c6g.xlarge": 0.78, "r5.xlarge": 0.66}


def demo_commitments() -> dict[str, dict]:
    """operation name → response, for the account holding commitments."""
    now = utcnow().replace(microsecond=0)
    od = {r["instance_type"]: float(r["usd_per_hour"]) for r in bundled_on_demand_rows()}
    ri = {
        "ReservedInstancesId": "ri-0demo0c52xlarge01",
        "InstanceType": "c5.2xlarge",
        "InstanceCount": 1,
        "Scope": "Region",
        "ProductDescription": "Linux/UNIX",
        "InstanceTenancy": "default",
        "OfferingClass": "standard",
        "OfferingType": "No Upfront",
        "State": "active",
        "Start": now - timedelta(days=200),
        "End": now + timedelta(days=165),
        "Duration": YEAR_S,
        "FixedPrice": 0.0,
        "UsagePrice": 0.0,
        "RecurringCharges": [{"Amount": round(od["c5.2xlarge"] * 0.62, 4), "Frequency": "Hourly"}],
        "CurrencyCode": "USD",
    }
    plan = {
        "savingsPlanId": "sp-0demo-compute-1yr",
        "savingsPlanArn": "arn:aws:savingsplans::111122223333:savingsplan/sp-0demo-compute-1yr",
        "savingsPlanType": "Compute",
        "state": "active",
        "start": (now - timedelta(days=90)).isoformat().replace("+00:00", "Z"),
        "end": (now + timedelta(days=275)).isoformat().replace("+00:00", "Z"),
        "commitment": "0.12",
        "currency": "USD",
        "paymentOption": "No Upfront",
        "productTypes": ["EC2", "Fargate", "Lambda"],
        "termDurationInSeconds": YEAR_S,
    }
    rates = [
        {
            "rate": f"{od[t] * share:.4f}",
            "currency": "USD",
            "unit": "Hrs",
            "productType": "EC2",
            "serviceCode": "AmazonEC2",
            "usageType": f"USE1-BoxUsage:{t}",
            "operation": "RunInstances",
            "properties": [
                {"name": "region", "value": DEMO_REGION},
                {"name": "instanceType", "value": t},
                {"name": "instanceFamily", "value": t.split(".")[0]},
                {"name": "productDescription", "value": "Linux/UNIX"},
                {"name": "tenancy", "value": "shared"},
            ],
        }
        for t, share in SP_RATES.items()
    ]
    return {
        "DescribeReservedInstances": {"ReservedInstances": [ri]},
        "DescribeSavingsPlans": {"savingsPlans": [plan]},
        "DescribeSavingsPlanRates": {"savingsPlanId": plan["savingsPlanId"], "searchResults": rates},
        "GetSavingsPlansUtilization": {
            "SavingsPlansUtilizationsByTime": [],
            "Total": {"Utilization": {"UtilizationPercentage": "100"}},
        },
        "GetReservationUtilization": {"UtilizationsByTime": [], "Total": {"UtilizationPercentage": "100"}},
    }


NONE = {"DescribeReservedInstances": {"ReservedInstances": []}, "DescribeSavingsPlans": {"savingsPlans": []}}
OPERATIONS = {
    "ec2": ("DescribeReservedInstances",),
    "savingsplans": ("DescribeSavingsPlans", "DescribeSavingsPlanRates"),
    "ce": ("GetSavingsPlansUtilization", "GetReservationUtilization"),
}


@contextlib.contextmanager
def emulate_commitments(responses: dict[str, dict] | None = None) -> Iterator[None]:
    """`responses` (operation → response; one with an "Error" is answered as a 403) for every identity but the demo's
    key-based one (default: the demo's)."""
    held = responses if responses is not None else demo_commitments()
    original = botocore.session.Session.create_client

    def create_client(self, service_name, *args, **kwargs):
        client = original(self, service_name, *args, **kwargs)
        if service_name not in OPERATIONS:
            return client
        creds = self.get_credentials() if kwargs.get("aws_access_key_id") is None else None
        key = kwargs.get("aws_access_key_id") or (creds.access_key if creds else None)
        answers = NONE if key == DEMO_ACCESS_KEY_ID else held
        for operation in OPERATIONS[service_name]:

            def answer(operation=operation, **_):
                parsed = answers.get(operation, {})
                return mock.Mock(status_code=403 if "Error" in parsed else 200, headers={}), parsed

            client.meta.events.register(
                f"before-call.{client.meta.service_model.service_id.hyphenize()}.{operation}", answer
            )
        return client

    with mock.patch.object(botocore.session.Session, "create_client", create_client):
        yield
