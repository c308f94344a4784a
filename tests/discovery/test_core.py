import re
from datetime import timedelta

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.config import Config
from botocore.exceptions import ClientError
from botocore.stub import Stubber

from spot_pipelines.core.clock import utcnow
from spot_pipelines.core.discovery import scan_account, scan_region
from spot_pipelines.core.errors import CredentialError, ValidationError
from tests.support.aws_fakes import fail_region, seed_instances


def clients(hooks=(), max_attempts=2):
    session = boto3.Session(region_name="us-east-1")
    config = Config(retries={"mode": "adaptive", "max_attempts": max_attempts})

    def client_for(region):
        client = session.client("ec2", region_name=region, config=config)
        for hook in hooks:
            client.meta.events.register("before-send.ec2", hook)
        return client

    return client_for


def test_scans_every_enabled_region_with_lifecycle_and_az_ids(aws):
    session = boto3.Session(region_name="us-east-1")
    seed_instances(session, "eu-west-1", 3, "m5.large", tags={"team": "data"})
    seed_instances(session, "us-west-2", 2, "c6g.large", spot=True)
    scan = scan_account(clients(), None)
    assert len(scan.instances) == 5
    assert "ap-east-1" not in scan.scanned_regions  # opt-in region, not enabled
    assert not [r for r in scan.scanned_regions if r.startswith(("cn-", "us-gov-"))]  # other partitions
    by_id = {row["instance_id"]: row for row in scan.instances}
    spot = [r for r in by_id.values() if r["region"] == "us-west-2"]
    assert {r["lifecycle"] for r in spot} == {"spot"}
    eu = [r for r in by_id.values() if r["region"] == "eu-west-1"]
    assert {r["lifecycle"] for r in eu} == {"on-demand"} and eu[0]["tags"] == {"team": "data"}
    assert all(
        r["availability_zone_id"] and r["availability_zone_id"] != r["availability_zone"] for r in scan.instances
    )
    assert not scan.failed_regions


def test_all_regions_lists_the_opt_in_regions_that_are_not_enabled(aws):
    listed = boto3.client("ec2", region_name="us-east-1").describe_regions(AllRegions=True)["Regions"]
    off = {
        r["RegionName"]
        for r in listed
        if r["OptInStatus"] == "not-opted-in" and not r["RegionName"].startswith(("cn-", "us-gov-"))
    }
    assert "ap-east-1" in off  # the emulator has opt-in regions that are off
    scan = scan_account(clients(), None)
    assert scan.skipped_regions == {region: "region not enabled (opt-in required)" for region in sorted(off)}
    assert not off & set(scan.scanned_regions)


def test_configured_regions_that_are_not_enabled_are_skipped_and_reported(aws):
    scan = scan_account(clients(), ["eu-west-1", "ap-east-1", "xx-nowhere-1"])
    assert scan.scanned_regions == ["eu-west-1"]
    assert "not enabled" in scan.skipped_regions["ap-east-1"]
    assert scan.skipped_regions["xx-nowhere-1"] == "unknown region"


def test_unauthorized_region_is_skipped_not_fatal(aws):
    seed_instances(boto3.Session(region_name="us-east-1"), "eu-west-1", 2)
    scan = scan_account(clients([fail_region("UnauthorizedOperation", "us-west-2")]), ["eu-west-1", "us-west-2"])
    assert scan.scanned_regions == ["eu-west-1"] and len(scan.instances) == 2
    assert "UnauthorizedOperation" in scan.skipped_regions["us-west-2"]


def test_throttling_is_retried_then_reported_per_region(aws):
    seed_instances(boto3.Session(region_name="us-east-1"), "eu-west-1", 2)
    # One throttle in eu-west-1 is absorbed by the retry mode; us-west-2 throttles beyond the limit.
    hooks = [
        fail_region("RequestLimitExceeded", "eu-west-1", status=503, times=1),
        fail_region("RequestLimitExceeded", "us-west-2", status=503),
    ]
    scan = scan_account(clients(hooks, max_attempts=2), ["eu-west-1", "us-west-2"])
    assert scan.scanned_regions == ["eu-west-1"] and len(scan.instances) == 2
    assert "RequestLimitExceeded" in scan.failed_regions["us-west-2"]


