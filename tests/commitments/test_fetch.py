"""Reading commitments through real boto3 clients answered by botocore's Stubber (moto has none of these APIs):
active commitments kept, expired/retired/queued/non-USD ones set aside with the reason, denied permissions
stated as gaps, malformed responses refused naming the field."""

from __future__ import annotations

from datetime import timedelta

import boto3
import pytest
from botocore.stub import ANY, Stubber

from spot_pipelines.core import commitments as cm
from spot_pipelines.core.clock import utcnow
from spot_pipelines.core.errors import ValidationError

NOW = utcnow()
YEAR = 365 * 86400


def ri(rid, *, state="active", end_days=100, scope="Region", currency="USD", **extra):
    item = {
        "ReservedInstancesId": rid,
        "InstanceType": "m5.xlarge",
        "InstanceCount": 2,
        "Scope": scope,
        "ProductDescription": "Linux/UNIX (Amazon VPC)",
        "InstanceTenancy": "default",
        "OfferingClass": "standard",
        "State": state,
        "Start": NOW - timedelta(days=200),
        "End": NOW + timedelta(days=end_days),
        "Duration": YEAR,
        "FixedPrice": 876.0,
        "UsagePrice": 0.0,
        "RecurringCharges": [{"Amount": 0.02, "Frequency": "Hourly"}],
        "CurrencyCode": currency,
    }
    if scope == "Availability Zone":
        item["AvailabilityZone"] = "us-east-1a"
    return {**item, **extra}


def plan(pid, *, plan_type="Compute", state="active", currency="USD", commitment="0.50"):
    return {
        "savingsPlanId": pid,
        "savingsPlanType": plan_type,
        "state": state,
        "start": (NOW - timedelta(days=10)).isoformat(),
        "end": (NOW + timedelta(days=355)).isoformat(),
        "commitment": commitment,
        "currency": currency,
        "termDurationInSeconds": YEAR,
        **({"ec2InstanceFamily": "m5", "region": "us-east-1"} if plan_type == "EC2Instance" else {}),
    }


def rate(itype, value, tenancy="shared"):
    props = {"region": "us-east-1", "instanceType": itype, "productDescription": "Linux/UNIX", "tenancy": tenancy}
    return {
        "rate": value,
        "currency": "USD",
        "unit": "Hrs",
        "productType": "EC2",
        "serviceCode": "AmazonEC2",
        "usageType": f"USE1-BoxUsage:{itype}",
        "operation": "RunInstances",
        "properties": [{"name": k, "value": v} for k, v in props.items()],
    }


class Stubbed:
    """Real clients, one per service, each with a Stubber; `client(service, region)` as the vault gives them."""

    def __init__(self):
        self.clients = {s: boto3.client(s, region_name="us-east-1") for s in ("ec2", "savingsplans", "ce")}
        self.stubs = {s: Stubber(c) for s, c in self.clients.items()}

    def __call__(self, service, region):
        return self.clients[service]

    def __enter__(self):
        for s in self.stubs.values():
            s.activate()
        return self

    def __exit__(self, *exc):
        for s in self.stubs.values():
            s.deactivate()
        if exc[0] is None:
            for s in self.stubs.values():
                s.assert_no_pending_responses()


def fetch(stubbed):
    return cm.fetch_commitments(stubbed, ["us-east-1"], account_id=7, now=NOW)


def test_active_commitments_with_rates_and_utilization_the_rest_set_aside_with_the_reason():
    s = Stubbed()
    items = [
        ri("ri-active"),
        ri("ri-zonal", scope="Availability Zone"),
        ri("ri-expired", end_days=-1),
        ri("ri-retired", state="retired"),
        ri("ri-queued", state="queued"),
        ri("ri-eur", currency="EUR"),
    ]
    s.stubs["ec2"].add_response("describe_reserved_instances", {"ReservedInstances": items}, {})
    s.stubs["ec2"].add_response(
        "describe_availability_zones",
        {"AvailabilityZones": [{"ZoneName": "us-east-1a", "ZoneId": "use1-az6"}]},
        {},
    )
    s.stubs["savingsplans"].add_response(
        "describe_savings_plans",
        {
            "savingsPlans": [plan("sp-1"), plan("sp-cny", currency="CNY"), plan("sp-q", state="queued")],
            "nextToken": "t",
        },
        {},
    )
    s.stubs["savingsplans"].add_response(
        "describe_savings_plans", {"savingsPlans": [plan("sp-2", plan_type="EC2Instance")]}, {"nextToken": "t"}
    )
    for pid in ("sp-1", "sp-2"):
        s.stubs["savingsplans"].add_response(
            "describe_savings_plan_rates",
            {
                "savingsPlanId": pid,
                "searchResults": [rate("m5.xlarge", "0.134"), rate("m5.large", "0.07", tenancy="dedicated")],
            },
            {"savingsPlanId": pid, "filters": ANY},
        )
    s.stubs["ce"].add_response(
        "get_savings_plans_utilization",
        {"SavingsPlansUtilizationsByTime": [], "Total": {"Utilization": {"UtilizationPercentage": "81.5"}}},
        {"TimePeriod": ANY},
    )
    s.stubs["ce"].add_response(
        "get_reservation_utilization",
        {"UtilizationsByTime": [], "Total": {"UtilizationPercentage": "100"}},
        {"TimePeriod": ANY},
    )
    with s:
        out = fetch(s)
    assert [r["commitment_id"] for r in out.reserved] == ["ri-active", "ri-zonal", "ri-eur"]
    active = out.reserved[0]
    assert active["product_description"] == "Linux/UNIX" and active["instance_count"] == 2
    assert active["usd_per_hour"] == pytest.approx(876 / 8760 + 0.02)  # upfront amortized + hourly
    assert out.reserved[1]["availability_zone_id"] == "use1-az6"
    assert out.reserved[2]["usd_per_hour"] is None  # coverage kept, price not in USD
    assert [p["commitment_id"] for p in out.savings_plans] == ["sp-1", "sp-2"]
    assert out.savings_plans[1]["instance_family"] == "m5"
    assert [(r["commitment_id"], r["instance_type"], r["usd_per_hour"]) for r in out.rates] == [
        ("sp-1", "m5.xlarge", 0.134),
        ("sp-2", "m5.xlarge", 0.134),
    ]
    assert out.utilization == {"savings_plans": 81.5, "reserved_instances": 100.0}
    assert out.gaps == []
    skipped = " | ".join(out.skipped)
    for expected in (
        "RI ri-expired: expired",
        "RI ri-retired: retired",
        "RI ri-queued: queued",
        "RI ri-eur: priced in EUR",
        "Savings Plan sp-cny: commitment in CNY",
        "Savings Plan sp-q: queued",
    ):
        assert expected in skipped


