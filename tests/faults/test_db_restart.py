"""The app Postgres restarted in the middle of a discovery and of a price ingest (just before the
write's commit), then the same partition re-run: nothing half-written, nothing lost or duplicated,
the failure visible with its cause. Runs on a private cluster (never the shared one on 5432)."""

from __future__ import annotations

from datetime import timedelta

import boto3
import dagster as dg
import pandas as pd
from sqlalchemy import select

import spot_pipelines.assets.discovery as discovery_asset
from spot_pipelines.assets.market_data import spot_price_history
from spot_pipelines.core.clock import utc_today
from spot_pipelines.core.market_data import SPOT_PRICE_COLUMNS
from spot_pipelines.db import market_data as market
from spot_pipelines.db.engine import get_engine
from spot_pipelines.demo.price_emulation import emulate_spot_prices
from spot_pipelines.resources.app_database import AppDatabase
from tests.faults.helpers import account_state, add_keys_account, discover, duplicates, failure_text, stored_instances
from tests.support.aws_fakes import seed_instances
from tests.support.market_data import REGIONS, TYPES, stubbed_apis

TODAY = utc_today()
DAY1, DAY2 = TODAY - timedelta(days=3), TODAY - timedelta(days=2)
PRICE_CONFIG = {"ops": {"spot_price_history": {"config": {"regions": REGIONS}}}}
DB_DOWN = ("terminating connection", "server closed the connection", "connection already closed")


def test_postgres_restart_mid_discovery_then_rerun(
    aws, private_pg, private_pg_url, encryption_key, monkeypatch, report
):
    url = private_pg_url
    session = boto3.Session(region_name="eu-west-1")
    old = seed_instances(session, "eu-west-1", 3)
    add_keys_account(url, encryption_key)
    assert discover(url, encryption_key).success
    before = stored_instances(url)
    assert before == sorted((i, "running") for i in old) and account_state(url)[0] == "active"

    # The fleet changes; the next discovery's write dies with the server just before its commit.
    session.client("ec2").terminate_instances(InstanceIds=old[:1])
    new = seed_instances(boto3.Session(region_name="us-east-1"), "us-east-1", 2)
    real_write, writes = discovery_asset.write_scan, []

    def write_then_restart(db_session, *args, **kwargs):
        summary = real_write(db_session, *args, **kwargs)
        db_session.flush()  # every row is in the open transaction
        writes.append(summary.upserted)
        private_pg.restart()
        return summary

    monkeypatch.setattr(discovery_asset, "write_scan", write_then_restart)
    failed = discover(url, encryption_key)
    assert not failed.success
    assert len(writes) == 4  # the first attempt and the RetryPolicy's 3 retries each lost the server
    cause = failure_text(failed)
    assert "OperationalError" in cause and any(m in cause for m in DB_DOWN), cause
    assert stored_instances(url) == before  # no attempt left half a scan behind
    assert account_state(url) == ("active", None)

    # One restart only: the RetryPolicy's next attempt stores the scan within the same run.
    writes.clear()

    def restart_once(db_session, *args, **kwargs):
        summary = real_write(db_session, *args, **kwargs)
        if not writes:
            db_session.flush()
            private_pg.restart()
        writes.append(summary.upserted)
        return summary

    monkeypatch.setattr(discovery_asset, "write_scan", restart_once)
    retried = discover(url, encryption_key)
    assert retried.success and len(writes) == 2
    assert "OperationalError" in failure_text(retried)  # the lost attempt is in the event log
    expected = sorted([(old[0], "terminated")] + [(i, "running") for i in old[1:] + new])
    assert stored_instances(url) == expected

    # The same partition re-run without faults: the same rows, none duplicated.
    monkeypatch.setattr(discovery_asset, "write_scan", real_write)
    assert discover(url, encryption_key).success
    rows = stored_instances(url)
    assert rows == expected and duplicates(r[0] for r in rows) == 0
    report.runs, report.rows_checked = 4, len(before) * 2 + len(expected) * 2
    report.lost = len(set(expected) - set(rows))
    report.duplicated = duplicates(r[0] for r in rows)


class _CommitRestartsServer:
    """An Engine whose raw connections restart the server just before committing."""

    def __init__(self, engine, cluster, commits: list):
        self._engine, self._cluster, self._commits = engine, cluster, commits
        self.dialect = engine.dialect

    def raw_connection(self):
        raw = self._engine.raw_connection()
        cluster, commits = self._cluster, self._commits

        class Proxy:
            def __getattr__(self, name):
                return getattr(raw, name)

            def commit(self):
                commits.append(1)
                cluster.restart()
                return raw.commit()

        return Proxy()


def _stored_prices(url: str) -> pd.DataFrame:
    t = market.SpotPrice.__table__
    with get_engine(url).connect() as conn:
        rows = conn.execute(select(t).order_by(t.c.day, t.c.availability_zone_id, t.c.instance_type, t.c.ts))
        return pd.DataFrame(rows.mappings().all(), columns=SPOT_PRICE_COLUMNS)


def _ingest(url: str, day, instance):
    return dg.materialize(
        [spot_price_history],
        partition_key=day.isoformat(),
        run_config=PRICE_CONFIG,
        instance=instance,
        raise_on_error=False,
        resources={"app_db": AppDatabase(url=url), "market_apis": stubbed_apis()},
    )


def _price_keys(frame: pd.DataFrame) -> list[tuple]:
    return list(
        frame[["availability_zone_id", "instance_type", "product_description", "ts"]].itertuples(index=False, name=None)
    )


def test_postgres_restart_mid_price_ingest_then_rerun(aws, private_pg, private_pg_url, monkeypatch, report):
    url = private_pg_url
    instance = dg.DagsterInstance.ephemeral()
    with emulate_spot_prices(seed=11, instance_types=TYPES):
        assert _ingest(url, DAY1, instance).success
        first = _stored_prices(url)
        assert len(first) and set(first["day"]) == {DAY1}

        real_replace, commits = market.replace_spot_price_day, []
        monkeypatch.setattr(
            market,
            "replace_spot_price_day",
            lambda engine, *a, **kw: real_replace(_CommitRestartsServer(engine, private_pg, commits), *a, **kw),
        )
        # DAY1 replaced again (DELETE + INSERT from the COPY staging) and DAY2 loaded for the first
        # time: both die at the commit.
        for day in (DAY1, DAY2):
            commits.clear()
            failed = _ingest(url, day, instance)
            assert not failed.success and len(commits) == 4, day  # first attempt + 3 retries
            cause = failure_text(failed)
            assert "OperationalError" in cause or "InterfaceError" in cause, cause
            pd.testing.assert_frame_equal(_stored_prices(url), first)  # DAY1's slice intact, no DAY2 rows

        monkeypatch.setattr(market, "replace_spot_price_day", real_replace)
        assert _ingest(url, DAY1, instance).success and _ingest(url, DAY2, instance).success
    after = _stored_prices(url)
    pd.testing.assert_frame_equal(after[after["day"] == DAY1].reset_index(drop=True), first)
    day2 = after[after["day"] == DAY2]
    assert len(day2) and duplicates(_price_keys(after)) == 0
    report.runs, report.rows_checked = 6, len(first) * 4 + len(after)
    report.duplicated = duplicates(_price_keys(after))