def test_rejected_credentials_fail_the_whole_account(aws):
    hook = fail_region("AuthFailure", "us-east-1", operation="DescribeRegions", status=401)
    with pytest.raises(CredentialError, match="AuthFailure on DescribeRegions"):
        scan_account(clients([hook]), None)


# --- Every member of DescribeInstances / DescribeAvailabilityZones is optional ------------------
# botocore's Stubber answers through the real client path (parameter and response validation).


def stubbed_ec2(region: str, *answers: tuple[str, dict]):
    client = boto3.client("ec2", region_name=region)
    stubber = Stubber(client)
    for operation, answer in answers:
        stubber.add_response(operation, answer)
    stubber.activate()
    return client


def full_instance() -> dict:
    return {
        "InstanceId": "i-0123456789abcdef0",
        "InstanceType": "m5.large",
        "Placement": {"AvailabilityZone": "eu-west-1a", "AvailabilityZoneId": "euw1-az3"},
        "LaunchTime": utcnow() - timedelta(days=3),
        "Tags": [{"Key": "team", "Value": "data"}],
        "InstanceLifecycle": "spot",
        "State": {"Code": 16, "Name": "running"},
        "PlatformDetails": "Linux/UNIX",
        "Architecture": "x86_64",
    }


def described(*instances: dict) -> tuple[str, dict]:
    return "describe_instances", {"Reservations": [{"ReservationId": "r-1", "Instances": list(instances)}]}


ZONES = ("describe_availability_zones", {"AvailabilityZones": [{"ZoneName": "eu-west-1a", "ZoneId": "euw1-az3"}]})


@pytest.mark.parametrize(
    ("absent", "column", "expected"),
    [
        ("LaunchTime", "launch_time", None),
        ("Tags", "tags", {}),
        ("InstanceLifecycle", "lifecycle", "on-demand"),
        ("State", "state", "unknown"),
        ("PlatformDetails", "platform", "Linux/UNIX"),
        ("Architecture", "architecture", None),
    ],
)
def test_an_absent_optional_member_gets_its_honest_default(absent, column, expected):
    raw = full_instance()
    del raw[absent]
    [row], calls = scan_region(stubbed_ec2("eu-west-1", described(raw)), "eu-west-1")
    assert row[column] == expected and calls == 1
    assert row["instance_id"] == "i-0123456789abcdef0" and row["availability_zone_id"] == "euw1-az3"


def test_a_tag_without_key_is_dropped_and_one_without_value_is_empty():
    raw = {**full_instance(), "Tags": [{"Value": "orphan"}, {"Key": "owner"}]}
    [row], _ = scan_region(stubbed_ec2("eu-west-1", described(raw)), "eu-west-1")
    assert row["tags"] == {"owner": ""}


def test_state_without_name_is_unknown():
    raw = {**full_instance(), "State": {"Code": 16}}
    [row], _ = scan_region(stubbed_ec2("eu-west-1", described(raw)), "eu-west-1")
    assert row["state"] == "unknown"


def test_missing_az_id_is_mapped_from_the_zone_listing():
    raw = {**full_instance(), "Placement": {"AvailabilityZone": "eu-west-1a"}}
    [row], calls = scan_region(stubbed_ec2("eu-west-1", described(raw), ZONES), "eu-west-1")
    assert row["availability_zone_id"] == "euw1-az3" and calls == 2


def test_own_az_id_needs_no_zone_listing_even_if_the_listing_would_lack_ids():
    # No DescribeAvailabilityZones is stubbed: calling it would fail the test.
    [row], calls = scan_region(stubbed_ec2("eu-west-1", described(full_instance())), "eu-west-1")
    assert row["availability_zone_id"] == "euw1-az3" and calls == 1


def test_no_placement_at_all_stores_no_zone_rather_than_a_guess():
    raw = full_instance()
    del raw["Placement"]
    [row], calls = scan_region(stubbed_ec2("eu-west-1", described(raw)), "eu-west-1")
    assert row["availability_zone"] is None and row["availability_zone_id"] is None and calls == 1


def test_pages_without_reservations_or_instances_are_empty():
    ec2 = stubbed_ec2("eu-west-1", ("describe_instances", {"Reservations": [{"ReservationId": "r-1"}]}))
    assert scan_region(ec2, "eu-west-1") == ([], 1)
    assert scan_region(stubbed_ec2("eu-west-1", ("describe_instances", {})), "eu-west-1") == ([], 1)


