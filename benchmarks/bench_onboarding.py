"""account_onboarding_sensor with 10,000 accounts in the table (issue 2).

Ours: one tick of the real sensor (indexed query of new `connected` accounts past the cursor,
one partition listing, one SensorResult). Baseline: what a first sensor usually looks like —
load every account row and ask the instance about each account's partition one at a time.
"""

from __future__ import annotations

import os
import sys
import tempfile

from benchmarks.common import fresh_postgres_db, median_time, result_row

ACCOUNTS = 10_000
NEW_PER_TICK = 200  # accounts onboarded since the last tick


def _seed(url: str) -> None:
    from sqlalchemy import insert

    from spot_pipelines.core.clock import utcnow
    from spot_pipelines.db.accounts import Account
    from spot_pipelines.db.engine import ensure_schema

    now = utcnow()
    rows = [
        {
            "name": f"acct-{i:05d}",
            "aws_account_id": f"{100000000000 + i}",
            "auth_method": "role",
            "role_arn": f"arn:aws:iam::{100000000000 + i}:role/R",
            "created_at": now,
            "updated_at": now,
            "status": "connected" if i >= ACCOUNTS - NEW_PER_TICK else "active",
        }
        for i in range(ACCOUNTS)
    ]
    with ensure_schema(url).begin() as conn:
        conn.execute(insert(Account), rows)


def _naive_tick(url: str, instance) -> int:
    from sqlalchemy import select

    from spot_pipelines.db.accounts import Account
    from spot_pipelines.db.engine import session_factory
    from spot_pipelines.partitions import AWS_ACCOUNTS_PARTITION

    requests = 0
    with session_factory(url)() as session:
        for account in session.scalars(select(Account)):
            if account.status == "connected" and not instance.has_dynamic_partition(
                AWS_ACCOUNTS_PARTITION, account.name
            ):
                requests += 1
    return requests


def _measure(url: str, backend: str) -> list[dict]:
    import dagster as dg

    from spot_pipelines.partitions import AWS_ACCOUNTS_PARTITION
    from spot_pipelines.resources.app_database import AppDatabase
    from spot_pipelines.sensors.discovery import account_onboarding_sensor

    _seed(url)
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(AWS_ACCOUNTS_PARTITION, [f"acct-{i:05d}" for i in range(ACCOUNTS - NEW_PER_TICK)])
    cursor = str(ACCOUNTS - NEW_PER_TICK)  # the previous tick saw every account before these

    def tick():
        result = account_onboarding_sensor(
            dg.build_sensor_context(instance=instance, cursor=cursor, resources={"app_db": AppDatabase(url=url)})
        )
        assert len(result.run_requests) == NEW_PER_TICK

    ours, _ = median_time(tick, repeat=5)
    baseline, _ = median_time(lambda: _naive_tick(url, instance), repeat=3)
    return [
        result_row(
            f"onboarding sensor tick, {ACCOUNTS:,} accounts ({backend})",
            ours,
            baseline,
            "s",
            f"{NEW_PER_TICK} new connected accounts; baseline loads every row and checks "
            "each account's partition one call at a time",
            target="tick well under 1 s",
        )
    ]


def run(quick: bool = False) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        rows += _measure(f"sqlite:///{os.path.join(tmp, 'bench.db')}", "SQLite")
    with fresh_postgres_db("bench_onboarding") as url:
        rows += _measure(url, "Postgres")
    return rows


if __name__ == "__main__":
    for row in run("--quick" in sys.argv):
        print(row)
