"""The executed row records the realised hourly price of what was launched, from stored list prices;
a missing input leaves it empty and says so, never zero (moto, SQLite and Postgres)."""

from __future__ import annotations

from datetime import timedelta

import boto3
import pytest
from sqlalchemy import insert

from spot_pipelines.core.clock import utcnow
from spot_pipelines.db import optimization as opt
from spot_pipelines.db.engine import session_factory
from spot_pipelines.db.market_data import OnDemandPrice, SpotPrice
from spot_pipelines.resources.credential_vault import CredentialVault
from tests.execution.test_execution import REGION, ec2_state, rec_rows, run_job, setup_fleet


@pytest.fixture
def vault(encryption_key):
    return CredentialVault(encryption_key=encryption_key, max_attempts=2)


def spot_price(url, az_id: str, price: float, ago: timedelta, itype: str = "m6i.large") -> None:
    ts = utcnow() - ago
    with session_factory(url)() as session, session.begin():
        session.execute(
            insert(SpotPrice),
            [
                {
                    "day": ts.date(),
                    "ts": ts,
                    "region": REGION,
                    "availability_zone": "us-east-1a",
                    "availability_zone_id": az_id,
                    "instance_type": itype,
                    "product_description": "Linux/UNIX",
                    "price": price,
                }
            ],
        )


def az_id_of(instance_id: str) -> str:
    zone = ec2_state(instance_id)["Placement"]["AvailabilityZone"]
    ec2 = boto3.client("ec2", region_name=REGION)
    return ec2.describe_availability_zones(ZoneNames=[zone])["AvailabilityZones"][0]["ZoneId"]


def test_executed_row_records_the_spot_price_in_force_for_the_replacement(aws, db_url, vault):
    _, (old,), (rec_id,) = setup_fleet(db_url, vault)
    az_id = az_id_of(old)
    spot_price(db_url, az_id, 0.0412, timedelta(hours=3))
    spot_price(db_url, az_id, 0.0377, timedelta(hours=1))  # the price in force now
    spot_price(db_url, "use1-az9", 0.001, timedelta(minutes=5))  # another pool: not this one
    assert run_job(db_url, vault, dry_run=False, health_poll_seconds=0).success
    row = rec_rows(db_url)[rec_id]
    assert row.status == "executed" and row.realised_hourly_usd == pytest.approx(0.0377)
    assert row.realised_price_basis.startswith(f"list spot price of m6i.large Linux/UNIX in {az_id} since ")


def test_a_missing_price_leaves_the_realised_price_empty_not_zero(aws, sqlite_url, vault):
    _, (old,), (rec_id,) = setup_fleet(sqlite_url, vault)
    assert run_job(sqlite_url, vault, dry_run=False, health_poll_seconds=0).success
    row = rec_rows(sqlite_url)[rec_id]
    assert row.status == "executed" and row.realised_hourly_usd is None
    assert row.realised_price_basis.startswith(f"no stored spot price for m6i.large Linux/UNIX in {az_id_of(old)}")


def test_an_on_demand_replacement_records_its_on_demand_list_price(aws, sqlite_url, vault):
    _, (old,), (rec_id,) = setup_fleet(sqlite_url, vault)
    with session_factory(sqlite_url)() as session, session.begin():
        session.get(opt.SpotRecommendation, rec_id).target_market = "on-demand"
        session.execute(
            insert(OnDemandPrice),
            [
                {
                    "region": REGION,
                    "instance_type": "m6i.large",
                    "operating_system": "Linux",
                    "usd_per_hour": 0.096,
                    "source": "bundled_snapshot",
                    "as_of": utcnow(),
                }
            ],
        )
    assert run_job(sqlite_url, vault, dry_run=False, health_poll_seconds=0).success
    row = rec_rows(sqlite_url)[rec_id]
    assert row.realised_hourly_usd == 0.096
    assert row.realised_price_basis.startswith("list on-demand price of m6i.large in us-east-1 (bundled_snapshot, ")
