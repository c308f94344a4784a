"""The hourly refresh: today's spot_price_history partition in latest_only mode (moto with emulated prices).

Moments are set by patching the clock the asset and the emulator read (derived from `utcnow()`, never a
pinned date), so "the price in force at T" is the emulator's own answer for T. The expected rows are
computed from the emulator's history directly, not through the pipeline's fetch or storage code.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import boto3
import dagster as dg
import pandas as pd
import pytest
from sqlalchemy import select

from spot_pipelines.assets import market_data as market_assets
from spot_pipelines.assets.market_data import spot_price_history
from spot_pipelines.core import health
from spot_pipelines.core.clock import utcnow
from spot_pipelines.db import health as db_health
from spot_pipelines.db import market_data as market
from spot_pipelines.db.engine import get_engine
from spot_pipelines.definitions import defs
from spot_pipelines.demo import price_emulation
from spot_pipelines.partitions import market_daily_partitions
from spot_pipelines.resources.app_database import AppDatabase
from spot_pipelines.sensors.market_data import hourly_spot_price_schedule
from tests.support.market_data import REGIONS, TYPES, stubbed_apis

PRODUCTS = ["Linux/UNIX"]
KEY = ["availability_zone_id", "instance_type", "product_description", "ts"]


def _config(latest_only: bool) -> dict:
    return {"ops": {"spot_price_history": {"config": {"regions": REGIONS, "latest_only": latest_only}}}}


def _midnight(moment: datetime) -> datetime:
    return datetime.combine(moment.date(), datetime.min.time(), tzinfo=timezone.utc)


@pytest.fixture
def clock(monkeypatch):
    """Set the moment the asset and the emulator see (AWS answers as of it)."""

    def at(moment: datetime) -> datetime:
        monkeypatch.setattr(market_assets, "utcnow", lambda: moment)
        monkeypatch.setattr(price_emulation, "utcnow", lambda: moment)
        return moment

    return at


def _moments() -> tuple[datetime, datetime, datetime]:
    """Three moments of today so far, in order."""
    now = utcnow()
    start, elapsed = _midnight(now), now - _midnight(now)
    return start + elapsed / 4, start + elapsed / 2, now - elapsed / 8


def _run(db_url: str, day: str, latest_only: bool, **kwargs):
    return dg.materialize(
        [spot_price_history],
        resources={"app_db": AppDatabase(url=db_url), "market_apis": stubbed_apis()},
        instance=dg.DagsterInstance.ephemeral(),
        partition_key=day,
        run_config=_config(latest_only),
        **kwargs,
    )


def _stored(db_url: str, day=None) -> pd.DataFrame:
    t = market.SpotPrice.__table__
    query = select(t).order_by(*[t.c[c] for c in KEY])
    if day is not None:
        query = query.where(t.c.day == day)
    with get_engine(db_url).connect() as conn:
        frame = pd.DataFrame(conn.execute(query).mappings().all(), columns=[c.name for c in t.columns])
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    return frame


def _keys(frame: pd.DataFrame) -> set[tuple]:
    return set(zip(frame["availability_zone_id"], frame["instance_type"], frame["product_description"], frame["ts"]))


def _zones(region: str) -> list[tuple[str, str]]:
    listing = boto3.client("ec2", region_name=region).describe_availability_zones()["AvailabilityZones"]
    return [(z["ZoneName"], z["ZoneId"]) for z in listing]


def _emulated(prices, start: datetime, end: datetime) -> pd.DataFrame:
    """What the emulator's AWS answers for [start, end) plus the price in force at `start`, every region."""
    frames = [prices.records(r, _zones(r), start, end, TYPES, PRODUCTS) for r in REGIONS]
    return pd.concat(frames, ignore_index=True)


def _as_stored(records: pd.DataFrame, day_start: datetime) -> set[tuple]:
    """AWS records as keys of the day's rows: a price set before the day is the day-open row at 00:00."""
    ts = [max(pd.Timestamp(t), pd.Timestamp(day_start)) for t in records["ts"]]
    return set(zip(records["availability_zone_id"], records["instance_type"], records["product_description"], ts))


