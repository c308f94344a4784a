"""A live execution updates the `instances` inventory in the row's own transaction; a dry run never does.

Against moto on SQLite and Postgres: the new instance is recorded as EC2 reports it, the old one is
terminated/stopped, the next spot_recommendations proposes nothing for either, and the savings summary
counts the executed saving once, through the new instance.
"""

from __future__ import annotations

import dagster as dg
import pytest
from sqlalchemy import insert, select
from sqlalchemy.exc import OperationalError

from spot_pipelines.assets.optimization import spot_recommendations
from spot_pipelines.core.clock import utcnow
from spot_pipelines.db import discovery as inventory
from spot_pipelines.db import ml as ml_rows
from spot_pipelines.db import optimization as opt
from spot_pipelines.db.discovery import Instance
from spot_pipelines.db.engine import session_factory
from spot_pipelines.db.market_data import InstanceTypeSpec, OnDemandPrice
from spot_pipelines.demo.summary import savings_summary
from spot_pipelines.resources.app_database import AppDatabase
from spot_pipelines.resources.credential_vault import CredentialVault
from tests.execution.test_execution import REGION, audit, ec2_state, rec_rows, run_job, setup_fleet
from tests.support.aws_fakes import ec2_error_response
from tests.support.seed import add_instances, add_recommendation

SAVED = 40.88  # add_recommendation's monthly_savings_usd


@pytest.fixture
def vault(encryption_key):
    return CredentialVault(encryption_key=encryption_key, max_attempts=2)


def inventory_rows(url) -> list[tuple]:
    """Every column of every inventory row, in key order: the byte-for-byte view of the table."""
    with session_factory(url)() as session:
        return [
            tuple(r)
            for r in session.execute(select(Instance.__table__).order_by(Instance.account_id, Instance.instance_id))
        ]


def instance(url, instance_id) -> Instance | None:
    with session_factory(url)() as session:
        return session.scalars(select(Instance).where(Instance.instance_id == instance_id)).one_or_none()


def seed_market(url, az_id: str) -> None:
    """Catalog, on-demand prices and one qualifying spot market per type in the fleet's AZ ID."""
    now = utcnow()
    with session_factory(url)() as session, session.begin():
        session.execute(
            insert(InstanceTypeSpec),
            [
                {
                    "instance_type": t,
                    "family": t.split(".")[0],
                    "vcpu": 2,
                    "memory_gib": 8.0,
                    "architecture": "x86_64",
                    "source": "test",
                }
                for t in ("m5.large", "m6i.large")
            ],
        )
        session.execute(
            insert(OnDemandPrice),
            [
                {
                    "region": REGION,
                    "instance_type": t,
                    "operating_system": "Linux",
                    "usd_per_hour": 0.096,
                    "source": "bundled_snapshot",
                    "as_of": now,
                }
                for t in ("m5.large", "m6i.large")
            ],
        )
        session.execute(
            insert(ml_rows.InterruptionPrediction),
            [
                {
                    "region": REGION,
                    "availability_zone_id": az_id,
                    "instance_type": t,
                    "product_description": "Linux/UNIX",
                    "model_version": 1,
                    "p_interruption": 0.02,
                    "horizon_hours": 24,
                    "risk_score": 0.1,
                    "spot_price": price,
                    "on_demand_price": 0.096,
                    "predicted_at": now,
                }
                for t, price in (("m5.large", 0.035), ("m6i.large", 0.03))
            ],
        )


def recommend(url):
    return dg.materialize(
        [spot_recommendations],
        resources={"app_db": AppDatabase(url=url)},
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )


def test_live_run_records_the_new_instance_and_the_next_recommendations_see_the_real_fleet(aws, db_url, vault):
    account_id, (old,), (rec_id,) = setup_fleet(db_url, vault)
    az_id = instance(db_url, old).availability_zone_id
    # A control that is what the old instance was (on-demand m5.large, same AZ ID): it must still be proposed.
    add_instances(
        db_url, account_id, [{"instance_id": "i-control", "instance_type": "m5.large", "availability_zone_id": az_id}]
    )
    stray = add_recommendation(db_url, account_id, old, status="proposed")
    seed_market(db_url, az_id)

    assert run_job(db_url, vault, dry_run=False).success
    rec = rec_rows(db_url)[rec_id]
    assert rec.status == "executed"
    new_id = rec.replacement_instance_id
    ec2_new = ec2_state(new_id)

    gone = instance(db_url, old)
    assert gone.state == "terminated" and gone.terminated_at == rec.executed_at
    new = instance(db_url, new_id)
    assert (new.account_id, new.region, new.availability_zone, new.availability_zone_id) == (
        account_id,
        REGION,
        ec2_new["Placement"]["AvailabilityZone"],
        az_id,
    )
    assert (new.instance_type, new.lifecycle, new.state) == ("m6i.large", "spot", ec2_new["State"]["Name"])
    assert new.state == "running" and new.platform == "Linux/UNIX" and new.terminated_at is None
    assert new.tags["spot-pipelines:replaces"] == old and new.tags["spot-pipelines:recommendation-id"] == str(rec_id)
    assert new.first_seen_at == rec.executed_at
    assert rec_rows(db_url)[stray].status == "superseded" and new_id in rec_rows(db_url)[stray].error

    before = set(rec_rows(db_url))
    result = recommend(db_url)
    assert result.success
    fresh = [r for i, r in rec_rows(db_url).items() if i not in before]
    # Nothing for the replaced instance; the new spot instance keeps its qualifying pool (no "move to spot").
    assert [(r.instance_id, r.action) for r in fresh] == [("i-control", "move_to_spot")]
    [event] = result.get_asset_materialization_events()
    assert event.materialization.metadata["unchanged_spot_instances"].value == 1
    assert event.materialization.metadata["running_instances"].value == 2

    with session_factory(db_url)() as session:
        stats, open_rows = opt.fleet_savings(session)
    control = fresh[0].monthly_savings_usd
    assert control > 0
    assert stats == {
        account_id: {
            "instances": 2,
            "to_change": 1,
            "monthly": pytest.approx(control),
            "executed": 1,
            "executed_monthly": pytest.approx(SAVED),
        }
    }
    assert [r.instance_id for r in open_rows] == ["i-control"]
    text = savings_summary(db_url)
    assert f"{control:,.2f}" in text and f"{SAVED:,.2f}" in text and old not in text


