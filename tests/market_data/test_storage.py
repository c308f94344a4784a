"""Storage of market data on SQLite and the real Postgres: slices replaced exactly, nothing lost."""

from __future__ import annotations

import threading
from datetime import date, timedelta

import pandas as pd
import pytest
from sqlalchemy import func, select

from spot_pipelines.core.market_data import SPOT_PRICE_COLUMNS
from spot_pipelines.db import market_data as market
from spot_pipelines.db.engine import get_engine, session_factory
from spot_pipelines.demo.synthetic_prices import default_markets, spot_history_day
from tests.support.market_data import DAY, DAY_START


def _day(day: date, regions=("us-east-1", "eu-west-1"), types=("m5.large", "c6g.xlarge", "r5.xlarge")) -> pd.DataFrame:
    return spot_history_day(default_markets(regions=list(regions), instance_types=list(types), seed=5), day)


def _stored(url: str, day: date | None = None) -> pd.DataFrame:
    t = market.SpotPrice.__table__
    query = select(t).order_by(t.c.availability_zone_id, t.c.instance_type, t.c.product_description, t.c.ts)
    if day is not None:
        query = query.where(t.c.day == day)
    with get_engine(url).connect() as conn:
        return pd.DataFrame(conn.execute(query).mappings().all(), columns=SPOT_PRICE_COLUMNS)


def test_replace_day_is_exact_and_idempotent(db_url):
    engine = get_engine(db_url)
    day1, day2 = _day(DAY), _day(DAY + timedelta(days=1))
    regions = ["us-east-1", "eu-west-1"]
    assert market.replace_spot_price_day(engine, DAY, regions, day1) == len(day1)
    market.replace_spot_price_day(engine, DAY + timedelta(days=1), regions, day2)
    first = _stored(db_url)
    market.replace_spot_price_day(engine, DAY, regions, day1)
    market.replace_spot_price_day(engine, DAY, regions, day1)
    again = _stored(db_url)
    pd.testing.assert_frame_equal(first, again)
    stored = _stored(db_url, DAY)
    assert len(stored) == len(day1) and stored["is_day_open"].sum() == day1["is_day_open"].sum()
    # Values survive the trip exactly (COPY's text timestamps and floats included).
    expected = day1.sort_values(["availability_zone_id", "instance_type", "ts"])
    assert list(pd.to_datetime(stored["ts"], utc=True)) == list(expected["ts"])
    assert stored["price"].tolist() == expected["price"].tolist()


def test_failed_region_keeps_its_rows(db_url):
    engine = get_engine(db_url)
    day = _day(DAY)
    market.replace_spot_price_day(engine, DAY, ["us-east-1", "eu-west-1"], day)
    before = _stored(db_url)
    # eu-west-1 failed this time: only us-east-1 is replaced (here with an empty answer).
    market.replace_spot_price_day(engine, DAY, ["us-east-1"], day[day["region"] == "us-east-1"].iloc[:0])
    after = _stored(db_url)
    assert set(after["region"]) == {"eu-west-1"}
    pd.testing.assert_frame_equal(
        after.reset_index(drop=True), before[before["region"] == "eu-west-1"].reset_index(drop=True)
    )


def test_type_that_came_back_empty_keeps_its_rows(db_url):
    engine = get_engine(db_url)
    day = _day(DAY)
    market.replace_spot_price_day(engine, DAY, ["us-east-1", "eu-west-1"], day)
    before = _stored(db_url)
    # This time AWS returned nothing for r5.xlarge in eu-west-1: reported, and its rows stay.
    answer = day[~((day["region"] == "eu-west-1") & (day["instance_type"] == "r5.xlarge"))]
    market.replace_spot_price_day(
        engine, DAY, ["us-east-1", "eu-west-1"], answer, keep_types={"eu-west-1": ["r5.xlarge"]}
    )
    pd.testing.assert_frame_equal(before, _stored(db_url))
    # Without the keep, the region's slice is replaced as asked (the type's rows go).
    market.replace_spot_price_day(engine, DAY, ["us-east-1", "eu-west-1"], answer)
    assert len(_stored(db_url)) == len(answer)


