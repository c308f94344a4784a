"""Least privilege: the AWS actions the code calls, recorded with a botocore event hook on every
client while the main code paths run against moto, equal deploy/iam-policy.json exactly — per
identity: the platform's own (market data, the interruption queue, assuming account roles), the
per-account read role (validation, discovery and commitments), and the account's execution permissions
(execute_approved_recommendations). The README includes that JSON."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import boto3
import botocore.session
import dagster as dg
import pytest
from botocore.stub import Stubber
from click.testing import CliRunner

from spot_pipelines.assets.commitments import aws_commitments
from spot_pipelines.assets.market_data import spot_price_history
from spot_pipelines.cli import main
from spot_pipelines.core import market_data as md
from spot_pipelines.core import placement
from spot_pipelines.core.clock import utc_today
from spot_pipelines.core.placement import Request
from spot_pipelines.demo.commitments import emulate_commitments
from spot_pipelines.demo.price_emulation import emulate_spot_prices
from spot_pipelines.partitions import AWS_ACCOUNTS_PARTITION
from spot_pipelines.resources.app_database import AppDatabase
from spot_pipelines.resources.credential_vault import CredentialVault
from spot_pipelines.settings import PROJECT_ROOT
from tests.faults.helpers import discover
from tests.support.aws_fakes import KEYS_ACCOUNT_ID, ROLE_ACCOUNT_ID, role_session, seed_instances
from tests.support.market_data import REGIONS, TYPES, price_list_item, stubbed_apis

POLICY = PROJECT_ROOT / "deploy" / "iam-policy.json"
PLATFORM, READ, EXECUTION = "PlatformIdentity", "AccountReadRole", "AccountExecutionRole"
# Actions IAM authorizes on top of the API operation, given the parameters the code sends.
IMPLIED = {
    ("ec2:RunInstances", "TagSpecifications"): "ec2:CreateTags",
    ("ec2:RunInstances", "IamInstanceProfile"): "iam:PassRole",
}


class Recorder:
    def __init__(self):
        self.phase: str | None = None  # None: test setup, not recorded
        self.actions: dict[str, set[str]] = {PLATFORM: set(), READ: set(), EXECUTION: set()}

    def attach(self, client) -> None:
        prefix = client.meta.service_model.signing_name  # the IAM service prefix (ec2, sts, sqs, pricing)

        def record(params=None, event_name: str = "", **_):
            if self.phase is None:
                return None
            action = f"{prefix}:{event_name.rsplit('.', 1)[-1]}"
            # The platform identity assumes each account's role, whatever the phase.
            identity = PLATFORM if action == "sts:AssumeRole" else self.phase
            self.actions[identity].add(action)
            for (implied_by, param), implied in IMPLIED.items():
                if action == implied_by and (params or {}).get(param):
                    self.actions[identity].add(implied)
            return None

        client.meta.events.register_first("provide-client-params.*.*", record)
        if prefix == "ec2":
            client.meta.events.register("after-call.ec2.DescribeInstances", self.fill_zone_ids)

    zone_ids: dict[str, str] = {}

    def fill_zone_ids(self, parsed=None, **_):
        """moto omits Placement.AvailabilityZoneId, which EC2 returns: fill it in, as EC2 would."""
        for reservation in (parsed or {}).get("Reservations", []):
            for instance in reservation.get("Instances", []):
                placement = instance.get("Placement") or {}
                if "AvailabilityZoneId" not in placement and placement.get("AvailabilityZone") in self.zone_ids:
                    placement["AvailabilityZoneId"] = self.zone_ids[placement["AvailabilityZone"]]


@pytest.fixture
def recorder(monkeypatch) -> Recorder:
    rec = Recorder()
    original = botocore.session.Session.create_client

    def create_client(self, *args, **kwargs):
        client = original(self, *args, **kwargs)
        rec.attach(client)
        return client

    monkeypatch.setattr(botocore.session.Session, "create_client", create_client)
    return rec


def _policy() -> dict[str, set[str]]:
    doc = json.loads(POLICY.read_text())
    assert doc["Version"] == "2012-10-17"
    return {s["Sid"]: set(s["Action"]) for s in doc["Statement"] if s["Effect"] == "Allow"}


def test_called_aws_actions_equal_the_documented_policy(aws, sqlite_url, encryption_key, monkeypatch, recorder, report):
    monkeypatch.setenv("DATABASE_URL", sqlite_url)
    seed_instances(boto3.Session(region_name="eu-west-1"), "eu-west-1", 2)
    seed_instances(role_session(region="eu-west-1"), "eu-west-1", 2)
    runner = CliRunner()

    # --- per-account read role: onboarding validation and discovery (key-based and role-based)
    recorder.phase = READ
    out = runner.invoke(
        main,
        [
            "accounts",
            "add",
            "dev",
            "--aws-account-id",
            KEYS_ACCOUNT_ID,
            "--access-key-id",
            "AKIAIOSFODNN7EXAMPLE",
            "--regions",
            "eu-west-1",
        ],
        input="wJalrXUtnFEMIK7MDENGbPxRfiCY\n",
    )
    assert out.exit_code == 0, out.output
    out = runner.invoke(
        main,
        [
            "accounts",
            "add",
            "prodrole",
            "--aws-account-id",
            ROLE_ACCOUNT_ID,
            "--role-arn",
            f"arn:aws:iam::{ROLE_ACCOUNT_ID}:role/SpotPipelines",
            "--regions",
            "eu-west-1",
        ],
    )
    assert out.exit_code == 0, out.output
    for name in ("dev", "prodrole"):
        assert discover(sqlite_url, encryption_key, name=name).success
    # Commitments of the role-based account (moto has none of these APIs: the local stand-in answers them).
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(AWS_ACCOUNTS_PARTITION, ["prodrole"])
    with emulate_commitments():
        assert dg.materialize(
            [aws_commitments],
            partition_key="prodrole",
            instance=instance,
            resources={"app_db": AppDatabase(url=sqlite_url), "vault": CredentialVault(encryption_key=encryption_key)},
        ).success

    # --- the platform identity: market data and the interruption queue
    recorder.phase = PLATFORM
    day = utc_today() - timedelta(days=2)
    with emulate_spot_prices(seed=11, instance_types=TYPES):
        assert dg.materialize(
            [spot_price_history],
            partition_key=day.isoformat(),
            run_config={"ops": {"spot_price_history": {"config": {"regions": REGIONS}}}},
            resources={"app_db": AppDatabase(url=sqlite_url), "market_apis": stubbed_apis()},
        ).success
    pricing = boto3.client("pricing", region_name="us-east-1")
    with Stubber(pricing) as stub:
        stub.add_response(
            "get_products",
            {"PriceList": [price_list_item("m5.large", "us-east-1", "0.096")], "FormatVersion": "aws_v1"},
        )
        prices, problems, _ = md.region_on_demand(pricing, "us-east-1")
    assert prices == {"m5.large": 0.096} and problems == []
    # Placement scores (moto has no such API: botocore's Stubber answers, through the real paginator).
    ec2_scores = boto3.client("ec2", region_name="us-east-1")
    scored = Request("us-east-1", ("m5.large", "m6a.large", "m6i.large"), 2)
    with Stubber(ec2_scores) as stub:
        stub.add_response("get_spot_placement_scores", {"SpotPlacementScores": []})
        assert placement.fetch(ec2_scores, scored) == []
    recorder.phase = None
    sqs = boto3.client("sqs", region_name="us-east-1")
    url = sqs.create_queue(QueueName="spot-interruptions")["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"detail-type": "unknown"}))
    monkeypatch.setenv("SPOT_INTERRUPTION_QUEUE_URL", url)
    from spot_pipelines.sensors.interruptions import SpotInterruptionQueue, spot_interruption_sensor

    recorder.phase = PLATFORM
    spot_interruption_sensor(
        dg.build_sensor_context(
            instance=dg.DagsterInstance.ephemeral(),
            resources={"app_db": AppDatabase(url=sqlite_url), "interruption_queue": SpotInterruptionQueue()},
        )
    )

    # --- the account's execution permissions: execute approved recommendations (terminate and stop)
    recorder.phase = None
    from tests.execution.test_execution import run_job, setup_fleet

    iam = boto3.client("iam", region_name="us-east-1")
    profile = iam.create_instance_profile(InstanceProfileName="web")["InstanceProfile"]["Arn"]
    vault = CredentialVault(encryption_key=encryption_key, max_attempts=2)
    # setup_fleet onboards moto's key account again as 'prod': one AWS account is one row.
    assert runner.invoke(main, ["accounts", "remove", "dev", "--yes"]).exit_code == 0
    # Burstable types: their credit specification is carried over.
    account_id, instance_ids, recs = setup_fleet(sqlite_url, vault, count=2, itype="t3.large", target="t3a.large")
    ec2 = boto3.client("ec2", region_name="us-east-1")
    # The first has an Elastic IP and a target-group registration: both move to the replacement.
    allocation = ec2.allocate_address(Domain="vpc")["AllocationId"]
    ec2.associate_address(AllocationId=allocation, InstanceId=instance_ids[0])
    elb = boto3.client("elbv2", region_name="us-east-1")
    vpc = ec2.describe_instances(InstanceIds=instance_ids[:1])["Reservations"][0]["Instances"][0]["VpcId"]
    group = elb.create_target_group(Name="web", Protocol="HTTP", Port=80, VpcId=vpc)["TargetGroups"][0]
    elb.register_targets(TargetGroupArn=group["TargetGroupArn"], Targets=[{"Id": instance_ids[0]}])
    association = ec2.associate_iam_instance_profile(IamInstanceProfile={"Arn": profile}, InstanceId=instance_ids[0])
    assert association["IamInstanceProfileAssociation"]["State"]
    # The second replacement moves to another AZ: the code looks up a subnet there.
    from sqlalchemy import update

    from spot_pipelines.db import optimization as opt
    from spot_pipelines.db.engine import session_factory

    zones = ec2.describe_availability_zones()["AvailabilityZones"]
    recorder.zone_ids = {z["ZoneName"]: z["ZoneId"] for z in zones}
    current = ec2.describe_instances(InstanceIds=[instance_ids[1]])["Reservations"][0]["Instances"][0]
    current_zone = current["Placement"]["AvailabilityZone"]
    other = next(z["ZoneId"] for z in zones if z["ZoneName"] != current_zone)
    with session_factory(sqlite_url)() as session, session.begin():
        session.execute(
            update(opt.SpotRecommendation)
            .where(opt.SpotRecommendation.id == recs[1])
            .values(target_availability_zone_id=other)
        )
    recorder.phase = EXECUTION
    fast = {"dry_run": False, "health_poll_seconds": 0}
    assert run_job(sqlite_url, vault, recommendation_ids=[recs[0]], **fast).success
    assert run_job(sqlite_url, vault, retire="stop", recommendation_ids=[recs[1]], **fast).success
    # An Auto Scaling group member: the plan changes the group's instance mix.
    recorder.phase = None
    from tests.execution.test_group_plans import web_group
    from tests.support.seed import add_recommendation

    web_group()
    group_rec = add_recommendation(sqlite_url, account_id, "i-0123456789abcdef0", action="diversify")
    with session_factory(sqlite_url)() as session, session.begin():
        session.get(opt.SpotRecommendation, group_rec).group_key = "aws:autoscaling:groupName=web"
    recorder.phase = EXECUTION
    assert run_job(sqlite_url, vault, recommendation_ids=[group_rec], dry_run=False).success
    recorder.phase = None

    called, documented = recorder.actions, _policy()
    assert set(documented) == {PLATFORM, READ, EXECUTION}
    for sid in documented:
        missing, unused = called[sid] - documented[sid], documented[sid] - called[sid]
        assert (missing, unused) == (set(), set()), (
            f"{sid}: called but not in the policy {sorted(missing)}, in the policy but never called {sorted(unused)}"
        )
    report.fault = "least privilege: " + ", ".join(f"{sid}={len(a)}" for sid, a in sorted(called.items()))
    report.runs = 7
    report.rows_checked = sum(len(a) for a in called.values())


def test_the_readme_lists_the_policy_actions_per_identity():
    """The README's table is what operators copy: each row names exactly its statement's actions."""
    readme = (PROJECT_ROOT / "README.md").read_text()
    rows = [line for line in readme.splitlines() if line.startswith("| ") and "`" in line and ":" in line]
    documented = [set(re.findall(r"`([a-z0-9-]+:[A-Za-z]+)`", row)) for row in rows]
    documented = [actions for actions in documented if actions]
    statements = [set(s["Action"]) for s in json.loads(POLICY.read_text())["Statement"]]
    assert sorted(map(sorted, documented)) == sorted(map(sorted, statements))
