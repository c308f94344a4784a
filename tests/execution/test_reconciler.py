"""execution_reconciler_sensor settles rows left `executing` from what EC2 says, idempotently (moto)."""

from __future__ import annotations

from datetime import timedelta

import boto3
import dagster as dg
import pytest
from sqlalchemy import select, update

from spot_pipelines.core.clock import utcnow
from spot_pipelines.core.execution import TAG_RECOMMENDATION
from spot_pipelines.db import optimization as opt
from spot_pipelines.db.discovery import Instance
from spot_pipelines.db.engine import session_factory
from spot_pipelines.resources.app_database import AppDatabase
from spot_pipelines.resources.credential_vault import CredentialVault
from spot_pipelines.sensors.execution import STUCK_AFTER, execution_reconciler_sensor
from tests.execution.test_execution import REGION, audit, ec2_state, rec_rows, setup_fleet


@pytest.fixture
def vault(encryption_key):
    return CredentialVault(encryption_key=encryption_key, max_attempts=2)


def mark_executing(url, rec_id: int, since) -> None:
    with session_factory(url)() as session, session.begin():
        session.execute(
            update(opt.SpotRecommendation)
            .where(opt.SpotRecommendation.id == rec_id)
            .values(status=opt.EXECUTING, status_changed_at=since)
        )


def tick(url, vault) -> str:
    context = dg.build_sensor_context(resources={"app_db": AppDatabase(url=url), "vault": vault})
    return execution_reconciler_sensor(context).skip_message


def replacement_for(rec_id: int, source: str) -> str:
    """What a killed run's RunInstances left: an instance tagged with the recommendation."""
    ec2 = boto3.client("ec2", region_name=REGION)
    tags = [{"Key": TAG_RECOMMENDATION, "Value": str(rec_id)}]
    return ec2.run_instances(
        ImageId="ami-760aaa0f",
        MinCount=1,
        MaxCount=1,
        InstanceType="m6i.large",
        SubnetId=ec2_state(source)["SubnetId"],
        TagSpecifications=[{"ResourceType": "instance", "Tags": tags}],
    )["Instances"][0]["InstanceId"]


def stored(url, instance_id) -> Instance | None:
    with session_factory(url)() as session:
        return session.scalars(select(Instance).where(Instance.instance_id == instance_id)).one_or_none()


@pytest.mark.parametrize("case", ["retired", "launched_only", "nothing_launched", "both_gone"])
def test_stuck_rows_are_settled_from_ec2_truth_once(aws, db_url, vault, case):
    _, (old,), (rec_id,) = setup_fleet(db_url, vault)
    mark_executing(db_url, rec_id, utcnow() - STUCK_AFTER - timedelta(minutes=1))
    ec2 = boto3.client("ec2", region_name=REGION)
    new = replacement_for(rec_id, old) if case in ("retired", "launched_only") else None
    if case in ("retired", "both_gone"):
        ec2.terminate_instances(InstanceIds=[old])
    assert tick(db_url, vault).startswith(f"settled {rec_id}: ")
    row = rec_rows(db_url)[rec_id]
    if case == "retired":
        assert row.status == "executed" and row.replacement_instance_id == new and row.error is None
        assert stored(db_url, new).state == "running" and stored(db_url, old).state == "terminated"
    elif case == "launched_only":
        assert row.status == "failed" and row.replacement_instance_id == new
        assert f"needs an operator: both the source {old} and its replacement {new} are running" in row.error
        assert stored(db_url, new).state == "running"  # the inventory knows both live instances
    elif case == "nothing_launched":
        assert row.status == "failed" and f"no replacement is running; the source {old} is untouched" in row.error
    else:
        assert row.status == "failed" and "needs an operator: neither the source" in row.error
    assert {c.operation for c in audit(db_url, rec_id)} <= {"DescribeInstances", "DescribeSubnets"}  # reads only
    calls = len(audit(db_url, rec_id))
    assert tick(db_url, vault) == "0 stuck, none settled"  # idempotent: a settled row is left alone
    assert len(audit(db_url, rec_id)) == calls and rec_rows(db_url)[rec_id].status == row.status


def test_a_row_executing_for_less_than_the_timeout_is_left_alone(aws, sqlite_url, vault):
    _, (old,), (rec_id,) = setup_fleet(sqlite_url, vault)
    mark_executing(sqlite_url, rec_id, utcnow() - STUCK_AFTER + timedelta(minutes=5))
    assert tick(sqlite_url, vault) == "0 stuck, none settled"
    assert rec_rows(sqlite_url)[rec_id].status == "executing" and not audit(sqlite_url, rec_id)


def test_a_stuck_group_plan_is_handed_to_an_operator_not_guessed(aws, sqlite_url, vault):
    _, (old,), (rec_id,) = setup_fleet(sqlite_url, vault)
    mark_executing(sqlite_url, rec_id, utcnow() - STUCK_AFTER - timedelta(minutes=1))
    with session_factory(sqlite_url)() as session, session.begin():
        session.get(opt.SpotRecommendation, rec_id).group_key = "aws:autoscaling:groupName=web"
    assert tick(sqlite_url, vault) == f"settled {rec_id}: failed"
    row = rec_rows(sqlite_url)[rec_id]
    assert "needs an operator: whether the group plan reached aws:autoscaling:groupName=web is unknown" in row.error
    assert ec2_state(old)["State"]["Name"] == "running"  # the member itself is not the plan's to retire
