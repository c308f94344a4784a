"""Two runs of the same partition at once (both inside their write at the same moment), and a run
process SIGKILLed in the middle of its write transaction, then the partition re-run: the result
equals one run's, nothing duplicated, nothing lost, the killed run never reported a success."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import boto3
import dagster as dg
import pandas as pd
import pytest

import spot_pipelines.assets.discovery as discovery_asset
from spot_pipelines.db import market_data as market
from spot_pipelines.demo.price_emulation import emulate_spot_prices
from spot_pipelines.settings import PROJECT_ROOT
from tests.faults.helpers import add_keys_account, discover, duplicates, failure_text, stored_instances
from tests.faults.test_db_restart import DAY1, _ingest, _price_keys, _stored_prices
from tests.support.aws_fakes import seed_instances
from tests.support.market_data import TYPES


@pytest.fixture(params=["sqlite", "postgres"])
def app_url(request):
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_url")
    return request.getfixturevalue("private_pg_url")


def _both_at_once(fn, n: int = 2) -> list:
    results: list = [None] * n
    errors: list = []

    def run(i):
        try:
            results[i] = fn()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=240)
    assert not errors, errors
    return results


def test_two_discoveries_of_one_partition_at_once(aws, app_url, encryption_key, monkeypatch, report):
    ids = seed_instances(boto3.Session(region_name="eu-west-1"), "eu-west-1", 4) + seed_instances(
        boto3.Session(region_name="us-east-1"), "us-east-1", 3
    )
    add_keys_account(app_url, encryption_key)
    real_write = discovery_asset.write_scan
    both_writing = threading.Barrier(2, timeout=120)
    attempts: list[int] = []

    def write_together(session, *args, **kwargs):
        attempts.append(1)
        if len(attempts) <= 2:
            both_writing.wait()  # the first attempt of each run enters its write at the same time
        return real_write(session, *args, **kwargs)

    monkeypatch.setattr(discovery_asset, "write_scan", write_together)
    results = _both_at_once(lambda: discover(app_url, encryption_key))
    outcomes = [r.success for r in results]
    # A run that lost the race (SQLite: the snapshot went stale) failed its attempt visibly and
    # its RetryPolicy re-ran it; both end successful.
    for r in results:
        assert r.success, failure_text(r)
    rows = stored_instances(app_url)
    assert rows == sorted((i, "running") for i in ids)
    report.runs, report.rows_checked = len(results), len(rows)
    report.lost, report.duplicated = len(set(ids) - {i for i, _ in rows}), duplicates(i for i, _ in rows)
    assert outcomes == [True, True]


def test_two_price_ingests_of_one_day_at_once(aws, private_pg_url, monkeypatch, report):
    url = private_pg_url
    with emulate_spot_prices(seed=11, instance_types=TYPES):
        assert _ingest(url, DAY1, dg.DagsterInstance.ephemeral()).success
        once = _stored_prices(url)
        real_replace = market.replace_spot_price_day
        both_writing = threading.Barrier(2, timeout=120)
        calls: list[int] = []

        def replace_together(*args, **kwargs):
            calls.append(1)
            if len(calls) <= 2:
                both_writing.wait()
            return real_replace(*args, **kwargs)

        monkeypatch.setattr(market, "replace_spot_price_day", replace_together)
        results = _both_at_once(lambda: _ingest(url, DAY1, dg.DagsterInstance.ephemeral()))
    for r in results:
        assert r.success, failure_text(r)
    after = _stored_prices(url)
    pd.testing.assert_frame_equal(after, once)  # equal to one run's rows
    report.runs, report.rows_checked = 3, len(once) + len(after)
    report.duplicated = duplicates(_price_keys(after))


CHILD = """
import sys, threading
import spot_pipelines.assets.discovery as d
from tests.faults.helpers import discover
real = d.write_scan
def write_then_block(session, *args, **kwargs):
    summary = real(session, *args, **kwargs)
    session.flush()  # the rows are in the open transaction
    print("WRITTEN", summary.upserted, flush=True)
    threading.Event().wait()  # until SIGKILL
d.write_scan = write_then_block
import dagster as dg
with dg.DagsterInstance.get() as instance:
    discover(sys.argv[1], sys.argv[2], instance=instance)
