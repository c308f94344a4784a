"""execute_approved_recommendations against the EC2 emulator, the audit trail, and the approval CLI."""

from __future__ import annotations

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.stub import Stubber
from click.testing import CliRunner
from sqlalchemy import select

from spot_pipelines.assets.execution import execute_approved_recommendations
from spot_pipelines.cli.recommendations import recommendations
from spot_pipelines.core.execution import RecommendationView, execute
from spot_pipelines.db import execution as execution_rows
from spot_pipelines.db import optimization as opt
from spot_pipelines.db.engine import session_factory
from spot_pipelines.resources.app_database import AppDatabase
from spot_pipelines.resources.credential_vault import CredentialVault
from tests.support.seed import add_instances, add_keys_account, add_recommendation

REGION = "us-east-1"
ROOT = "/dev/xvda"  # the bundled AMI's root device (moto would otherwise attach the root at /dev/sda1)
# The reads of every run: the source, its termination protection and UserData, root volume, EIP, target groups.
READS = [
    ("DescribeInstances", "succeeded"),
    ("DescribeInstanceAttribute", "succeeded"),
    ("DescribeInstanceAttribute", "succeeded"),
    ("DescribeVolumes", "succeeded"),
    ("DescribeAddresses", "succeeded"),
    ("DescribeTargetGroups", "succeeded"),
]


@pytest.fixture
def vault(encryption_key):
    return CredentialVault(encryption_key=encryption_key, max_attempts=2)


def launch(count: int = 1, itype: str = "m5.large", tags: dict | None = None, **extra) -> list[dict]:
    ec2 = boto3.client("ec2", region_name=REGION)
    image = "ami-760aaa0f"  # moto's bundled Amazon Linux AMI (describe_images is slow in moto)
    subnet = ec2.describe_subnets()["Subnets"][0]["SubnetId"]
    sg = ec2.create_security_group(GroupName=f"web-{itype}-{count}", Description="web")["GroupId"]
    kwargs = {"BlockDeviceMappings": [{"DeviceName": ROOT, "Ebs": {"VolumeSize": 8, "VolumeType": "gp2"}}], **extra}
    if tags:
        kwargs["TagSpecifications"] = [
            {"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}
        ]
    out = ec2.run_instances(
        ImageId=image,
        MinCount=count,
        MaxCount=count,
        InstanceType=itype,
        SubnetId=subnet,
        SecurityGroupIds=[sg],
        KeyName="ops",
        **kwargs,
    )
    return out["Instances"]


def refuse(code: str, status: int = 400):
    """A `before-call` handler answering with an AWS error: the request never reaches moto (a
    `before-send` answer would, and moto would still carry the request out)."""

    def handler(**_):
        http = AWSResponse("https://injected.invalid/", status, {}, None)
        return http, {"Error": {"Code": code, "Message": "injected"}, "ResponseMetadata": {"HTTPStatusCode": status}}

    return handler


def ec2_state(instance_id: str) -> dict:
    ec2 = boto3.client("ec2", region_name=REGION)
    found = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]
    return found


def setup_fleet(url, vault, count=1, tags=None, itype="m5.large", target="m6i.large", **launch_kwargs):
    boto3.client("ec2", region_name=REGION).create_key_pair(KeyName="ops") if count else None
    launched = launch(count, itype, tags=tags, **launch_kwargs)
    account_id = add_keys_account(url, vault)
    az_id = boto3.client("ec2", region_name=REGION).describe_availability_zones(
        ZoneNames=[launched[0]["Placement"]["AvailabilityZone"]]
    )["AvailabilityZones"][0]["ZoneId"]
    add_instances(
        url,
        account_id,
        [
            {
                "instance_id": i["InstanceId"],
                "instance_type": itype,
                "availability_zone": i["Placement"]["AvailabilityZone"],
                "availability_zone_id": az_id,
                "tags": tags or {},
            }
            for i in launched
        ],
    )
    recs = [
        add_recommendation(url, account_id, i["InstanceId"], az_id=az_id, current=itype, target=target)
        for i in launched
    ]
    return account_id, [i["InstanceId"] for i in launched], recs