def test_rows_outside_the_slice_are_refused(db_url):
    engine = get_engine(db_url)
    with pytest.raises(ValueError, match="outside the replaced regions"):
        market.replace_spot_price_day(engine, DAY, ["us-east-1"], _day(DAY))
    with pytest.raises(ValueError, match="days"):
        market.replace_spot_price_day(engine, DAY + timedelta(days=1), ["us-east-1", "eu-west-1"], _day(DAY))
    assert _stored(db_url).empty


def test_failed_write_rolls_back_and_keeps_the_old_slice(db_url):
    engine = get_engine(db_url)
    good = _day(DAY)
    market.replace_spot_price_day(engine, DAY, ["us-east-1", "eu-west-1"], good)
    before = _stored(db_url)
    duplicated = pd.concat([good, good.iloc[:1]], ignore_index=True)  # violates the unique key
    with pytest.raises(Exception):
        market.replace_spot_price_day(engine, DAY, ["us-east-1", "eu-west-1"], duplicated)
    pd.testing.assert_frame_equal(before, _stored(db_url))


def test_stats_see_bad_prices(db_url):
    engine = get_engine(db_url)
    day = _day(DAY)
    day.loc[day.index[3], "price"] = 0.0
    market.replace_spot_price_day(engine, DAY, ["us-east-1", "eu-west-1"], day)
    stats = market.spot_price_stats(engine, [DAY, DAY + timedelta(days=1)])
    assert stats.rows == len(day) and stats.duplicates == 0 and len(stats.nonpositive) == 1
    assert stats.regions == {"us-east-1", "eu-west-1"} and stats.days_without_rows == [DAY + timedelta(days=1)]


def _od(region, itype, usd, source, as_of):
    return {
        "region": region,
        "instance_type": itype,
        "operating_system": "Linux",
        "usd_per_hour": usd,
        "source": source,
        "as_of": as_of,
    }


def test_on_demand_snapshot_never_overwrites_newer_prices(db_url):
    SNAPSHOT_AS_OF = DAY_START - timedelta(days=120)  # the bundled snapshot is months older
    session = session_factory(db_url)
    with session() as s, s.begin():
        market.upsert_on_demand(s, [_od("us-east-1", "m5.large", 0.096, "price_list_api", DAY_START)])
    with session() as s, s.begin():
        market.upsert_on_demand(
            s,
            [
                _od("us-east-1", "m5.large", 0.090, "bundled_snapshot", SNAPSHOT_AS_OF),
                _od("us-east-1", "c5.large", 0.085, "bundled_snapshot", SNAPSHOT_AS_OF),
            ],
        )
    with session() as s, s.begin():
        market.upsert_on_demand(
            s, [_od("us-east-1", "c5.large", 0.086, "price_list_api", DAY_START + timedelta(days=1))]
        )
    with session() as s:
        got = {(r.instance_type, r.usd_per_hour, r.source) for r in s.scalars(select(market.OnDemandPrice))}
        summary = market.on_demand_summary(s)
    assert got == {("m5.large", 0.096, "price_list_api"), ("c5.large", 0.086, "price_list_api")}
    assert summary["rows"] == 2 and summary["oldest_as_of"] == DAY_START


def _adv(region, itype, band, savings, day=DAY, source="feed", os_name="Linux"):
    return {
        "day": day,
        "region": region,
        "operating_system": os_name,
        "instance_type": itype,
        "interruption_band": band,
        "savings_pct": savings,
        "source": source,
    }