print("NOT KILLED", flush=True)
"""


# The project root first, then whatever PYTHONPATH the session has (the clock shift's sitecustomize).
CHILD_PYTHONPATH = os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")]))


def kill_once_written(child: subprocess.Popen, stderr, err_path: Path) -> None:
    """Wait for the child's WRITTEN line (it is inside its write transaction), then SIGKILL it."""
    try:
        line = child.stdout.readline()
        assert line.startswith("WRITTEN"), (line, err_path.read_text()[-3000:])
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait(timeout=60) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
        stderr.close()


def test_run_sigkilled_mid_write_then_rerun(moto_server, app_url, encryption_key, tmp_path, report):
    old = seed_instances(boto3.Session(region_name="eu-west-1"), "eu-west-1", 3)
    add_keys_account(app_url, encryption_key)
    home = Path(os.environ["DAGSTER_HOME"])
    with dg.DagsterInstance.get() as instance:
        assert discover(app_url, encryption_key, instance=instance).success
    before = stored_instances(app_url)
    boto3.client("ec2", region_name="eu-west-1").terminate_instances(InstanceIds=old[:1])
    new = seed_instances(boto3.Session(region_name="us-east-1"), "us-east-1", 2)

    stderr = open(tmp_path / "child.err", "w")
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, app_url, encryption_key],
        cwd=PROJECT_ROOT,
        env={**os.environ, "PYTHONPATH": CHILD_PYTHONPATH, "DAGSTER_HOME": str(home)},
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
    )
    kill_once_written(child, stderr, tmp_path / "child.err")  # the child is inside its write transaction

    # The killed transaction left nothing behind (and holds no lock: the next reads and writes run).
    assert stored_instances(app_url) == before
    with dg.DagsterInstance.get() as instance:
        killed = [r for r in instance.get_runs() if r.status != dg.DagsterRunStatus.SUCCESS]
        assert len(killed) == 1 and killed[0].status == dg.DagsterRunStatus.STARTED  # never reported a success
        rerun = discover(app_url, encryption_key, instance=instance)
        assert rerun.success, failure_text(rerun)
    rows = stored_instances(app_url)
    expected = sorted([(old[0], "terminated")] + [(i, "running") for i in old[1:] + new])
    assert rows == expected
    report.runs, report.rows_checked = 3, len(before) + len(rows)
    report.lost = len(set(expected) - set(rows))
    report.duplicated = duplicates(i for i, _ in rows)


CHILD_PRICES = """
import sys, threading
from datetime import date
import dagster as dg
from moto import mock_aws
from spot_pipelines.db import market_data as market
from spot_pipelines.demo.price_emulation import emulate_spot_prices
from tests.faults.test_db_restart import _ingest
from tests.support.market_data import TYPES
real = market.replace_spot_price_day

class BlockingCommit:
    def __init__(self, engine):
        self._engine, self.dialect = engine, engine.dialect
    def raw_connection(self):
        raw = self._engine.raw_connection()
        class Proxy:
            def __getattr__(self, name):
                return getattr(raw, name)
            def commit(self):  # COPY, DELETE and INSERT done, uncommitted
                print("WRITTEN", flush=True)
                threading.Event().wait()  # until SIGKILL
        return Proxy()

market.replace_spot_price_day = lambda engine, *a, **kw: real(BlockingCommit(engine), *a, **kw)
with mock_aws(), emulate_spot_prices(seed=11, instance_types=TYPES):
    _ingest(sys.argv[1], date.fromisoformat(sys.argv[2]), dg.DagsterInstance.ephemeral())
print("NOT KILLED", flush=True)
"""


def test_price_ingest_sigkilled_mid_write_then_rerun(aws, private_pg_url, tmp_path, report):
    url = private_pg_url
    with emulate_spot_prices(seed=11, instance_types=TYPES):
        assert _ingest(url, DAY1, dg.DagsterInstance.ephemeral()).success
    first = _stored_prices(url)
    assert len(first)

    stderr = open(tmp_path / "child.err", "w")
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD_PRICES, url, DAY1.isoformat()],
        cwd=PROJECT_ROOT,
        env={**os.environ, "PYTHONPATH": CHILD_PYTHONPATH},
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
    )
    kill_once_written(child, stderr, tmp_path / "child.err")  # the child's slice replacement awaits its commit

    pd.testing.assert_frame_equal(_stored_prices(url), first)  # the killed DELETE + INSERT rolled back
    with emulate_spot_prices(seed=11, instance_types=TYPES):
        assert _ingest(url, DAY1, dg.DagsterInstance.ephemeral()).success
    after = _stored_prices(url)
    pd.testing.assert_frame_equal(after, first)
    report.runs, report.rows_checked = 3, len(first) * 3
    report.duplicated = duplicates(_price_keys(after))