def run_job(url, vault, **config):
    return execute_approved_recommendations.execute_in_process(
        run_config={"ops": {"execute_approved": {"config": config}}},
        resources={"app_db": AppDatabase(url=url), "vault": vault},
        raise_on_error=False,
    )


def rec_rows(url) -> dict[int, opt.SpotRecommendation]:
    with session_factory(url)() as session:
        return {r.id: r for r in session.scalars(select(opt.SpotRecommendation))}


def audit(url, rec_id) -> list[execution_rows.RecommendationAction]:
    with session_factory(url)() as session:
        return execution_rows.actions_for(session, rec_id)


def test_dry_run_is_the_default_and_records_the_exact_calls(aws, sqlite_url, vault):
    _, (old,), (rec_id,) = setup_fleet(sqlite_url, vault)
    result = run_job(sqlite_url, vault)
    assert result.success
    assert rec_rows(sqlite_url)[rec_id].status == "approved"  # nothing was done
    assert ec2_state(old)["State"]["Name"] == "running"
    assert len(boto3.client("ec2", region_name=REGION).describe_instances()["Reservations"]) == 1
    calls = audit(sqlite_url, rec_id)
    assert all(c.dry_run for c in calls)
    assert [(c.operation, c.outcome) for c in calls] == READS + [
        ("RunInstances", "succeeded"),  # DryRun=True: the permission is there
        ("TerminateInstances", "succeeded"),
        ("RunInstances", "planned"),
        ("TerminateInstances", "planned"),
    ]
    assert calls[6].params["DryRun"] is True and calls[6].after_state == {"permitted": True}
    assert "DryRun" not in calls[8].params
    run = calls[8].params
    assert run["InstanceType"] == "m6i.large" and run["KeyName"] == "ops"
    assert run["InstanceMarketOptions"]["MarketType"] == "spot"
    assert run["SubnetId"] == ec2_state(old)["SubnetId"] and run["ClientToken"] == f"spot-pipelines-rec-{rec_id}"
    assert {"Key": "spot-pipelines:replaces", "Value": old} in run["TagSpecifications"][0]["Tags"]
    assert calls[8].before_state["InstanceType"] == "m5.large"
    assert calls[9].params == {"InstanceIds": [old]}


def test_live_run_replaces_the_instance_with_spot_and_audits_before_and_after(aws, db_url, vault):
    _, (old,), (rec_id,) = setup_fleet(db_url, vault)
    result = run_job(db_url, vault, dry_run=False)
    assert result.success
    rec = rec_rows(db_url)[rec_id]
    assert rec.status == "executed" and rec.executed_at is not None and rec.error is None
    new = ec2_state(rec.replacement_instance_id)
    assert new["InstanceType"] == "m6i.large" and new.get("InstanceLifecycle") == "spot"
    assert new["SubnetId"] == ec2_state(old)["SubnetId"]
    assert {"Key": "spot-pipelines:recommendation-id", "Value": str(rec_id)} in new["Tags"]
    assert ec2_state(old)["State"]["Name"] in ("shutting-down", "terminated")
    calls = audit(db_url, rec_id)
    # moto's RunInstances answer lacks the AZ ID: the new instance is read back for the inventory.
    assert not any(c.dry_run for c in calls)
    assert [(c.operation, c.outcome) for c in calls] == READS + [
        ("DescribeInstances", "succeeded"),  # no live replacement of an earlier, interrupted run
        ("RunInstances", "succeeded"),
        ("DescribeInstanceStatus", "succeeded"),  # launch before terminate: the new one passed its checks
        ("TerminateInstances", "succeeded"),
        ("DescribeInstances", "succeeded"),
        ("DescribeSubnets", "succeeded"),
    ]
    assert calls[7].after_state["InstanceId"] == rec.replacement_instance_id
    assert calls[8].after_state["statuses"][0] == {"State": "running", "InstanceStatus": "ok", "SystemStatus": "ok"}
    assert calls[9].after_state["ReplacedBy"] == rec.replacement_instance_id
    assert calls[10].params == {"InstanceIds": [rec.replacement_instance_id]}
    # Executed rows are never executed twice.
    again = run_job(db_url, vault, dry_run=False)
    assert again.success and len(audit(db_url, rec_id)) == len(calls)


