"""A replacement carries the source's whole launch spec, its Elastic IP and its target-group
registrations, and the source is retired only after the new instance is healthy (moto: EC2, ELBv2)."""

from __future__ import annotations

import base64

import boto3
import pytest
from botocore.stub import Stubber

from spot_pipelines.core.execution import RecommendationView, eligibility, execute
from spot_pipelines.resources.credential_vault import CredentialVault
from tests.execution.test_execution import REGION, ROOT, audit, ec2_state, rec_rows, run_job, setup_fleet

USER_DATA = "#!/bin/sh\necho 'serve on :80' > /etc/motd\n"
# moto keeps gp3 at its 3000 baseline IOPS (io1 with Iops it rejects); the stubbed test covers io2 + KMS.
ROOT_VOLUME = {"VolumeSize": 30, "VolumeType": "gp3", "Iops": 3000, "Encrypted": True}


@pytest.fixture
def vault(encryption_key):
    return CredentialVault(encryption_key=encryption_key, max_attempts=2)


def web_server(url, vault):
    """An instance as a cautious team runs one: UserData, custom root volume, IMDSv2, an EIP, a target group."""
    _, (old,), (rec_id,) = setup_fleet(
        url,
        vault,
        UserData=USER_DATA,
        BlockDeviceMappings=[{"DeviceName": ROOT, "Ebs": ROOT_VOLUME}],
        MetadataOptions={"HttpTokens": "required", "HttpPutResponseHopLimit": 2, "HttpEndpoint": "enabled"},
        Monitoring={"Enabled": True},
        EbsOptimized=True,
    )
    ec2, elb = boto3.client("ec2", region_name=REGION), boto3.client("elbv2", region_name=REGION)
    allocation = ec2.allocate_address(Domain="vpc")["AllocationId"]
    ec2.associate_address(AllocationId=allocation, InstanceId=old)
    vpc = ec2_state(old)["VpcId"]
    group = elb.create_target_group(Name="web", Protocol="HTTP", Port=80, VpcId=vpc, TargetType="instance")
    arn = group["TargetGroups"][0]["TargetGroupArn"]
    elb.register_targets(TargetGroupArn=arn, Targets=[{"Id": old, "Port": 8080}])
    return old, rec_id, allocation, arn


def root_volume(instance_id: str) -> dict:
    ec2 = boto3.client("ec2", region_name=REGION)
    mapping = next(m for m in ec2_state(instance_id)["BlockDeviceMappings"] if m["DeviceName"] == ROOT)
    return ec2.describe_volumes(VolumeIds=[mapping["Ebs"]["VolumeId"]])["Volumes"][0]


def targets(arn: str) -> dict[str, tuple]:
    health = boto3.client("elbv2", region_name=REGION).describe_target_health(TargetGroupArn=arn)
    return {
        d["Target"]["Id"]: (d["Target"].get("Port"), d["TargetHealth"]["State"])
        for d in health["TargetHealthDescriptions"]
    }


def test_replacement_keeps_the_launch_spec_eip_and_target_group_and_retires_the_source_last(aws, sqlite_url, vault):
    old, rec_id, allocation, arn = web_server(sqlite_url, vault)
    before = root_volume(old)
    result = run_job(sqlite_url, vault, dry_run=False, health_poll_seconds=0)
    assert result.success
    new = rec_rows(sqlite_url)[rec_id].replacement_instance_id
    ec2 = boto3.client("ec2", region_name=REGION)
    user_data = ec2.describe_instance_attribute(InstanceId=new, Attribute="userData")["UserData"]["Value"]
    assert base64.b64decode(user_data).decode() == USER_DATA
    after = root_volume(new)
    keys = ("Size", "VolumeType", "Iops", "Encrypted")
    assert [after[k] for k in keys] == [before[k] for k in keys] == [30, "gp3", 3000, True]
    state = ec2_state(new)
    assert state["MetadataOptions"]["HttpTokens"] == "required"
    assert state["MetadataOptions"]["HttpPutResponseHopLimit"] == 2
    assert state["Monitoring"]["State"] == "enabled" and state["EbsOptimized"] is True
    address = ec2.describe_addresses(AllocationIds=[allocation])["Addresses"][0]
    assert address["InstanceId"] == new
    assert targets(arn) == {new: (8080, "healthy")}  # the old one deregistered
    assert ec2_state(old)["State"]["Name"] in ("shutting-down", "terminated")
    operations = [c.operation for c in audit(sqlite_url, rec_id)]
    # Launch before terminate: the source is retired last, after health, the EIP and the registrations moved.
    order = ["RunInstances", "DescribeInstanceStatus", "RegisterTargets", "DescribeTargetHealth"]
    order += ["AssociateAddress", "DeregisterTargets", "TerminateInstances"]
    positions = [operations.index(op, operations.index("RunInstances")) for op in order]
    assert positions == sorted(positions)