def _in_force(prices, moment: datetime) -> set[tuple]:
    return _as_stored(_emulated(prices, moment, moment), _midnight(moment))


def _full_day(prices, day_start: datetime, until: datetime) -> set[tuple]:
    records = _emulated(prices, day_start, until)
    changes = records[pd.to_datetime(records["ts"], utc=True) >= day_start]
    opening = records[pd.to_datetime(records["ts"], utc=True) < day_start]
    market_key = ["availability_zone_id", "instance_type", "product_description"]
    at_midnight = set(map(tuple, changes[changes["ts"] == day_start][market_key].to_numpy()))
    opening = opening[[tuple(k) not in at_midnight for k in opening[market_key].to_numpy()]]
    return _as_stored(pd.concat([opening, changes]), day_start)


def test_hourly_refresh_merges_into_today_without_duplicates_and_the_nightly_load_completes_the_day(
    prices, db_url, clock
):
    t1, t2, _ = _moments()
    today = t1.date()
    markets = len(TYPES) * len(PRODUCTS) * sum(len(_zones(r)) for r in REGIONS)  # each has a price in force
    clock(t1)
    first = _run(db_url, today.isoformat(), latest_only=True)
    assert first.success
    after_first = _stored(db_url)
    expected_t1 = _in_force(prices, t1)
    # One row per market (the price in force), stored under today, each key once.
    assert _keys(after_first) == expected_t1 and len(after_first) == len(expected_t1) == markets
    assert set(after_first["day"]) == {today}
    metadata = first.asset_materializations_for_node("spot_price_history")[0].metadata
    assert metadata["mode"].value == "latest_only" and metadata["rows_by_day"].value == {today.isoformat(): markets}
    assert metadata["prices_as_of"].value == {today.isoformat(): t1.isoformat()}

    # The same hour again changes nothing.
    again = _run(db_url, today.isoformat(), latest_only=True)
    assert again.asset_materializations_for_node("spot_price_history")[0].metadata["rows_by_day"].value == {
        today.isoformat(): 0
    }
    pd.testing.assert_frame_equal(after_first, _stored(db_url))

    # A later hour adds the markets whose price changed since, and nothing else.
    clock(t2)
    assert _run(db_url, today.isoformat(), latest_only=True).success
    hourly = _keys(_stored(db_url))
    assert hourly == expected_t1 | _in_force(prices, t2) and len(_stored(db_url)) == len(hourly)

    # The nightly full load of the day (01:30 the next day) replaces the slice: the complete day, each key once,
    # and every row the hourly refresh wrote is one of its rows.
    nightly_at = _midnight(t1) + timedelta(days=1, hours=1, minutes=30)
    clock(nightly_at)
    nightly = _run(db_url, today.isoformat(), latest_only=False)
    assert nightly.success and {e.check_name: e.passed for e in nightly.get_asset_check_evaluations()} == {
        "prices_positive": True,
        "all_enabled_regions_present": True,
        "no_duplicate_prices": True,
    }
    complete = _full_day(prices, _midnight(t1), _midnight(t1) + timedelta(days=1))
    stored = _stored(db_url)
    assert _keys(stored) == complete and len(stored) == len(complete)
    assert hourly <= complete


def test_hourly_refresh_never_deletes_rows_a_full_load_wrote(prices, db_url, clock):
    t1, t2, t3 = _moments()
    today, yesterday = t1.date(), t1.date() - timedelta(days=1)
    clock(t2)
    assert _run(db_url, yesterday.isoformat(), latest_only=False).success
    assert _run(db_url, today.isoformat(), latest_only=False).success  # a full load of today so far
    before_today, before_yesterday = _stored(db_url, today), _stored(db_url, yesterday)
    assert _keys(before_today) == _full_day(prices, _midnight(t2), t2)

    clock(t3)
    assert _run(db_url, today.isoformat(), latest_only=True).success
    after_today = _stored(db_url, today)
    # Every row of the full load is still there, unchanged; the refresh added only prices set after t2.
    kept = after_today.merge(before_today, how="inner")
    assert len(kept) == len(before_today)
    added = _keys(after_today) - _keys(before_today)
    assert added == _in_force(prices, t3) - _keys(before_today)
    assert all(ts > t2 for *_, ts in added) and len(after_today) == len(_keys(after_today))
    pd.testing.assert_frame_equal(before_yesterday, _stored(db_url, yesterday))


