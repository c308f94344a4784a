"""Group-aware plans (moto Auto Scaling): a MixedInstancesPolicy applied (dry-run by default at the
caller, planned only here when dry_run) and reverted from the audit row's before_state; a group on a
launch configuration and missing autoscaling permissions are refused clearly; node-pool snippets."""

from __future__ import annotations

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from click.testing import CliRunner
from sqlalchemy import update

from spot_pipelines.cli.recommendations import recommendations
from spot_pipelines.core.execution import RecommendationView, apply_group_plan, node_pool_snippet, revert_group_plan
from spot_pipelines.db import optimization as opt
from spot_pipelines.db.engine import session_factory
from spot_pipelines.resources.credential_vault import CredentialVault
from tests.execution.test_execution import audit, rec_rows, run_job
from tests.support.seed import add_keys_account, add_recommendation

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


def test_the_job_applies_an_approved_group_recommendation_and_the_cli_reverts_it(
    aws, sqlite_url, encryption_key, monkeypatch
):
    asg = web_group()
    vault = CredentialVault(encryption_key=encryption_key, max_attempts=2)
    account_id = add_keys_account(sqlite_url, vault)
    rec_id = add_recommendation(sqlite_url, account_id, "i-0123456789abcdef0", action="diversify")
    candidates = [
        {
            "instance_type": t,
            "availability_zone_id": "use1-az1",
            "spot_price": 0.04,
            "p_interruption": 0.02,
            "risk_adjusted_hourly_cost": 0.041,
        }
        for t in ("m5a.large", "m6a.large")
    ]
    with session_factory(sqlite_url)() as session, session.begin():
        session.execute(
            update(opt.SpotRecommendation)
            .where(opt.SpotRecommendation.id == rec_id)
            .values(group_key="aws:autoscaling:groupName=web", candidates=candidates)
        )
    assert run_job(sqlite_url, vault).success  # dry-run: planned only
    assert "MixedInstancesPolicy" not in group(asg) and rec_rows(sqlite_url)[rec_id].status == "approved"
    assert run_job(sqlite_url, vault, dry_run=False).success
    row = rec_rows(sqlite_url)[rec_id]
    assert row.status == "executed" and row.replacement_instance_id is None
    overrides = group(asg)["MixedInstancesPolicy"]["LaunchTemplate"]["Overrides"]
    assert [o["InstanceType"] for o in overrides] == ["m6i.large", "m5a.large", "m6a.large"]
    (update_row,) = [a for a in audit(sqlite_url, rec_id) if a.operation == "UpdateAutoScalingGroup" and not a.dry_run]
    assert "LaunchTemplate" in update_row.before_state  # the revert's input, in the audit trail
    # The revert is one command: dry-run first, then --apply puts the launch template back.
    monkeypatch.setenv("DATABASE_URL", sqlite_url)
    out = CliRunner().invoke(recommendations, ["show", str(rec_id)])
    assert out.exit_code == 0 and "group plan: UpdateAutoScalingGroup web MixedInstancesPolicy" in out.output
    out = CliRunner().invoke(recommendations, ["revert-group", str(rec_id)])
    assert out.exit_code == 0, out.output
    assert "dry-run: would revert" in out.output and "MixedInstancesPolicy" in group(asg)
    out = CliRunner().invoke(recommendations, ["revert-group", str(rec_id), "--apply"])
    assert out.exit_code == 0, out.output
    assert "MixedInstancesPolicy" not in group(asg) and group(asg)["LaunchTemplate"]["LaunchTemplateName"] == "web"


def test_show_prints_the_node_pool_artifact(sqlite_url, encryption_key, monkeypatch):
    vault = CredentialVault(encryption_key=encryption_key)
    account_id = add_keys_account(sqlite_url, vault)
    rec_id = add_recommendation(sqlite_url, account_id, "i-1", status="proposed")
    with session_factory(sqlite_url)() as session, session.begin():
        session.get(opt.SpotRecommendation, rec_id).group_key = "karpenter.sh/nodepool=default"
    monkeypatch.setenv("DATABASE_URL", sqlite_url)
    out = CliRunner().invoke(recommendations, ["show", str(rec_id)])
    assert out.exit_code == 0, out.output
    assert "artifact (for the group's owner to apply):" in out.output
    assert "# Karpenter NodePool default" in out.output and '"karpenter.sh/capacity-type"' in out.output
