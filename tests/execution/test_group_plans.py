"""Group-aware plans (moto Auto Scaling): a MixedInstancesPolicy applied (dry-run by default at the
caller, planned only here when dry_run) and reverted from the audit row's before_state; a group on a
launch configuration and missing autoscaling permissions are refused clearly; node-pool snippets."""

from __future__ import annotations

import boto3
import pytest
from botocore.awsrequest import AWSResponse

from spot_pipelines.core.execution import RecommendationView, apply_group_plan, node_pool_snippet, revert_group_plan

REGION = "us-east-1"
VIEW = RecommendationView(
    id=7,
    account_name="prod",
    instance_id="i-0123456789abcdef0",
    region=REGION,
    current_instance_type="m5.large",
    current_lifecycle="on-demand",
    action="move_to_spot",
    target_instance_type="m6i.large",
    target_availability_zone_id=None,
    target_market="spot",
)
TYPES = ["m6i.large", "m5a.large", "m6a.large"]


def web_group(launch_configuration: bool = False):
    ec2, asg = boto3.client("ec2", region_name=REGION), boto3.client("autoscaling", region_name=REGION)
    subnet = ec2.describe_subnets()["Subnets"][0]["SubnetId"]
    if launch_configuration:
        asg.create_launch_configuration(LaunchConfigurationName="old", ImageId="ami-760aaa0f", InstanceType="m5.large")
        source = {"LaunchConfigurationName": "old"}
    else:
        data = {"ImageId": "ami-760aaa0f", "InstanceType": "m5.large"}
        lt = ec2.create_launch_template(LaunchTemplateName="web", LaunchTemplateData=data)["LaunchTemplate"]
        source = {"LaunchTemplate": {"LaunchTemplateId": lt["LaunchTemplateId"], "Version": "$Default"}}
    asg.create_auto_scaling_group(
        AutoScalingGroupName="web", MinSize=0, MaxSize=4, DesiredCapacity=0, VPCZoneIdentifier=subnet, **source
    )
    return asg


def group(asg) -> dict:
    return asg.describe_auto_scaling_groups(AutoScalingGroupNames=["web"])["AutoScalingGroups"][0]


def test_apply_then_revert_a_mixed_instances_policy(aws):
    asg = web_group()
    before = group(asg)
    assert "MixedInstancesPolicy" not in before
    planned = apply_group_plan(asg, VIEW, "web", TYPES, dry_run=True, on_demand_base=1)
    assert planned.status == "approved" and [c.outcome for c in planned.calls] == ["succeeded", "planned"]
    assert "MixedInstancesPolicy" not in group(asg)  # a dry run changes nothing

    applied = apply_group_plan(asg, VIEW, "web", TYPES, dry_run=False, on_demand_base=1, on_demand_percentage=10)
    assert applied.status == "executed"
    policy = group(asg)["MixedInstancesPolicy"]
    assert [o["InstanceType"] for o in policy["LaunchTemplate"]["Overrides"]] == TYPES
    assert policy["InstancesDistribution"] == {
        "OnDemandBaseCapacity": 1,
        "OnDemandPercentageAboveBaseCapacity": 10,
        "SpotAllocationStrategy": "price-capacity-optimized",
    }
    update = applied.calls[-1]
    assert update.operation == "UpdateAutoScalingGroup" and update.outcome == "succeeded"
    previous = update.before_state  # what the audit row keeps: the revert's input
    assert previous == {"LaunchTemplate": {k: before["LaunchTemplate"][k] for k in ("LaunchTemplateId", "Version")}}

    reverted = revert_group_plan(asg, VIEW, "web", previous, dry_run=False)
    assert reverted.status == "executed"
    after = group(asg)
    assert "MixedInstancesPolicy" not in after and after["LaunchTemplate"] == before["LaunchTemplate"]


def test_a_group_on_a_launch_configuration_is_refused_in_words(aws):
    asg = web_group(launch_configuration=True)
    out = apply_group_plan(asg, VIEW, "web", TYPES, dry_run=False)
    assert out.status == "failed"
    assert "uses launch configuration 'old': a mixed instances policy needs a launch template" in out.error
    assert [c.operation for c in out.calls] == ["DescribeAutoScalingGroups"]
    assert group(asg)["LaunchConfigurationName"] == "old"


@pytest.mark.parametrize(("base", "pct"), [(-1, 0), (0, 101)])
def test_bad_on_demand_split_is_refused_naming_the_fields(aws, base, pct):
    asg = web_group()
    out = apply_group_plan(asg, VIEW, "web", TYPES, dry_run=False, on_demand_base=base, on_demand_percentage=pct)
    assert out.status == "failed" and "on_demand_base must be >= 0 and on_demand_percentage in 0..100" in out.error
    assert "MixedInstancesPolicy" not in group(asg)


def test_missing_autoscaling_permission_fails_clearly(aws):
    asg = web_group()

    def denied(**_):
        http = AWSResponse("https://injected.invalid/", 403, {}, None)
        return http, {"Error": {"Code": "AccessDenied", "Message": "no"}, "ResponseMetadata": {"HTTPStatusCode": 403}}

    asg.meta.events.register("before-call.auto-scaling.UpdateAutoScalingGroup", denied)
    out = apply_group_plan(asg, VIEW, "web", TYPES, dry_run=False)
    assert out.status == "failed"
    assert out.error.startswith(
        "account 'prod': the credentials lack permission for autoscaling:UpdateAutoScalingGroup (AccessDenied)"
    )
    assert "MixedInstancesPolicy" not in group(asg)


def test_node_pool_snippets_name_the_types_and_capacity_type():
    karpenter = node_pool_snippet("karpenter.sh/nodepool", "default", TYPES + ["m6i.large"])
    assert '"karpenter.sh/capacity-type"' in karpenter and 'values: ["spot", "on-demand"]' in karpenter
    assert 'values: ["m6i.large", "m5a.large", "m6a.large"]' in karpenter
    eks = node_pool_snippet("eks:nodegroup-name", "ng-1", TYPES)
    assert "--capacity-type SPOT --instance-types m6i.large m5a.large m6a.large" in eks
