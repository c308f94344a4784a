"""The daily market-data partitions start on a fixed day (the set never moves with the clock); days AWS no
longer serves are refused at run time, naming the partition."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta

import dagster as dg
import pytest
from sqlalchemy import select

from spot_pipelines.assets.market_data import spot_price_history
from spot_pipelines.core.clock import utc_today, utcnow
from spot_pipelines.core.errors import ValidationError
from spot_pipelines.db import market_data as market
from spot_pipelines.db.engine import get_engine
from spot_pipelines.partitions import HISTORY_DAYS, check_fetchable
from spot_pipelines.resources.app_database import AppDatabase
from spot_pipelines.settings import DEFAULT_PRICE_HISTORY_START
from tests.support.market_data import DAY, REGIONS, stubbed_apis

# Loads the partitions in a fresh interpreter with the clock at argv[1].
FIRST_KEY_AT = (
    "import sys, datetime, time_machine\n"
    "time_machine.travel(datetime.datetime.fromisoformat(sys.argv[1]), tick=False).start()\n"
    "from spot_pipelines.partitions import market_daily_partitions\n"
    "print(market_daily_partitions.get_first_partition_key())\n"
)


def _first_key_at(now, **env) -> str:
    environ = {k: v for k, v in os.environ.items() if k != "SPOT_PRICE_HISTORY_START"} | env
    return subprocess.run(
        [sys.executable, "-c", FIRST_KEY_AT, now.isoformat()], env=environ, check=True, capture_output=True, text=True
    ).stdout.strip()


def test_the_first_partition_does_not_move_with_the_clock():
    now = utcnow()
    keys = {_first_key_at(now), _first_key_at(now + timedelta(days=200))}
    assert keys == {DEFAULT_PRICE_HISTORY_START.isoformat()}
    assert _first_key_at(now, SPOT_PRICE_HISTORY_START="2025-03-04") == "2025-03-04"


def test_days_older_than_aws_serves_are_refused_naming_the_first():
    today = utc_today()
    oldest = today - timedelta(days=HISTORY_DAYS)
    check_fetchable([oldest.isoformat(), today.isoformat()], today)  # the edge is still served
    too_old = (oldest - timedelta(days=1)).isoformat()
    with pytest.raises(ValidationError, match=rf"^partition: {too_old} is older than the {HISTORY_DAYS} days"):
        check_fetchable([today.isoformat(), too_old], today)


def _stored_prices(url: str) -> list[dict]:
    t = market.SpotPrice.__table__
    with get_engine(url).connect() as conn:
        return [dict(r) for r in conn.execute(select(t).order_by(*t.primary_key.columns)).mappings()]


def test_materializing_a_day_aws_no_longer_serves_fails_and_changes_nothing(prices, sqlite_url):
    resources = {"app_db": AppDatabase(url=sqlite_url), "market_apis": stubbed_apis()}
    config = {"ops": {"spot_price_history": {"config": {"regions": REGIONS}}}}
    assert dg.materialize(
        [spot_price_history], partition_key=DAY.isoformat(), run_config=config, resources=resources
    ).success
    before = _stored_prices(sqlite_url)
    assert before

    key = (utc_today() - timedelta(days=HISTORY_DAYS + 5)).isoformat()
    result = dg.materialize(
        [spot_price_history], partition_key=key, run_config=config, raise_on_error=False, resources=resources
    )
    assert not result.success
    message = result.failure_data_for_node("spot_price_history").error.message
    assert key in message and "nothing fetched or written" in message
    assert _stored_prices(sqlite_url) == before