def test_without_savingsplans_and_ce_permissions_the_gaps_are_stated_and_the_ris_still_read():
    s = Stubbed()
    s.stubs["ec2"].add_response("describe_reserved_instances", {"ReservedInstances": [ri("ri-1")]}, {})
    s.stubs["savingsplans"].add_client_error("describe_savings_plans", "AccessDeniedException", http_status_code=403)
    s.stubs["ce"].add_client_error("get_reservation_utilization", "AccessDeniedException", http_status_code=403)
    with s:
        out = fetch(s)
    assert [r["commitment_id"] for r in out.reserved] == ["ri-1"] and out.savings_plans == []
    assert out.gaps == [
        "savingsplans:DescribeSavingsPlans denied (AccessDeniedException): Savings Plans are unknown",
        "ce:GetReservationUtilization denied (AccessDeniedException): reserved_instances utilization unknown",
    ]


def test_no_ec2_permission_in_a_region_is_a_gap_and_cost_explorer_without_data_too():
    s = Stubbed()
    s.stubs["ec2"].add_client_error("describe_reserved_instances", "UnauthorizedOperation", http_status_code=403)
    s.stubs["savingsplans"].add_response("describe_savings_plans", {"savingsPlans": [plan("sp-1")]}, {})
    s.stubs["savingsplans"].add_response(
        "describe_savings_plan_rates", {"searchResults": []}, {"savingsPlanId": "sp-1", "filters": ANY}
    )
    s.stubs["ce"].add_client_error("get_savings_plans_utilization", "DataUnavailableException", http_status_code=400)
    with s:
        out = fetch(s)
    assert out.gaps[0].startswith("ec2:DescribeReservedInstances in us-east-1 denied (UnauthorizedOperation)")
    assert "Cost Explorer has no data" in out.gaps[1]


def test_throttling_is_not_a_gap_it_fails_the_read():
    s = Stubbed()
    s.stubs["ec2"].add_client_error("describe_reserved_instances", "RequestLimitExceeded", http_status_code=503)
    with s, pytest.raises(Exception, match="RequestLimitExceeded"):
        fetch(s)


@pytest.mark.parametrize(
    ("item", "field"),
    [
        ({k: v for k, v in ri("ri-x").items() if k != "InstanceCount"}, "ReservedInstances[0].InstanceCount"),
        ({**ri("ri-x"), "Duration": -5}, "ReservedInstances[0].Duration"),
        ({k: v for k, v in ri("ri-x").items() if k != "End"}, "ReservedInstances[0].End"),
    ],
)
def test_malformed_reserved_instances_are_refused_naming_the_field(item, field):
    with pytest.raises(ValidationError, match=field.replace("[", r"\[").replace("]", r"\]")):
        cm.parse_reserved_instances([item], account_id=1, region="us-east-1", zone_ids={}, now=NOW)


def test_malformed_savings_plans_and_rates_are_refused_naming_the_field():
    with pytest.raises(ValidationError, match=r"savingsPlans\[0\]\.commitment"):
        cm.parse_savings_plans([plan("sp-1", commitment="lots")], account_id=1, now=NOW)
    bad = rate("m5.xlarge", "0.1")
    bad["properties"] = [p for p in bad["properties"] if p["name"] != "instanceType"]
    with pytest.raises(ValidationError, match=r"searchResults\[0\]\.properties\.instanceType"):
        cm.parse_savings_plan_rates("sp-1", [bad])
    with pytest.raises(ValidationError, match="UtilizationPercentage"):
        cm.utilization_pct({"Total": {"UtilizationPercentage": "n/a"}}, "reserved_instances")