@pytest.mark.parametrize(
    ("absent", "field"),
    [
        ("InstanceId", "DescribeInstances.Reservations[].Instances[].InstanceId"),
        ("InstanceType", "DescribeInstances.Reservations[].Instances[].InstanceType"),
    ],
)
def test_an_instance_without_id_or_type_is_a_clear_error_naming_the_field(absent, field):
    raw = full_instance()
    del raw[absent]
    with pytest.raises(ValidationError, match=re.escape(field) + r": missing .* in eu-west-1$"):
        scan_region(stubbed_ec2("eu-west-1", described(raw)), "eu-west-1")


def test_zone_listing_without_zone_id_fails_only_its_region_with_the_cause():
    home = stubbed_ec2(
        "us-east-1",
        (
            "describe_regions",
            {
                "Regions": [
                    {"RegionName": "eu-west-1", "OptInStatus": "opt-in-not-required"},
                    {"RegionName": "us-west-2", "OptInStatus": "opt-in-not-required"},
                ]
            },
        ),
    )
    no_ids = ("describe_availability_zones", {"AvailabilityZones": [{"ZoneName": "eu-west-1a", "State": "available"}]})
    eu = stubbed_ec2(
        "eu-west-1", described({**full_instance(), "Placement": {"AvailabilityZone": "eu-west-1a"}}), no_ids
    )
    us = stubbed_ec2(
        "us-west-2",
        described(
            {
                **full_instance(),
                "InstanceId": "i-0fedcba9876543210",
                "Placement": {"AvailabilityZone": "us-west-2b", "AvailabilityZoneId": "usw2-az1"},
            }
        ),
    )
    clients_by_region = {"us-east-1": home, "eu-west-1": eu, "us-west-2": us}
    scan = scan_account(clients_by_region.__getitem__, None)
    assert scan.scanned_regions == ["us-west-2"]
    assert [r["instance_id"] for r in scan.instances] == ["i-0fedcba9876543210"]
    assert scan.failed_regions == {
        "eu-west-1": "DescribeAvailabilityZones.AvailabilityZones[].ZoneId: "
        "no AZ ID for eu-west-1a (instance i-0123456789abcdef0) in eu-west-1"
    }
    assert not scan.retryable_regions  # the same answer again would fail the same way


def test_denied_in_every_region_fails_the_account_instead_of_finding_nothing(aws):
    with pytest.raises(CredentialError, match="AWS denied discovery in every region .*UnauthorizedOperation"):
        scan_account(
            clients([fail_region("UnauthorizedOperation", region) for region in ("eu-west-1", "us-west-2")]),
            ["eu-west-1", "us-west-2"],
        )


def test_one_client_per_region_the_home_client_scans_its_region(aws):
    session = boto3.Session(region_name="us-east-1")
    seed_instances(session, "us-east-1", 2, "m5.large")
    seed_instances(session, "eu-west-1", 1, "m5.large")
    built = []
    make = clients()

    def client_for(region):
        built.append(region)
        return make(region)

    scan = scan_account(client_for, ["us-east-1", "eu-west-1"])
    assert sorted(built) == ["eu-west-1", "us-east-1"]  # not us-east-1 twice
    assert sorted(scan.scanned_regions) == ["eu-west-1", "us-east-1"] and len(scan.instances) == 3


def test_gc_is_paused_during_a_scan_and_restored_after_it_even_when_it_fails(aws):
    import gc

    seen = []

    def client_for(region):
        seen.append(gc.isenabled())
        return clients()(region)

    assert gc.isenabled()
    scan_account(client_for, ["eu-west-1"])
    assert seen == [False, False] and gc.isenabled()  # home region, then eu-west-1

    def broken(region):
        raise RuntimeError("no client")

    with pytest.raises(RuntimeError):
        scan_account(broken, None)
    assert gc.isenabled()


def test_gc_stays_off_until_the_last_concurrent_scan_ends_and_stays_off_if_it_was_off():
    import gc

    from spot_pipelines.core.discovery import gc_paused

    with gc_paused():
        with gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the outer scan still runs
    assert gc.isenabled()
    gc.disable()
    try:
        with gc_paused():
            pass
        assert not gc.isenabled()  # not ours to turn on
    finally:
        gc.enable()


