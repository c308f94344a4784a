import boto3
import pytest
from botocore.config import Config

from spot_pipelines.core.discovery import scan_account
from spot_pipelines.core.errors import CredentialError
from tests.aws_fakes import fail_region, seed_instances


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
    assert all(r["availability_zone_id"] and r["availability_zone_id"] != r["availability_zone"] for r in scan.instances)
    assert not scan.skipped_regions and not scan.failed_regions


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
    hooks = [fail_region("RequestLimitExceeded", "eu-west-1", status=503, times=1),
             fail_region("RequestLimitExceeded", "us-west-2", status=503)]
    scan = scan_account(clients(hooks, max_attempts=2), ["eu-west-1", "us-west-2"])
    assert scan.scanned_regions == ["eu-west-1"] and len(scan.instances) == 2
    assert "RequestLimitExceeded" in scan.failed_regions["us-west-2"]


def test_rejected_credentials_fail_the_whole_account(aws):
    hook = fail_region("AuthFailure", "us-east-1", operation="DescribeRegions", status=401)
    with pytest.raises(CredentialError, match="AuthFailure on DescribeRegions"):
        scan_account(clients([hook]), None)