def test_failure_mid_batch_leaves_every_row_truthful(aws, sqlite_url, vault, monkeypatch):
    _, olds, recs = setup_fleet(sqlite_url, vault, count=3)
    # The second instance is terminated behind our back: its replacement must not happen.
    boto3.client("ec2", region_name=REGION).terminate_instances(InstanceIds=[olds[1]])
    result = run_job(sqlite_url, vault, dry_run=False)
    assert not result.success
    rows = rec_rows(sqlite_url)
    assert rows[recs[0]].status == "executed"
    assert (
        rows[recs[1]].status == "failed"
        and "terminated, not running: the recommendation is stale" in rows[recs[1]].error
    )
    assert rows[recs[2]].status == "approved" and not audit(sqlite_url, recs[2])
    assert [c.operation for c in audit(sqlite_url, recs[1])] == ["DescribeInstances"]


def test_credentials_without_run_instances_fail_clearly_and_touch_nothing(aws, sqlite_url, vault, monkeypatch):
    _, (old,), (rec_id,) = setup_fleet(sqlite_url, vault)
    real_client = CredentialVault.client

    def denied_client(self, session, service, region=None):
        client = real_client(self, session, service, region)
        # before-call: the request never reaches moto (which would launch on a before-send answer).
        client.meta.events.register("before-call.ec2.RunInstances", refuse("UnauthorizedOperation", 403))
        return client

    monkeypatch.setattr(CredentialVault, "client", denied_client)
    result = run_job(sqlite_url, vault, dry_run=False)
    assert not result.success
    rec = rec_rows(sqlite_url)[rec_id]
    assert rec.status == "failed"
    assert "the credentials lack permission for ec2:RunInstances (UnauthorizedOperation)" in rec.error
    assert "nothing was launched and the old instance is untouched" in rec.error
    assert ec2_state(old)["State"]["Name"] == "running"
    assert len(boto3.client("ec2", region_name=REGION).describe_instances()["Reservations"]) == 1  # none launched
    assert [(c.operation, c.outcome) for c in audit(sqlite_url, rec_id)] == READS + [
        ("DescribeInstances", "succeeded"),
        ("RunInstances", "failed"),
    ]
    failure = result.failure_data_for_node("execute_approved")
    assert "lack permission for ec2:RunInstances" in failure.user_failure_data.description


def test_unauthorized_run_instances_with_a_stubbed_client():
    client = boto3.client("ec2", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="y")
    instance = {
        "InstanceId": "i-0123456789abcdef0",
        "InstanceType": "m5.large",
        "State": {"Name": "running"},
        "ImageId": "ami-12345678",
        "SubnetId": "subnet-1",
        "Placement": {"AvailabilityZone": "us-east-1a"},
        "RootDeviceName": ROOT,
        "BlockDeviceMappings": [{"DeviceName": ROOT, "Ebs": {"VolumeId": "vol-1"}}],
    }
    view = RecommendationView(
        id=1,
        account_name="prod",
        instance_id=instance["InstanceId"],
        region=REGION,
        current_instance_type="m5.large",
        current_lifecycle="on-demand",
        action="move_to_spot",
        target_instance_type="m6i.large",
        target_availability_zone_id=None,
        target_market="spot",
    )
    with Stubber(client) as stub:
        stub.add_response(
            "describe_instances",
            {"Reservations": [{"Instances": [instance]}]},
            {"InstanceIds": [instance["InstanceId"]]},
        )
        for attribute, answer in (
            ("disableApiTermination", {"DisableApiTermination": {"Value": False}}),
            ("userData", {}),
        ):
            stub.add_response(
                "describe_instance_attribute", answer, {"InstanceId": instance["InstanceId"], "Attribute": attribute}
            )
        volume = {
            "VolumeId": "vol-1",
            "Size": 50,
            "VolumeType": "io2",
            "Iops": 5000,
            "Encrypted": True,
            "KmsKeyId": "k",
        }
        stub.add_response("describe_volumes", {"Volumes": [volume]}, {"VolumeIds": ["vol-1"]})
        stub.add_response("describe_addresses", {"Addresses": []})
        stub.add_response("describe_instances", {"Reservations": []})  # no replacement of an earlier run
        stub.add_client_error(
            "run_instances",
            service_error_code="UnauthorizedOperation",
            service_message="You are not authorized to perform this operation.",
            http_status_code=403,
        )
        outcome = execute(client, view, dry_run=False)
        stub.assert_no_pending_responses()
    assert outcome.status == "failed"
    assert outcome.error.startswith("account 'prod': the credentials lack permission for ec2:RunInstances")
    assert [c.operation for c in outcome.calls][-3:] == ["DescribeAddresses", "DescribeInstances", "RunInstances"]
    assert outcome.calls[-1].params["BlockDeviceMappings"] == [
        {
            "DeviceName": ROOT,
            "Ebs": {
                "VolumeSize": 50,
                "VolumeType": "io2",
                "DeleteOnTermination": True,
                "Iops": 5000,
                "Encrypted": True,
                "KmsKeyId": "k",
            },
        }
    ]


