"""Execution faults against moto (EC2, ELBv2): a replacement that never becomes healthy, no capacity in
the chosen pool, a source changed since the recommendation, missing ELBv2 permissions. Each counts, in
the reliability matrix, live instances lost (a source retired without a healthy replacement) or duplicated
(two live instances for one recommendation without the row saying so)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import timedelta

import boto3
import dagster as dg
import pytest

from spot_pipelines.core.clock import utcnow
from spot_pipelines.db import optimization as opt
from spot_pipelines.db.engine import session_factory
from spot_pipelines.resources.app_database import AppDatabase
from spot_pipelines.resources.credential_vault import CredentialVault
from spot_pipelines.sensors.execution import STUCK_AFTER, execution_reconciler_sensor
from spot_pipelines.settings import PROJECT_ROOT
from tests.execution.test_execution import REGION, audit, ec2_state, rec_rows, refuse, run_job, setup_fleet
from tests.faults.test_concurrency import CHILD_PYTHONPATH

LIVE = ("pending", "running")


@pytest.fixture
def vault(encryption_key):
    return CredentialVault(encryption_key=encryption_key, max_attempts=2)


def inject(monkeypatch, event: str, handler) -> None:
    """Register `handler` for a botocore event on every client the vault hands out."""
    real_client = CredentialVault.client

    def client(self, session, service, region=None):
        c = real_client(self, session, service, region)
        c.meta.events.register(event, handler)
        return c

    monkeypatch.setattr(CredentialVault, "client", client)


def live_instances() -> list[str]:
    ec2 = boto3.client("ec2", region_name=REGION)
    return [
        i["InstanceId"]
        for r in ec2.describe_instances()["Reservations"]
        for i in r["Instances"]
        if i["State"]["Name"] in LIVE
    ]


def with_target_group(instance_id: str) -> str:
    elb = boto3.client("elbv2", region_name=REGION)
    vpc = ec2_state(instance_id)["VpcId"]
    arn = elb.create_target_group(Name="web", Protocol="HTTP", Port=80, VpcId=vpc)["TargetGroups"][0]["TargetGroupArn"]
    elb.register_targets(TargetGroupArn=arn, Targets=[{"Id": instance_id}])
    return arn


def registered(arn: str) -> set[str]:
    health = boto3.client("elbv2", region_name=REGION).describe_target_health(TargetGroupArn=arn)
    return {d["Target"]["Id"] for d in health["TargetHealthDescriptions"]}


def count(report, old: str, row) -> None:
    """Lost: the source gone without a healthy replacement; duplicated: two live instances the row denies."""
    live = live_instances()
    report.runs, report.rows_checked = report.runs + 1, report.rows_checked + 1
    report.lost += int(old not in live and not (row.status == "executed" and row.replacement_instance_id in live))
    report.duplicated += int(len(live) > 1 and "running" not in (row.error or ""))


def test_replacement_never_passing_status_checks_is_rolled_back(aws, sqlite_url, vault, monkeypatch, report):
    _, (old,), (rec_id,) = setup_fleet(sqlite_url, vault)

    def impaired(parsed=None, **_):
        for status in (parsed or {}).get("InstanceStatuses", []):
            status["InstanceStatus"]["Status"] = "impaired"

    inject(monkeypatch, "after-call.ec2.DescribeInstanceStatus", impaired)
    result = run_job(sqlite_url, vault, dry_run=False, health_poll_seconds=0.01, health_timeout_seconds=0.05)
    assert not result.success
    row = rec_rows(sqlite_url)[rec_id]
    new = audit(sqlite_url, rec_id)[7].after_state["InstanceId"]
    assert row.status == "failed" and row.replacement_instance_id is None
    assert f"replacement {new} did not pass its status checks within 0.05s" in row.error
    assert f"rolled back: replacement {new} terminated, source {old} untouched" in row.error
    assert live_instances() == [old]
    operations = [c.operation for c in audit(sqlite_url, rec_id)]
    assert operations.count("DescribeInstanceStatus") >= 2 and operations[-1] == "TerminateInstances"
    assert audit(sqlite_url, rec_id)[-1].params == {"InstanceIds": [new]}
    count(report, old, row)


def test_replacement_unhealthy_in_its_target_group_is_deregistered_and_rolled_back(
    aws, sqlite_url, vault, monkeypatch, report
):
    _, (old,), (rec_id,) = setup_fleet(sqlite_url, vault)
    arn = with_target_group(old)

    def unhealthy(parsed=None, **_):
        for d in (parsed or {}).get("TargetHealthDescriptions", []):
            if d["Target"]["Id"] != old:
                d["TargetHealth"] = {"State": "unhealthy", "Reason": "Target.FailedHealthChecks"}

    inject(monkeypatch, "after-call.elastic-load-balancing-v2.DescribeTargetHealth", unhealthy)
    result = run_job(sqlite_url, vault, dry_run=False, health_poll_seconds=0, health_timeout_seconds=0)
    assert not result.success
    row = rec_rows(sqlite_url)[rec_id]
    assert row.status == "failed" and f"did not become healthy in {arn} within 0s" in row.error
    assert "rolled back" in row.error
    assert registered(arn) == {old} and live_instances() == [old]
    operations = [c.operation for c in audit(sqlite_url, rec_id)]
    assert operations[-2:] == ["DeregisterTargets", "TerminateInstances"]
    count(report, old, row)


def test_no_capacity_in_the_chosen_pool_fails_clearly_and_launches_nothing(aws, sqlite_url, vault, monkeypatch, report):
    _, (old,), (rec_id,) = setup_fleet(sqlite_url, vault)
    inject(monkeypatch, "before-call.ec2.RunInstances", refuse("InsufficientInstanceCapacity"))
    result = run_job(sqlite_url, vault, dry_run=False, health_poll_seconds=0)
    assert not result.success
    row = rec_rows(sqlite_url)[rec_id]
    assert row.status == "failed" and row.error.startswith("no spot capacity for m6i.large in use1-az")
    assert "InsufficientInstanceCapacity" in row.error and "the old instance is untouched" in row.error
    assert live_instances() == [old]
    count(report, old, row)


@pytest.mark.parametrize("change", ["type", "tags"])
def test_source_changed_since_the_recommendation_is_refused(aws, sqlite_url, vault, change, report):
    _, (old,), (rec_id,) = setup_fleet(sqlite_url, vault)
    ec2 = boto3.client("ec2", region_name=REGION)
    if change == "type":
        ec2.stop_instances(InstanceIds=[old])
        ec2.modify_instance_attribute(InstanceId=old, InstanceType={"Value": "c5.large"})
        ec2.start_instances(InstanceIds=[old])
        expected = f"instance {old} is now c5.large, not m5.large: the recommendation is stale"
    else:
        ec2.create_tags(Resources=[old], Tags=[{"Key": "karpenter.sh/nodepool", "Value": "default"}])
        expected = f"instance {old} is not replaceable: managed by karpenter.sh/nodepool=default"
    result = run_job(sqlite_url, vault, dry_run=False)
    assert not result.success
    row = rec_rows(sqlite_url)[rec_id]
    assert row.status == "failed" and row.error.startswith(expected)
    assert [c.operation for c in audit(sqlite_url, rec_id)] == ["DescribeInstances"]
    assert live_instances() == [old]
    count(report, old, row)


@pytest.mark.parametrize("dry_run", [True, False])
def test_missing_elasticloadbalancing_permission_fails_the_row_clearly(
    aws, sqlite_url, vault, monkeypatch, dry_run, report
):
    _, (old,), (rec_id,) = setup_fleet(sqlite_url, vault)
    inject(monkeypatch, "before-call.elastic-load-balancing-v2.DescribeTargetGroups", refuse("AccessDenied", 403))
    result = run_job(sqlite_url, vault, dry_run=dry_run)
    assert not result.success
    row = rec_rows(sqlite_url)[rec_id]
    assert row.status == ("approved" if dry_run else "failed")
    assert (
        "the credentials lack permission for elasticloadbalancing:DescribeTargetGroups (AccessDenied); "
        "grant elasticloadbalancing:DescribeTargetGroups" in row.error
    )
    assert "RunInstances" not in [c.operation for c in audit(sqlite_url, rec_id)]
    assert live_instances() == [old]
    count(report, old, row)


KILLED_CHILD = """
import sys, threading
import spot_pipelines.core.execution as ex
def launched_then_block(run, retire, new_id, before):
    print("LAUNCHED", new_id, flush=True)
    threading.Event().wait()  # until SIGKILL: the replacement runs, the source is not retired