def test_dry_run_reports_the_verdict_and_every_call_it_would_make(aws, sqlite_url, vault):
    old, rec_id, allocation, arn = web_server(sqlite_url, vault)
    result = run_job(sqlite_url, vault)
    assert result.success
    calls = audit(sqlite_url, rec_id)
    planned = [(c.operation, c.params) for c in calls if c.outcome == "planned"]
    assert [op for op, _ in planned] == [
        "RunInstances",
        "RegisterTargets",
        "AssociateAddress",
        "DeregisterTargets",
        "TerminateInstances",
    ]
    run = planned[0][1]
    assert run["UserData"] == USER_DATA
    kms = root_volume(old)["KmsKeyId"]
    expected = {**ROOT_VOLUME, "KmsKeyId": kms, "DeleteOnTermination": True}
    assert run["BlockDeviceMappings"] == [{"DeviceName": ROOT, "Ebs": expected}]
    assert run["MetadataOptions"]["HttpTokens"] == "required"
    assert planned[3][1] == {"TargetGroupArn": arn, "Targets": [{"Id": old, "Port": 8080}]}
    probes = [c.operation for c in calls if c.params.get("DryRun")]
    assert probes == ["RunInstances", "TerminateInstances", "AssociateAddress"]
    (output,) = [e for e in result.all_node_events if e.is_successful_output]
    assert [r.data["verdict"] for r in output.step_output_data.metadata["results"].records] == ["replaceable"]
    # Nothing changed.
    assert targets(arn) == {old: (8080, "healthy")} and ec2_state(old)["State"]["Name"] == "running"
    assert len(boto3.client("ec2", region_name=REGION).describe_instances()["Reservations"]) == 1


def instance_with(**fields) -> dict:
    base = {
        "InstanceId": "i-1",
        "RootDeviceName": ROOT,
        "BlockDeviceMappings": [{"DeviceName": ROOT, "Ebs": {"VolumeId": "vol-root"}}],
        "NetworkInterfaces": [{"PrivateIpAddresses": [{"Primary": True, "PrivateIpAddress": "10.0.0.4"}]}],
        "Placement": {"GroupName": ""},
        "Tags": [],
    }
    return {**base, **fields}


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        (
            {
                "BlockDeviceMappings": [
                    {"DeviceName": ROOT, "Ebs": {"VolumeId": "vol-root"}},
                    {"DeviceName": "/dev/sdf", "Ebs": {"VolumeId": "vol-data"}},
                ]
            },
            "data volume(s) vol-data at /dev/sdf would be left behind",
        ),
        ({"NetworkInterfaces": [{}, {}]}, "2 network interfaces: a secondary ENI cannot move"),
        (
            {
                "NetworkInterfaces": [
                    {
                        "PrivateIpAddresses": [
                            {"Primary": True, "PrivateIpAddress": "10.0.0.4"},
                            {"Primary": False, "PrivateIpAddress": "10.0.0.9"},
                        ]
                    }
                ]
            },
            "secondary private IP(s) 10.0.0.9 cannot move",
        ),
        ({"Placement": {"GroupName": "hpc"}}, "in placement group 'hpc'"),
        ({"Tags": [{"Key": "eks:nodegroup-name", "Value": "ng"}]}, "managed by eks:nodegroup-name=ng"),
    ],
)
def test_eligibility_refuses_what_a_replacement_cannot_carry_in_words(fields, reason):
    (refusal,) = eligibility(instance_with(**fields))
    assert refusal.startswith("instance i-1 is not replaceable: ") and reason in refusal
    assert eligibility(instance_with()) == []


