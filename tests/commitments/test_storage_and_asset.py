"""Snapshots with history, billing families pooling commitments, and the aws_commitments asset against the
emulator with the commitment stand-in (real boto3 clients, the responses AWS's shape); SQLite and Postgres."""

from __future__ import annotations

from datetime import timedelta

import dagster as dg
import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from spot_pipelines.assets.commitments import aws_commitments
from spot_pipelines.cli import main
from spot_pipelines.core import commitments as cm
from spot_pipelines.core.clock import utcnow
from spot_pipelines.db import commitments as rows
from spot_pipelines.db.engine import get_engine, transaction
from spot_pipelines.demo.commitments import demo_commitments, emulate_commitments
from spot_pipelines.partitions import AWS_ACCOUNTS_PARTITION
from spot_pipelines.resources.app_database import AppDatabase
from spot_pipelines.resources.credential_vault import CredentialVault
from tests.commitments.support import fleet, instance, leaving
from tests.discovery.test_assets import account_row, add_account
from tests.support.accounts import add_account as add_plain_account


def fetched_with_ri(rid: str, count: int) -> cm.Fetched:
    now = utcnow()
    item = {
        "ReservedInstancesId": rid,
        "InstanceType": "m5.xlarge",
        "InstanceCount": count,
        "Scope": "Region",
        "ProductDescription": "Linux/UNIX",
        "State": "active",
        "End": now + timedelta(days=300),
        "Duration": 365 * 86400,
        "FixedPrice": 0.0,
        "UsagePrice": 0.115,
    }
    parsed = cm.parse_reserved_instances([item], account_id=0, region="us-east-1", zone_ids={}, now=now)
    return cm.Fetched(reserved=parsed.rows, gaps=["ce:GetReservationUtilization denied (AccessDenied): unknown"])


def store(url, account_id, fetched):
    with transaction(url) as session:
        return rows.write_refresh(session, account_id, fetched, fetched_at=utcnow())


def test_the_newest_snapshot_counts_history_is_kept_and_a_billing_family_pools_it(db_url):
    payer = add_plain_account(db_url, "payer", "111122223333")
    member = add_plain_account(db_url, "member", "444455556666")
    store(db_url, payer, fetched_with_ri("ri-old", 1))
    store(db_url, payer, fetched_with_ri("ri-new", 2))
    with get_engine(db_url).connect() as conn:
        assert conn.execute(select(func.count()).select_from(rows.CommitmentRefresh)).scalar() == 2
        book, pools = rows.read_book(conn), rows.account_pools(conn)
    assert book.reserved["commitment_id"].tolist() == ["ri-new"]
    assert pools == {payer: f"account:{payer}", member: f"account:{member}"}
    assert book.gaps[f"account:{payer}"][0].startswith("ce:GetReservationUtilization denied")
    runner = CliRunner()
    for name in ("payer", "member"):
        out = runner.invoke(main, ["accounts", "billing-family", name, "acme"], env={"DATABASE_URL": db_url})
        assert out.exit_code == 0, out.output
    with get_engine(db_url).connect() as conn:
        book, pools = rows.read_book(conn), rows.account_pools(conn)
    assert set(pools.values()) == {"family:acme"} and book.reserved["pool"].tolist() == ["family:acme"]
    # The known answer through storage: 4 × m5.xlarge over both accounts, the payer's RI for 2.
    f = fleet(*(instance(f"i-{k}", "m5.xlarge", pool="family:acme") for k in range(4)))
    ev = cm.evaluate(f, leaving(f, "i-0"), book, utcnow())
    assert ev.coverage["covered_fraction"].tolist() == [1.0, 1.0, 0.0, 0.0]
    assert ev.changes["bill_change_usd_per_hour"].tolist() == pytest.approx([-0.192])
    out = runner.invoke(main, ["accounts", "billing-family", "member", "--none"], env={"DATABASE_URL": db_url})
    assert out.exit_code == 0
    with get_engine(db_url).connect() as conn:
        assert rows.account_pools(conn)[member] == f"account:{member}"
    bad = runner.invoke(main, ["accounts", "billing-family", "nobody", "acme"], env={"DATABASE_URL": db_url})
    assert bad.exit_code == 1 and "no account named" in bad.output


def materialize(url, vault, name="prod"):
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(AWS_ACCOUNTS_PARTITION, [name])
    return dg.materialize(
        [aws_commitments],
        partition_key=name,
        instance=instance,
        raise_on_error=False,
        resources={"app_db": AppDatabase(url=url), "vault": vault},
    )


def refreshes(url) -> int:
    with get_engine(url).connect() as conn:
        return conn.execute(select(func.count()).select_from(rows.CommitmentRefresh)).scalar()


def test_the_asset_stores_a_snapshot_per_run_and_a_malformed_answer_stores_nothing(aws, db_url, encryption_key):
    vault = CredentialVault(encryption_key=encryption_key, max_attempts=2)
    add_account(db_url, vault, "prod", regions=["us-east-1"])
    with emulate_commitments():
        result = materialize(db_url, vault)
        assert result.success
        assert materialize(db_url, vault).success
    meta = result.asset_materializations_for_node("aws_commitments")[0].metadata
    assert meta["reserved_instances"].value == 1 and meta["savings_plans"].value == 1
    assert meta["savings_plan_rates"].value == 4 and meta["gaps"].value == []
    assert meta["utilization_pct"].value == {"savings_plans": 100.0, "reserved_instances": 100.0}
    assert refreshes(db_url) == 2
    with get_engine(db_url).connect() as conn:
        book = rows.read_book(conn)
    account_id = account_row(db_url, "prod").id
    assert book.reserved["commitment_id"].tolist() == ["ri-0demo0c52xlarge01"]
    assert book.savings_plans["pool"].tolist() == [f"account:{account_id}"]
    broken = demo_commitments()
    del broken["DescribeReservedInstances"]["ReservedInstances"][0]["InstanceCount"]
    with emulate_commitments(broken):
        failed = materialize(db_url, vault)
    assert not failed.success
    failure = next(e for e in failed.all_events if e.is_step_failure).step_failure_data.error
    assert "ReservedInstances[0].InstanceCount: missing from the response" in str(failure.message)
    assert refreshes(db_url) == 2  # stored data untouched


def test_denied_savings_plans_read_is_a_stated_gap_in_the_metadata(aws, sqlite_url, encryption_key):
    vault = CredentialVault(encryption_key=encryption_key, max_attempts=2)
    add_account(sqlite_url, vault, "prod", regions=["us-east-1"])
    partial = demo_commitments()
    partial["DescribeSavingsPlans"] = {"Error": {"Code": "AccessDeniedException", "Message": "not authorized"}}
    with emulate_commitments(partial):
        result = materialize(sqlite_url, vault)
    assert result.success
    meta = result.asset_materializations_for_node("aws_commitments")[0].metadata
    assert meta["savings_plans"].value == 0 and meta["reserved_instances"].value == 1
    assert meta["gaps"].value == [
        "savingsplans:DescribeSavingsPlans denied (AccessDeniedException): Savings Plans are unknown"
    ]
    with get_engine(sqlite_url).connect() as conn:
        book = rows.read_book(conn)
    assert list(book.gaps.values()) == [meta["gaps"].value]