def test_group_managed_instances_are_not_replaced_behind_the_groups_back(aws, sqlite_url, vault):
    _, (old,), (rec_id,) = setup_fleet(sqlite_url, vault, tags={"aws:autoscaling:groupName": "web"})
    result = run_job(sqlite_url, vault, dry_run=False)
    assert not result.success
    rec = rec_rows(sqlite_url)[rec_id]
    assert rec.status == "failed" and "managed by aws:autoscaling:groupName=web" in rec.error
    assert ec2_state(old)["State"]["Name"] == "running"
    assert [c.operation for c in audit(sqlite_url, rec_id)] == ["DescribeInstances"]  # refused before any change


def test_job_refuses_unknown_or_unapproved_ids(aws, sqlite_url, vault):
    _, _, (rec_id,) = setup_fleet(sqlite_url, vault)
    result = run_job(sqlite_url, vault, recommendation_ids=[rec_id, 999])
    assert not result.success
    assert (
        "999 are unknown or not approved"
        in result.failure_data_for_node("execute_approved").user_failure_data.description
    )
    assert rec_rows(sqlite_url)[rec_id].status == "approved"


def test_cli_approve_list_reject(db_url, monkeypatch, encryption_key):
    monkeypatch.setenv("DATABASE_URL", db_url)
    vault = CredentialVault(encryption_key=encryption_key)
    account_id = add_keys_account(db_url, vault)
    add_instances(db_url, account_id, [{"instance_id": "i-1", "instance_type": "m5.large"}])
    proposed = add_recommendation(db_url, account_id, "i-1", status="proposed")
    executed = add_recommendation(db_url, account_id, "i-1", status="executed")
    runner = CliRunner()

    out = runner.invoke(recommendations, ["approve", str(proposed), "999"])
    assert out.exit_code == 1 and "unknown recommendation id(s): 999; nothing was changed" in out.output
    assert rec_rows(db_url)[proposed].status == "proposed"

    out = runner.invoke(recommendations, ["approve", str(executed)])
    assert out.exit_code == 1
    assert f"only proposed recommendations can be approved: {executed} is executed" in out.output

    out = runner.invoke(recommendations, ["approve", str(proposed), "--by", "alice"])
    assert out.exit_code == 0, out.output
    row = rec_rows(db_url)[proposed]
    assert row.status == "approved" and row.approved_by == "alice" and row.approved_at is not None

    out = runner.invoke(recommendations, ["list"])
    assert out.exit_code == 0 and f"{proposed}" in out.output and "approved" in out.output

    out = runner.invoke(recommendations, ["show", str(proposed)])
    assert out.exit_code == 0 and "reason: test" in out.output

    out = runner.invoke(recommendations, ["reject", str(proposed)])
    assert out.exit_code == 0 and rec_rows(db_url)[proposed].status == "rejected"