def test_termination_protected_source_is_refused_before_any_change(aws, sqlite_url, vault):
    _, (old,), (rec_id,) = setup_fleet(sqlite_url, vault)
    # moto ignores RunInstances' DisableApiTermination; the attribute is set as an operator would.
    boto3.client("ec2", region_name=REGION).modify_instance_attribute(
        InstanceId=old, DisableApiTermination={"Value": True}
    )
    result = run_job(sqlite_url, vault, dry_run=False)
    assert not result.success
    rec = rec_rows(sqlite_url)[rec_id]
    assert rec.status == "failed" and rec.error == f"instance {old} is not replaceable: it is termination-protected"
    assert [c.operation for c in audit(sqlite_url, rec_id)] == ["DescribeInstances", "DescribeInstanceAttribute"]
    assert len(boto3.client("ec2", region_name=REGION).describe_instances()["Reservations"]) == 1


def test_a_data_volume_is_refused_with_the_reason_in_dry_run_too(aws, sqlite_url, vault):
    extra = [{"DeviceName": ROOT, "Ebs": {"VolumeSize": 8}}, {"DeviceName": "/dev/sdf", "Ebs": {"VolumeSize": 100}}]
    _, (old,), (rec_id,) = setup_fleet(sqlite_url, vault, BlockDeviceMappings=extra)
    result = run_job(sqlite_url, vault)  # dry-run
    assert not result.success  # the verdict is a refusal; the row stays approved and says why
    rec = rec_rows(sqlite_url)[rec_id]
    assert rec.status == "approved"
    assert rec.error.startswith(f"dry-run: instance {old} is not replaceable: data volume(s) vol-")
    assert "at /dev/sdf would be left behind" in rec.error
    assert [c.operation for c in audit(sqlite_url, rec_id)] == ["DescribeInstances"]


def test_target_groups_are_read_page_by_page():
    """A registration on a later page of DescribeTargetGroups still moves (it would be dropped otherwise)."""
    keys = {"region_name": REGION, "aws_access_key_id": "x", "aws_secret_access_key": "y"}
    ec2, elb = boto3.client("ec2", **keys), boto3.client("elbv2", **keys)
    iid = "i-0123456789abcdef0"
    instance = {**instance_with(InstanceId=iid), "InstanceType": "m5.large", "State": {"Name": "running"}}
    instance.update(ImageId="ami-12345678", SubnetId="subnet-1", VpcId="vpc-1")
    view = RecommendationView(
        7, "prod", iid, REGION, "m5.large", "on-demand", "move_to_spot", "m6i.large", None, "spot"
    )
    arn = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web/1"
    with Stubber(ec2) as e, Stubber(elb) as lb:
        e.add_response("describe_instances", {"Reservations": [{"Instances": [instance]}]})
        e.add_response("describe_instance_attribute", {"DisableApiTermination": {"Value": False}})
        e.add_response("describe_instance_attribute", {})
        e.add_response("describe_volumes", {"Volumes": [{"Size": 8, "VolumeType": "gp3", "Iops": 3000}]})
        e.add_response("describe_addresses", {"Addresses": []})
        lb.add_response("describe_target_groups", {"TargetGroups": [], "NextMarker": "page-2"}, {})
        group = {"TargetGroupArn": arn, "TargetType": "instance", "VpcId": "vpc-1", "Port": 80}
        lb.add_response("describe_target_groups", {"TargetGroups": [group]}, {"Marker": "page-2"})
        target = {"Target": {"Id": iid, "Port": 80}, "TargetHealth": {"State": "healthy"}}
        lb.add_response("describe_target_health", {"TargetHealthDescriptions": [target]}, {"TargetGroupArn": arn})
        for _ in range(2):  # the DryRun probes of RunInstances and TerminateInstances
            e.add_client_error("run_instances" if _ == 0 else "terminate_instances", "DryRunOperation", "ok", 412)
        out = execute(ec2, view, dry_run=True, elbv2=elb)
        e.assert_no_pending_responses()
        lb.assert_no_pending_responses()
    assert out.verdict == "replaceable", out.error
    planned = [(c.operation, c.params) for c in out.calls if c.outcome == "planned"]
    assert ("DeregisterTargets", {"TargetGroupArn": arn, "Targets": [{"Id": iid, "Port": 80}]}) in planned
