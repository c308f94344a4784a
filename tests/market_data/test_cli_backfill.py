"""The documented CLI backfill: `dagster asset materialize --select spot_price_history
--partition-range A...B` is one run, against moto's server (with emulated prices) over HTTP,
in a subprocess with its own DAGSTER_HOME."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
from moto.server import ThreadedMotoServer
from sqlalchemy import create_engine, text

from spot_pipelines.core.clock import utc_today
from spot_pipelines.demo.price_emulation import emulate_spot_prices
from tests.support.market_data import TYPES

REPO = Path(__file__).resolve().parents[2]
DAGSTER = str(Path(sys.executable).with_name("dagster"))


@pytest.fixture
def moto_endpoint():
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    with emulate_spot_prices(seed=21, instance_types=TYPES):
        yield f"http://{host}:{port}"
    server.stop()


def test_partition_range_from_the_cli_is_one_run(moto_endpoint, tmp_path):
    home = tmp_path / "dagster_home"
    home.mkdir(exist_ok=True)
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    db = tmp_path / "app.db"
    today = utc_today()
    start, end = (today - timedelta(days=4)).isoformat(), (today - timedelta(days=2)).isoformat()
    env = {k: v for k, v in os.environ.items() if k not in ("ENCRYPTION_KEY", "DAGSTER_PG_URL")}
    env.update(
        DAGSTER_HOME=str(home),
        DATABASE_URL=f"sqlite:///{db}",
        AWS_ENDPOINT_URL=moto_endpoint,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
    )
    config = {"ops": {"spot_price_history": {"config": {"regions": ["us-east-1", "eu-west-1"]}}}}
    command = [
        DAGSTER,
        "asset",
        "materialize",
        "-m",
        "spot_pipelines.definitions",
        "--select",
        "spot_price_history",
        "--partition-range",
        f"{start}...{end}",
        "--config-json",
        json.dumps(config),
    ]

    def run() -> pd.DataFrame:
        done = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=240)
        assert done.returncode == 0, done.stderr[-3000:]
        assert "RUN_SUCCESS" in done.stderr + done.stdout
        with create_engine(f"sqlite:///{db}").connect() as conn:
            return pd.read_sql(
                text("SELECT * FROM spot_price_history ORDER BY availability_zone_id, instance_type, ts"), conn
            )

    first = run()
    assert sorted(first["day"].unique()) == [(today - timedelta(days=d)).isoformat() for d in (4, 3, 2)]
    assert set(first["region"]) == {"us-east-1", "eu-west-1"} and set(first["instance_type"]) == set(TYPES)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        runs = instance.get_runs()
    # One run covering the whole range (single-run backfill policy); re-running a range is
    # shown idempotent in test_assets.py.
    assert len(runs) == 1
    assert {
        (r.tags["dagster/asset_partition_range_start"], r.tags["dagster/asset_partition_range_end"]) for r in runs
    } == {(start, end)}