def test_the_summary_never_counts_an_executed_row_as_still_to_do(aws, sqlite_url, vault):
    account_id, _, (rec_id,) = setup_fleet(sqlite_url, vault)
    assert run_job(sqlite_url, vault, dry_run=False).success
    # Before any new generation: the executed row is the only one, counted once, as executed.
    with session_factory(sqlite_url)() as session:
        stats, open_rows = opt.fleet_savings(session)
    assert stats == {
        account_id: {
            "instances": 1,
            "to_change": 0,
            "monthly": 0.0,
            "executed": 1,
            "executed_monthly": pytest.approx(SAVED),
        }
    }
    assert open_rows == []
    # Once the replacement itself is gone, its saving no longer accrues.
    with session_factory(sqlite_url)() as session, session.begin():
        inventory.mark_retired(
            session, account_id, rec_rows(sqlite_url)[rec_id].replacement_instance_id, "terminate", at=utcnow()
        )
    with session_factory(sqlite_url)() as session:
        assert opt.fleet_savings(session) == ({}, [])


def test_retire_stop_marks_the_old_instance_stopped(aws, sqlite_url, vault):
    _, (old,), (rec_id,) = setup_fleet(sqlite_url, vault)
    assert run_job(sqlite_url, vault, dry_run=False, retire="stop").success
    rec = rec_rows(sqlite_url)[rec_id]
    stopped = instance(sqlite_url, old)
    assert (stopped.state, stopped.terminated_at) == ("stopped", None)
    assert instance(sqlite_url, rec.replacement_instance_id).lifecycle == "spot"


def test_dry_run_leaves_the_inventory_byte_for_byte_unchanged(aws, db_url, vault):
    _, (old,), (rec_id,) = setup_fleet(db_url, vault)
    before = inventory_rows(db_url)
    assert run_job(db_url, vault).success
    assert inventory_rows(db_url) == before
    assert rec_rows(db_url)[rec_id].status == "approved"
    assert ec2_state(old)["State"]["Name"] == "running"


def test_a_database_error_after_the_aws_calls_marks_the_row_failed_not_executed(aws, db_url, vault, monkeypatch):
    _, (old,), (rec_id,) = setup_fleet(db_url, vault)
    before = inventory_rows(db_url)

    def lost_connection(*args, **kwargs):
        raise OperationalError("INSERT INTO instances", {}, Exception("server closed the connection unexpectedly"))

    monkeypatch.setattr(inventory, "record_launched", lost_connection)
    result = run_job(db_url, vault, dry_run=False)
    assert not result.success
    rec = rec_rows(db_url)[rec_id]
    assert rec.status == "failed" and rec.executed_at is None
    new_id = rec.replacement_instance_id
    assert new_id and ec2_state(new_id)["State"]["Name"] == "running"  # the replacement did happen
    assert rec.error.startswith(
        f"EC2 outcome: executed, replacement {new_id} launched; but recording it in the "
        "database failed (OperationalError: server closed the connection unexpectedly)"
    )
    assert "the inventory is stale until the next discovery" in rec.error
    assert inventory_rows(db_url) == before  # the inventory transaction rolled back as a whole
    operations = [c.operation for c in audit(db_url, rec_id)]
    assert operations.index("RunInstances") < operations.index("TerminateInstances")
    assert (
        "recording it in the database failed"
        in result.failure_data_for_node("execute_approved").user_failure_data.description
    )


def test_a_failed_retire_still_records_the_launched_instance(aws, sqlite_url, vault, monkeypatch):
    _, (old,), (rec_id,) = setup_fleet(sqlite_url, vault)
    real_client = CredentialVault.client

    def no_terminate(self, session, service, region=None):
        client = real_client(self, session, service, region)
        client.meta.events.register(
            "before-send.ec2.TerminateInstances",
            lambda **_: ec2_error_response("UnauthorizedOperation", 403, "You are not authorized"),
        )
        return client

    monkeypatch.setattr(CredentialVault, "client", no_terminate)
    assert not run_job(sqlite_url, vault, dry_run=False).success
    rec = rec_rows(sqlite_url)[rec_id]
    assert rec.status == "failed" and "both instances are running" in rec.error
    assert instance(sqlite_url, old).state == "running"
    launched = instance(sqlite_url, rec.replacement_instance_id)
    assert (launched.state, launched.lifecycle, launched.instance_type) == ("running", "spot", "m6i.large")