ex._retire = launched_then_block
from spot_pipelines.resources.credential_vault import CredentialVault
from tests.execution.test_execution import run_job
run_job(sys.argv[1], CredentialVault(encryption_key=sys.argv[2], max_attempts=2), dry_run=False, health_poll_seconds=0)
print("NOT KILLED", flush=True)
"""


def test_run_sigkilled_between_launch_and_retire_is_reconciled_and_rerun_without_a_duplicate(
    moto_server, sqlite_url, encryption_key, tmp_path, report
):
    vault = CredentialVault(encryption_key=encryption_key, max_attempts=2)
    _, (old,), (rec_id,) = setup_fleet(sqlite_url, vault)
    err = tmp_path / "child.err"
    with open(err, "w") as stderr:
        child = subprocess.Popen(
            [sys.executable, "-c", KILLED_CHILD, sqlite_url, encryption_key],
            cwd=PROJECT_ROOT,
            env={**os.environ, "PYTHONPATH": CHILD_PYTHONPATH},
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
        try:
            line = child.stdout.readline()
            assert line.startswith("LAUNCHED"), (line, err.read_text()[-3000:])
            os.kill(child.pid, signal.SIGKILL)
            assert child.wait(timeout=60) == -signal.SIGKILL
        finally:
            if child.poll() is None:
                child.kill()
    new = line.split()[1]
    assert rec_rows(sqlite_url)[rec_id].status == "executing" and sorted(live_instances()) == sorted([old, new])

    # Past the timeout the reconciler says what EC2 has: both running, and what to do.
    with session_factory(sqlite_url)() as session, session.begin():
        row = session.get(opt.SpotRecommendation, rec_id)
        row.status_changed_at = utcnow() - STUCK_AFTER - timedelta(minutes=1)
    context = dg.build_sensor_context(resources={"app_db": AppDatabase(url=sqlite_url), "vault": vault})
    assert execution_reconciler_sensor(context).skip_message == f"settled {rec_id}: failed"
    row = rec_rows(sqlite_url)[rec_id]
    assert row.replacement_instance_id == new and "needs an operator: both the source" in row.error

    # The operator re-approves: the re-run carries on with the live replacement, launching none.
    with session_factory(sqlite_url)() as session, session.begin():
        session.get(opt.SpotRecommendation, rec_id).status = opt.APPROVED
    assert run_job(sqlite_url, vault, dry_run=False, health_poll_seconds=0).success
    row = rec_rows(sqlite_url)[rec_id]
    assert row.status == "executed" and row.replacement_instance_id == new
    assert live_instances() == [new]
    launches = [c.run_id for c in audit(sqlite_url, rec_id) if c.operation == "RunInstances"]
    assert len(launches) == 1  # only the killed run launched
    count(report, old, row)
    report.runs = 3  # the killed run, the reconciler, the re-run