def test_advisor_day_keeps_entries_the_new_feed_had_wrong(db_url):
    session = session_factory(db_url)
    with session() as s, s.begin():
        market.replace_advisor_day(
            s,
            DAY,
            [
                _adv("us-east-1", "m5.large", 1, 64),
                _adv("us-east-1", "c5.large", 2, 60),
                _adv("us-east-1", "gone.large", 0, 50),
            ],
            "feed",
        )
    with session() as s, s.begin():
        # c5.large had an unknown band today: its stored row stays; gone.large left the feed.
        written, reason = market.replace_advisor_day(
            s, DAY, [_adv("us-east-1", "m5.large", 3, 61)], "feed", keep_keys=[("us-east-1", "Linux", "c5.large")]
        )
    with session() as s:
        rows = {(r.instance_type, r.interruption_band) for r in s.scalars(select(market.SpotAdvisorEntry))}
    assert (written, reason) == (1, None)
    assert rows == {("m5.large", 3), ("c5.large", 2)}


def test_advisor_snapshot_does_not_replace_a_day_from_the_feed(db_url):
    session = session_factory(db_url)
    with session() as s, s.begin():
        market.replace_advisor_day(s, DAY, [_adv("us-east-1", "m5.large", 1, 64)], "feed")
    with session() as s, s.begin():
        written, reason = market.replace_advisor_day(
            s, DAY, [_adv("us-east-1", "m5.large", 4, 10, source="bundled_snapshot")], "bundled_snapshot"
        )
    with session() as s:
        count = s.scalar(
            select(func.count())
            .select_from(market.SpotAdvisorEntry)
            .where(market.SpotAdvisorEntry.interruption_band == 1)
        )
    assert written == 0 and "live feed" in reason and count == 1


def test_read_prices_returns_the_days_rows_by_market_then_time(db_url):
    engine = get_engine(db_url)
    market.replace_spot_price_day(engine, DAY, ["us-east-1", "eu-west-1"], _day(DAY))
    market.replace_spot_price_day(
        engine, DAY - timedelta(days=1), ["us-east-1", "eu-west-1"], _day(DAY - timedelta(days=1))
    )
    with engine.connect() as conn:
        got = market.read_prices(conn, DAY, DAY + timedelta(days=1))
    want = _stored(db_url, DAY)
    assert len(got) == len(want) > 0 and got["ts"].dt.tz is not None
    assert got["ts"].min() == DAY_START and got["is_day_open"].sum() == (got["ts"] == DAY_START).sum()
    # Ordered by market then time: each market's rows are contiguous and oldest first.
    market_of = (
        got[["region", "availability_zone_id", "instance_type", "product_description"]]
        .astype(str)
        .agg("|".join, axis=1)
    )
    starts = market_of.ne(market_of.shift())
    assert starts.sum() == market_of.nunique()
    assert (got["ts"].diff()[~starts] >= pd.Timedelta(0)).all()


# ------------------------------------------------------------------ filtered re-runs (issue 10 item 5)


def _two_products(day: date) -> pd.DataFrame:
    markets = default_markets(
        regions=["us-east-1", "eu-west-1"],
        instance_types=["m5.large", "c6g.xlarge", "r5.xlarge"],
        products=["Linux/UNIX", "Windows"],
        seed=5,
    )
    return spot_history_day(markets, day)


def test_filtered_replace_touches_only_the_types_and_products_asked_for(db_url):
    engine = get_engine(db_url)
    full = _two_products(DAY)
    market.replace_spot_price_day(engine, DAY, ["us-east-1", "eu-west-1"], full)
    before = _stored(db_url)
    in_slice = (
        (before["region"] == "us-east-1")
        & (before["instance_type"] == "m5.large")
        & (before["product_description"] == "Linux/UNIX")
    )
    # A re-run for m5.large Linux in us-east-1 answers with other prices (and one change fewer).
    answer = (
        full[
            (full["region"] == "us-east-1")
            & (full["instance_type"] == "m5.large")
            & (full["product_description"] == "Linux/UNIX")
        ]
        .iloc[1:]
        .copy()
    )
    answer["price"] = answer["price"] * 1.5
    written = market.replace_spot_price_day(
        engine, DAY, ["us-east-1"], answer, instance_types=["m5.large"], products=["Linux/UNIX"]
    )
    after = _stored(db_url)
    assert written == len(answer) and len(after) == len(before) - 1
    outside = after[
        ~(
            (after["region"] == "us-east-1")
            & (after["instance_type"] == "m5.large")
            & (after["product_description"] == "Linux/UNIX")
        )
    ]
    # Everything outside the slice (other types, Windows, eu-west-1) is exactly as it was.
    pd.testing.assert_frame_equal(
        outside.reset_index(drop=True), before[~in_slice].reset_index(drop=True), check_exact=True
    )
    key = ["availability_zone_id", "ts"]
    replaced, answer = after.drop(outside.index).sort_values(key), answer.sort_values(key)
    assert replaced["price"].tolist() == answer["price"].tolist()
    assert list(pd.to_datetime(replaced["ts"], utc=True)) == list(answer["ts"])