def test_latest_only_for_a_partition_that_is_not_today_is_refused_naming_the_field(prices, sqlite_url):
    yesterday = (utcnow() - timedelta(days=1)).date()
    assert _run(sqlite_url, yesterday.isoformat(), latest_only=False).success
    before, calls = _stored(sqlite_url), prices.calls
    result = _run(sqlite_url, yesterday.isoformat(), latest_only=True, raise_on_error=False)
    assert not result.success
    message = result.failure_data_for_node("spot_price_history").error.message
    assert "latest_only" in message and yesterday.isoformat() in message and "today's partition" in message
    assert "nothing fetched or written" in message
    # Refused before any AWS call or write, and not retried.
    assert prices.calls == calls and not any(e.event_type_value == "STEP_UP_FOR_RETRY" for e in result.all_events)
    pd.testing.assert_frame_equal(before, _stored(sqlite_url))
    with get_engine(sqlite_url).connect() as conn:
        fetches = market.price_fetch_summary(conn)
    assert set(fetches.as_of_by_region) == set(REGIONS)  # the full load's, not another


def test_the_schedule_requests_todays_partition_in_latest_only_mode():
    tick = utcnow().replace(minute=5, second=0, microsecond=0)
    request = hourly_spot_price_schedule(dg.build_schedule_context(scheduled_execution_time=tick))
    assert request.partition_key == tick.date().isoformat()
    assert request.run_key == f"spot-prices-latest-{tick:%Y-%m-%dT%H}"
    assert request.run_config == {"ops": {"spot_price_history": {"config": {"latest_only": True}}}}
    # The first tick of a day asks for the new day; today's partition exists while the day runs.
    first = _midnight(tick) + timedelta(minutes=5)
    assert hourly_spot_price_schedule(dg.build_schedule_context(scheduled_execution_time=first)).partition_key == (
        tick.date().isoformat()
    )
    assert market_daily_partitions.has_partition_key(tick.date().isoformat())
    schedule = defs.get_schedule_def("hourly_spot_price_schedule")
    assert schedule.cron_schedule == "5 * * * *" and schedule.execution_timezone == "UTC"
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    assert schedule.job_name == "spot_price_history_job"
    assert dg.validate_run_config(defs.resolve_job_def(schedule.job_name), request.run_config)


def test_price_data_goes_degraded_past_the_bound_and_healthy_right_after_a_refresh(prices, sqlite_url, clock):
    thresholds = health.HealthThresholds()
    engine = get_engine(sqlite_url)
    now = utcnow()
    missed = now - timedelta(seconds=thresholds.price_age_degraded_s + 600)  # the last refresh, too long ago
    clock(missed)
    assert _run(sqlite_url, missed.date().isoformat(), latest_only=True).success
    stale = db_health.check_price_freshness(engine, thresholds, now=lambda: now)
    assert stale.status == health.DEGRADED and stale.details["age_s"] >= thresholds.price_age_degraded_s
    assert stale.details["stale_regions"] == sorted(REGIONS) and stale.details["last_fetch_mode"] == "latest"
    much_later = now + timedelta(seconds=thresholds.price_age_critical_s)
    assert db_health.check_price_freshness(engine, thresholds, now=lambda: much_later).status == health.CRITICAL

    clock(now)
    assert _run(sqlite_url, now.date().isoformat(), latest_only=True).success
    fresh = db_health.check_price_freshness(engine, thresholds, now=lambda: now + timedelta(minutes=1))
    assert fresh.status == health.HEALTHY and fresh.details["stale_regions"] == []
    assert fresh.details["latest"] == now.isoformat()