def _paged_from(body: bytes, per_page: int):
    """A before-send hook serving a recorded DescribeInstances answer in pages of `per_page` instances,
    with NextToken as EC2 sends it: botocore's paginator, retries and parsers run as against AWS."""
    import copy
    from urllib.parse import parse_qs
    from xml.etree import ElementTree

    from tests.support.aws_fakes import _Raw

    root = ElementTree.fromstring(body)
    ns = root.tag[: root.tag.find("}") + 1]
    for placement in root.iter(f"{ns}placement"):  # as AWS sends it (moto omits it)
        zone = placement.find(f"{ns}availabilityZone").text
        ElementTree.SubElement(placement, f"{ns}availabilityZoneId").text = f"euw1-az{zone[-1]}"
    items = list(root.find(f"{ns}reservationSet"))
    pages, page, count = [], [], 0
    for item in items:
        page.append(item)
        count += len(item.findall(f"{ns}instancesSet/{ns}item"))
        if count >= per_page:
            pages.append(page)
            page, count = [], 0
    pages += [page] if page else []
    tokens = []

    def hook(request, event_name: str = "", **_):
        if not event_name.endswith(".DescribeInstances"):
            return None
        token = parse_qs(request.body.decode() if isinstance(request.body, bytes) else request.body).get("NextToken")
        tokens.append(token[0] if token else None)
        n = int(token[0]) if token else 0
        answer = copy.deepcopy(root)
        reservations = answer.find(f"{ns}reservationSet")
        for item in list(reservations):
            reservations.remove(item)
        reservations.extend(copy.deepcopy(pages[n]))
        if n + 1 < len(pages):
            ElementTree.SubElement(answer, f"{ns}nextToken").text = str(n + 1)
        return AWSResponse(request.url, 200, {}, _Raw(ElementTree.tostring(answer)))

    return hook, tokens


def test_lean_parse_yields_botocores_rows_over_paginated_pages_of_more_than_1000_instances():
    from moto import mock_aws

    from spot_pipelines.core.discovery import instance_row

    recorded = []
    with mock_aws():
        session = boto3.Session(region_name="eu-west-1")
        for batch in range(11):  # 1,100 instances in 11 reservations: two pages of up to 1,000
            seed_instances(
                session,
                "eu-west-1",
                100,
                ["m5.large", "c6g.large", "r5.large"][batch % 3],
                spot=batch % 2 == 0,
                tags={"team": f"t{batch}", "empty": ""} if batch % 4 else None,
            )
        ec2 = session.client("ec2", region_name="eu-west-1")
        ec2.meta.events.register(
            "after-call.ec2.DescribeInstances", lambda http_response, **_: recorded.append(http_response.content)
        )
        ec2.describe_instances()

    hook, tokens = _paged_from(recorded[0], per_page=1000)
    client = boto3.Session(aws_access_key_id="k", aws_secret_access_key="s").client("ec2", region_name="eu-west-1")
    client.meta.events.register("before-send.ec2", hook)
    full = [
        instance
        for page in client.get_paginator("describe_instances").paginate()  # botocore's full parse
        for reservation in page["Reservations"]
        for instance in reservation["Instances"]
    ]
    expected = [instance_row(raw, "eu-west-1", {}) for raw in full]
    tokens.clear()

    rows, calls = scan_region(client, "eu-west-1")

    assert len(expected) == 1100 and rows == expected
    assert calls == 2 and tokens == [None, "1"]  # botocore's paginator followed NextToken
    assert any(r["lifecycle"] == "spot" for r in rows) and any(r["tags"].get("empty") == "" for r in rows)
    # The hook is the scan's only: afterwards the client parses every member again.
    assert "BlockDeviceMappings" in client.describe_instances()["Reservations"][0]["Instances"][0]


def test_lean_parse_leaves_errors_to_botocore(aws):
    from tests.support.aws_fakes import ec2_error_response

    client = clients()("eu-west-1")
    client.meta.events.register("before-send.ec2", lambda **_: ec2_error_response("InvalidParameterValue", 400))
    with pytest.raises(ClientError) as raised:
        scan_region(client, "eu-west-1")
    assert raised.value.response["Error"]["Code"] == "InvalidParameterValue"