def test_rows_outside_the_type_or_product_slice_are_refused(db_url):
    engine = get_engine(db_url)
    full = _two_products(DAY)
    market.replace_spot_price_day(engine, DAY, ["us-east-1", "eu-west-1"], full)
    before = _stored(db_url)
    us = full[full["region"] == "us-east-1"]
    with pytest.raises(ValueError, match=r"instance types \['c6g.xlarge'"):
        market.replace_spot_price_day(
            engine, DAY, ["us-east-1"], us[us["instance_type"] != "r5.xlarge"], instance_types=["m5.large"]
        )
    with pytest.raises(ValueError, match=r"products \['Windows'\]"):
        market.replace_spot_price_day(engine, DAY, ["us-east-1"], us, products=["Linux/UNIX"])
    pd.testing.assert_frame_equal(before, _stored(db_url), check_exact=True)


def test_merge_adds_what_is_missing_and_never_deletes_or_changes_a_stored_row(db_url):
    """The hourly refresh's write: a merge, not a replace."""
    engine = get_engine(db_url)
    day = _day(DAY)
    nightly, extra = day.iloc[: len(day) // 2], day.iloc[len(day) // 2 :]
    market.replace_spot_price_day(engine, DAY, ["us-east-1", "eu-west-1"], nightly)
    before = _stored(db_url)
    # Half of what is merged is stored already (the same keys): only the other half is added.
    overlap = pd.concat([nightly.iloc[:5], extra], ignore_index=True)
    assert market.merge_spot_prices(engine, DAY, overlap) == len(extra)
    merged = _stored(db_url)
    assert len(merged) == len(day) and merged.merge(before).shape[0] == len(before)  # every stored row kept
    # The same rows again change nothing, and a conflicting price never overwrites the stored one.
    assert market.merge_spot_prices(engine, DAY, overlap) == 0
    changed = nightly.iloc[:1].assign(price=nightly["price"].iloc[0] * 2)
    assert market.merge_spot_prices(engine, DAY, changed) == 0
    pd.testing.assert_frame_equal(merged, _stored(db_url))
    # The full load of the day afterwards replaces the slice: each key once.
    market.replace_spot_price_day(engine, DAY, ["us-east-1", "eu-west-1"], day)
    assert len(_stored(db_url)) == len(day) and market.spot_price_stats(engine, [DAY]).duplicates == 0


def test_day_written_in_many_chunks_is_stored_once_and_a_merge_after_it_adds_nothing(db_url, monkeypatch):
    """Postgres streams the CSV in chunks while it is built: every chunk lands once, in one transaction."""
    monkeypatch.setattr(market, "CSV_CHUNK_ROWS", 7)
    engine = get_engine(db_url)
    day = _day(DAY)
    day.loc[day.index[-1], "ts"] += pd.Timedelta(microseconds=250_001)  # sub-second stamps survive too
    regions = ["us-east-1", "eu-west-1"]
    assert len(day) > 10 * 7
    assert market.replace_spot_price_day(engine, DAY, regions, day) == len(day)
    assert market.replace_spot_price_day(engine, DAY, regions, day) == len(day)
    stored = _stored(db_url)
    expected = day.sort_values(["availability_zone_id", "instance_type", "ts"])
    assert len(stored) == len(day) and stored["price"].tolist() == expected["price"].tolist()
    assert list(pd.to_datetime(stored["ts"], utc=True)) == list(expected["ts"])
    # The hourly refresh after the full load brings the same keys: nothing added, nothing duplicated.
    assert market.merge_spot_prices(engine, DAY, day.iloc[-40:]) == 0
    pd.testing.assert_frame_equal(stored, _stored(db_url))
    assert market.spot_price_stats(engine, [DAY]).duplicates == 0


@pytest.mark.postgres
def test_text_with_a_csv_delimiter_is_refused_by_column_and_the_stored_day_stays(pg_url):
    engine = get_engine(pg_url)
    good = _day(DAY)
    market.replace_spot_price_day(engine, DAY, ["us-east-1", "eu-west-1"], good)
    before = _stored(pg_url)
    bad = good.astype({"availability_zone": str})
    bad.loc[bad.index[-1], "availability_zone"] = "us-east-1a,x"
    with pytest.raises(ValueError, match="availability_zone holds a CSV delimiter"):
        market.replace_spot_price_day(engine, DAY, ["us-east-1", "eu-west-1"], bad)
    with pytest.raises(ValueError, match="availability_zone holds a CSV delimiter"):
        market.merge_spot_prices(engine, DAY, bad)
    pd.testing.assert_frame_equal(before, _stored(pg_url))


@pytest.mark.postgres
def test_a_failure_while_the_csv_streams_is_raised_as_itself_and_the_stored_day_stays(pg_url, monkeypatch):
    """The CSV is built in a thread while COPY reads it: an error there fails the whole write."""
    engine = get_engine(pg_url)
    good = _day(DAY)
    market.replace_spot_price_day(engine, DAY, ["us-east-1", "eu-west-1"], good)
    before = _stored(pg_url)
    monkeypatch.setattr(market, "CSV_CHUNK_ROWS", 7)
    real, calls = market._text_column, []

    def failing_in_a_later_chunk(series):
        calls.append(1)
        if len(calls) > 5 * 3:  # five text columns a chunk: the fourth chunk fails
            raise RuntimeError("formatting failed")
        return real(series)

    monkeypatch.setattr(market, "_text_column", failing_in_a_later_chunk)
    threads = threading.active_count()
    with pytest.raises(RuntimeError, match="formatting failed"):
        market.replace_spot_price_day(engine, DAY, ["us-east-1", "eu-west-1"], good)
    assert threading.active_count() == threads  # the producer thread is gone
    pd.testing.assert_frame_equal(before, _stored(pg_url))


def test_merge_refuses_rows_of_another_day(db_url):
    engine = get_engine(db_url)
    with pytest.raises(ValueError, match="days"):
        market.merge_spot_prices(engine, DAY + timedelta(days=1), _day(DAY))
    assert _stored(db_url).empty


def test_fetches_are_recorded_per_day_and_region_and_summarised(db_url):
    engine = get_engine(db_url)
    with engine.connect() as conn:
        empty = market.price_fetch_summary(conn)
    assert empty.newest_as_of is None and empty.as_of_by_region == {}
    end_of_day = DAY_START + timedelta(days=1)
    market.record_spot_price_fetches(
        engine, DAY, {"us-east-1": 10, "eu-west-1": 8}, mode="day", fetched_at=end_of_day, prices_as_of=end_of_day
    )
    later = end_of_day + timedelta(hours=2)
    for _ in range(2):  # the same (day, region) again replaces its row
        market.record_spot_price_fetches(
            engine, DAY + timedelta(days=1), {"us-east-1": 3}, mode="latest", fetched_at=later, prices_as_of=later
        )
    with engine.connect() as conn:
        summary = market.price_fetch_summary(conn)
        rows = conn.scalar(select(func.count()).select_from(market.SpotPriceFetch.__table__))
    assert rows == 3
    assert (summary.newest_as_of, summary.newest_mode) == (later, "latest")
    assert summary.as_of_by_region == {"us-east-1": later, "eu-west-1": end_of_day}
