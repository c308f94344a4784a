"""Market data tables: spot price history, on-demand prices, the Spot Advisor and the type catalog.

Models, readers and writers of the market-data domain. The tables are created by migration 0002,
`spot_price_fetches` by 0010.
"""

from __future__ import annotations

import contextlib
import functools
import queue
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import (
    Boolean,
    Connection,
    Date,
    Engine,
    Float,
    Index,
    Integer,
    PrimaryKeyConstraint,
    String,
    case,
    delete,
    func,
    insert,
    or_,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, Session, mapped_column

from spot_pipelines.core.market_data import SPOT_PRICE_COLUMNS
from spot_pipelines.db.base import Base, UTCDateTime
from spot_pipelines.db.frames import read_frame
from spot_pipelines.db.upsert import bulk_upsert

__all__ = ["InstanceTypeSpec", "OnDemandPrice", "SpotAdvisorEntry", "SpotPrice", "SpotPriceFetch"]


class SpotPrice(Base):
    """One spot price change of (AZ ID, type, product), partitioned by UTC `day`.

    `is_day_open` rows carry the price in force at the day's 00:00 UTC (the last change before the
    day, as AWS returns it): `ts` is then the day's midnight, so every day is self-contained.
    """

    __tablename__ = "spot_price_history"

    day: Mapped[date] = mapped_column(Date, nullable=False)
    ts: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    region: Mapped[str] = mapped_column(String(32), nullable=False)
    availability_zone: Mapped[str] = mapped_column(String(32), nullable=False)
    availability_zone_id: Mapped[str] = mapped_column(String(32), nullable=False)
    instance_type: Mapped[str] = mapped_column(String(64), nullable=False)
    product_description: Mapped[str] = mapped_column(String(64), nullable=False)
    price: Mapped[float] = mapped_column(Float, nullable=False)
    is_day_open: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)

    __table_args__ = (
        PrimaryKeyConstraint(
            "availability_zone_id", "instance_type", "product_description", "ts", name="pk_spot_price_history"
        ),
        Index("ix_spot_price_history_type_az_ts", "instance_type", "availability_zone_id", "ts"),
        Index("ix_spot_price_history_day", "day"),
    )


class SpotPriceFetch(Base):
    """When a (day, region) of spot prices was last fetched, and as of when those prices hold.

    `prices_as_of`: a latest-only fetch knows the prices in force at its request time; a full load
    knows the day up to its request time, or all of it once the day is over (its end). Price
    freshness is the age of the newest `prices_as_of`, not of the newest price change."""

    __tablename__ = "spot_price_fetches"

    day: Mapped[date] = mapped_column(Date, nullable=False)
    region: Mapped[str] = mapped_column(String(32), nullable=False)
    mode: Mapped[str] = mapped_column(String(16), nullable=False)  # day | latest
    fetched_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    prices_as_of: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    rows_fetched: Mapped[int] = mapped_column(Integer, nullable=False)

    __table_args__ = (
        PrimaryKeyConstraint("day", "region", name="pk_spot_price_fetches"),
        Index("ix_spot_price_fetches_prices_as_of", "prices_as_of"),
    )


class OnDemandPrice(Base):
    __tablename__ = "on_demand_prices"

    region: Mapped[str] = mapped_column(String(32), primary_key=True)
    instance_type: Mapped[str] = mapped_column(String(64), primary_key=True)
    operating_system: Mapped[str] = mapped_column(String(16), primary_key=True)  # Linux
    usd_per_hour: Mapped[float] = mapped_column(Float, nullable=False)
    source: Mapped[str] = mapped_column(String(32), nullable=False)  # price_list_api | bundled_snapshot
    as_of: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)


class SpotAdvisorEntry(Base):
    __tablename__ = "spot_advisor"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    region: Mapped[str] = mapped_column(String(32), primary_key=True)
    operating_system: Mapped[str] = mapped_column(String(16), primary_key=True)  # Linux | Windows
    instance_type: Mapped[str] = mapped_column(String(64), primary_key=True)
    interruption_band: Mapped[int] = mapped_column(Integer, nullable=False)  # 0..4, the feed's `r`
    savings_pct: Mapped[int] = mapped_column(Integer, nullable=False)  # the feed's `s`
    source: Mapped[str] = mapped_column(String(32), nullable=False)  # feed | bundled_snapshot

    __table_args__ = (Index("ix_spot_advisor_type_region", "instance_type", "region"),)


class InstanceTypeSpec(Base):
    __tablename__ = "instance_types"

    instance_type: Mapped[str] = mapped_column(String(64), primary_key=True)
    family: Mapped[str] = mapped_column(String(32), nullable=False)
    vcpu: Mapped[int | None] = mapped_column(Integer)
    memory_gib: Mapped[float | None] = mapped_column(Float)
    architecture: Mapped[str] = mapped_column(String(16), nullable=False)  # x86_64 | arm64
    source: Mapped[str] = mapped_column(String(32), nullable=False)


# ---------------------------------------------------------------------------------------------
# writers
# ---------------------------------------------------------------------------------------------

SQLITE_BATCH_ROWS = 20_000
CSV_CHUNK_ROWS = 20_000  # ~2 MB of CSV: small enough that the server starts early, big enough to batch
COPY_COLUMNS = ", ".join(SPOT_PRICE_COLUMNS)  # the CSV's column order
TEXT_COLUMNS = SPOT_PRICE_COLUMNS[2:7]  # region … product_description
# The hourly merge cannot COPY into the table (it must skip stored keys): it stages the rows first.
_STAGE_DDL = "CREATE TEMP TABLE spot_price_stage (LIKE spot_price_history) ON COMMIT DROP"
_MERGE_STAGE = f"""
INSERT INTO spot_price_history ({COPY_COLUMNS}) SELECT {COPY_COLUMNS} FROM spot_price_stage
ON CONFLICT ON CONSTRAINT pk_spot_price_history DO NOTHING
"""


def _text_column(series: pd.Series) -> np.ndarray:
    if isinstance(series.dtype, pd.CategoricalDtype):  # format each category once
        categories = np.asarray(series.cat.categories.astype(str), dtype=object)
        return categories[series.cat.codes.to_numpy()]
    return series.astype(str).to_numpy(dtype=object)


def _check_csv_text(frame: pd.DataFrame) -> None:
    """Text columns are AWS identifiers: a delimiter or quote in one is refused, not escaped."""
    for col in TEXT_COLUMNS:
        values = (
            frame[col].cat.categories if isinstance(frame[col].dtype, pd.CategoricalDtype) else pd.unique(frame[col])
        )
        if any("," in str(v) or '"' in str(v) or "\n" in str(v) for v in values):
            raise ValueError(f"{col} holds a CSV delimiter or quote")


def spot_price_csv_chunks(frame: pd.DataFrame, day: date, chunk_rows: int = CSV_CHUNK_ROWS) -> Iterator[bytes]:
    """The CSV of `chunk_rows` rows at a time, built column-wise (pandas' to_csv formats cell by cell
    and is ~4x slower here; chunks bound the transient string objects). `_check_csv_text` first.
    Each distinct timestamp is formatted once, together with the (constant) day: "day,ISO-8601 Z"."""
    if not len(frame):
        return
    ts = pd.DatetimeIndex(frame["ts"])
    ts_us = (ts.tz_convert("UTC").tz_localize(None) if ts.tz is not None else ts).as_unit("us").asi8
    ts_codes, distinct = pd.factorize(ts_us)
    unit = "us" if (distinct % 1_000_000).any() else "s"  # AWS stamps are whole seconds: shorter text
    stamps = np.asarray(
        [f"{day},{s}Z" for s in np.datetime_as_string(distinct.astype("datetime64[us]"), unit=unit)], dtype=object
    )
    prices = frame["price"].to_numpy(dtype=float)
    day_open = frame["is_day_open"].to_numpy(dtype=bool)
    for start in range(0, len(frame), chunk_rows):
        part = slice(start, start + chunk_rows)
        cols = [stamps[ts_codes[part]]]
        cols += [_text_column(frame[c].iloc[part]) for c in TEXT_COLUMNS]
        cols.append(np.asarray(list(map(repr, prices[part].tolist())), dtype=object))
        cols.append(np.where(day_open[part], "t", "f").astype(object))
        yield ("\n".join(map(",".join, zip(*cols))) + "\n").encode()


class _Prefetched:
    """A file-like for COPY whose `read()` returns the next chunk, serialized ahead by a thread: the
    server parses one chunk while this process builds the next (on two cores that hides most of the
    serialization). At most `depth` chunks wait in memory. `error` is what the producer raised."""

    def __init__(self, chunks: Iterator[bytes], depth: int = 2):
        self.error: BaseException | None = None
        self._queue: queue.Queue[bytes] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._produce, args=(chunks,), daemon=True)
        self._thread.start()

    def _produce(self, chunks: Iterator[bytes]) -> None:
        try:
            for chunk in chunks:
                while not self._stop.is_set():
                    try:
                        self._queue.put(chunk, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if self._stop.is_set():
                    return
        except BaseException as exc:  # handed to the reader, which fails the COPY with it
            self.error = exc
        self._queue.put(b"")  # end of data; the stop check above keeps this from blocking a closed reader

    def read(self, _size: int = -1) -> bytes:
        chunk = self._queue.get()
        if not chunk and self.error is not None:
            raise self.error
        return chunk

    def close(self) -> None:
        """Stop the producer (a failed COPY stops reading) and wait for it."""
        self._stop.set()
        while self._thread.is_alive():
            with contextlib.suppress(queue.Empty):
                self._queue.get(timeout=0.1)
        self._thread.join()


def _check_slice(
    frame: pd.DataFrame,
    day: date,
    regions: Sequence[str],
    instance_types: Sequence[str] | None,
    products: Sequence[str] | None,
) -> None:
    """Every row must fall inside the slice that is deleted, or the insert would clash with (or
    silently keep) rows outside it."""
    if not len(frame):
        return
    days = set(pd.unique(frame["day"]))
    if days - {day}:
        raise ValueError(f"rows for days {sorted(days - {day})} given to the {day} slice")
    for column, allowed, name in (
        ("region", regions, "regions"),
        ("instance_type", instance_types, "instance types"),
        ("product_description", products, "products"),
    ):
        if allowed is None:
            continue
        stray = set(pd.unique(frame[column])) - set(allowed)
        if stray:
            raise ValueError(f"rows for {name} {sorted(stray)[:5]} outside the replaced {name} {sorted(allowed)[:5]}")


def replace_spot_price_day(
    engine: Engine,
    day: date,
    regions: Sequence[str],
    frame: pd.DataFrame,
    keep_types: Mapping[str, Sequence[str]] | None = None,
    *,
    instance_types: Sequence[str] | None = None,
    products: Sequence[str] | None = None,
) -> int:
    """Replace exactly the slice `day` × `regions` × `instance_types` × `products` (None: all of
    them) with `frame`, in one transaction. Everything outside the slice stays: other regions,
    other types and products (a filtered backfill never deletes what it did not fetch), and the
    rows of `keep_types` (region → instance types that came back empty this time).

    Postgres: DELETE the slice, then COPY the rows straight into the table (a key deleted earlier in the
    same transaction can be inserted again), the CSV streamed while it is built.
    SQLite: DELETE the slice and batched executemany inserts. Returns the number of rows written.
    """
    _check_slice(frame, day, regions, instance_types, products)
    regions = sorted(regions)
    types = None if instance_types is None else sorted(instance_types)
    products = None if products is None else sorted(products)
    kept = sorted(f"{region}|{itype}" for region, itypes in (keep_types or {}).items() for itype in itypes)
    if kept and len(frame):
        clash = set(frame["region"].astype(str) + "|" + frame["instance_type"].astype(str)) & set(kept)
        if clash:
            raise ValueError(f"rows given for kept (region|type) {sorted(clash)[:5]}")
    if engine.dialect.name == "postgresql":
        where, params = (
            ["day = %s", "region = ANY(%s)", "NOT (region || '|' || instance_type) = ANY(%s)"],
            [day, regions, kept],
        )
        for column, values in (("instance_type", types), ("product_description", products)):
            if values is not None:
                where.append(f"{column} = ANY(%s)")
                params.append(values)
        _check_csv_text(frame)  # bad input fails here with its own message, before any SQL
        with _pg_copying(engine, frame, day) as (cur, copy):
            cur.execute("DELETE FROM spot_price_history WHERE " + " AND ".join(where), params)
            copy("spot_price_history")
        return len(frame)
    table = SpotPrice.__table__
    slice_ = [
        table.c.day == day,
        table.c.region.in_(regions),
        (table.c.region + "|" + table.c.instance_type).not_in(kept),
    ]
    if types is not None:
        slice_.append(table.c.instance_type.in_(types))
    if products is not None:
        slice_.append(table.c.product_description.in_(products))
    with engine.begin() as conn:
        conn.execute(delete(table).where(*slice_))
        records = _records(frame)
        for start in range(0, len(records), SQLITE_BATCH_ROWS):
            conn.execute(insert(table), records[start : start + SQLITE_BATCH_ROWS])
    return len(records)


@contextmanager
def _pg_transaction(engine: Engine):
    """A raw Postgres cursor in one transaction: committed when the block ends, rolled back on any error."""
    raw = engine.raw_connection()
    try:
        with raw.cursor() as cur:
            yield cur
        raw.commit()
    except BaseException:
        raw.rollback()
        raise
    finally:
        raw.close()


@contextmanager
def _pg_copying(engine: Engine, frame: pd.DataFrame, day: date):
    """`_pg_transaction`'s cursor and a `copy(table)` that COPYs `frame` into `table`. The CSV is built
    chunk by chunk in a thread from the start, so building it overlaps the statements before the COPY
    and the server reading it."""
    source = _Prefetched(spot_price_csv_chunks(frame, day, CSV_CHUNK_ROWS))
    try:
        with _pg_transaction(engine) as cur:
            yield cur, functools.partial(_copy, cur, source)
    finally:
        source.close()


def _copy(cur, source: _Prefetched, table: str) -> None:
    try:
        cur.copy_expert(f"COPY {table} ({COPY_COLUMNS}) FROM STDIN WITH (FORMAT csv)", source)
    except Exception as exc:
        if source.error is not None:  # psycopg2 reports it as a cancelled COPY; raise the cause
            raise source.error from exc
        raise


def merge_spot_prices(engine: Engine, day: date, frame: pd.DataFrame) -> int:
    """Add `frame`'s rows to `day` without deleting or changing any stored row: a price already stored
    (same AZ ID, type, product and timestamp, the primary key) is left as it is. For the hourly
    latest-only refresh, whose rows the full load of the day later replaces with the same ones.
    Returns the number of rows added (0 when the same hour runs again)."""
    if not len(frame):
        return 0
    days = set(pd.unique(frame["day"]))
    if days - {day}:
        raise ValueError(f"rows for days {sorted(days - {day})} given to the {day} merge")
    table = SpotPrice.__table__
    count = select(func.count()).select_from(table).where(table.c.day == day)
    if engine.dialect.name == "postgresql":
        _check_csv_text(frame)
        with _pg_copying(engine, frame, day) as (cur, copy):
            cur.execute(_STAGE_DDL)
            copy("spot_price_stage")
            cur.execute(_MERGE_STAGE)
            return cur.rowcount
    stmt = sqlite.insert(table).on_conflict_do_nothing(
        index_elements=["availability_zone_id", "instance_type", "product_description", "ts"]
    )
    records = _records(frame)
    with engine.begin() as conn:
        before = conn.scalar(count)
        for start in range(0, len(records), SQLITE_BATCH_ROWS):
            conn.execute(stmt, records[start : start + SQLITE_BATCH_ROWS])
        return conn.scalar(count) - before


def record_spot_price_fetches(
    engine: Engine,
    day: date,
    rows_by_region: Mapping[str, int],
    *,
    mode: str,
    fetched_at: datetime,
    prices_as_of: datetime,
) -> None:
    """One `spot_price_fetches` row per region that answered (insert or replace its (day, region))."""
    rows = [
        {
            "day": day,
            "region": region,
            "mode": mode,
            "fetched_at": fetched_at,
            "prices_as_of": prices_as_of,
            "rows_fetched": int(n),
        }
        for region, n in sorted(rows_by_region.items())
    ]
    with Session(engine) as session, session.begin():
        bulk_upsert(session, SpotPriceFetch.__table__, rows, key=["day", "region"])


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    if not len(frame):
        return []
    out = frame[SPOT_PRICE_COLUMNS]
    ts = pd.DatetimeIndex(out["ts"]).tz_convert("UTC").to_pydatetime()
    cols = {c: out[c].astype(object).tolist() for c in SPOT_PRICE_COLUMNS if c != "ts"}
    cols["ts"] = list(ts)
    cols["price"] = [float(p) for p in cols["price"]]
    cols["is_day_open"] = [bool(b) for b in cols["is_day_open"]]
    return [dict(zip(cols, values)) for values in zip(*cols.values())]


def upsert_on_demand(session: Session, rows: Sequence[dict[str, Any]]) -> int:
    """Insert or refresh on-demand prices; an older price (e.g. the bundled snapshot) never
    overwrites a newer one already stored. Returns how many rows were inserted or changed."""
    if not rows:
        return 0
    table = OnDemandPrice.__table__
    dialect = session.get_bind().dialect.name
    make_insert = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}[dialect]
    changed = 0
    for start in range(0, len(rows), 1000):
        stmt = make_insert(table).values(list(rows[start : start + 1000]))
        stmt = stmt.on_conflict_do_update(
            index_elements=["region", "instance_type", "operating_system"],
            set_={c: stmt.excluded[c] for c in ("usd_per_hour", "source", "as_of")},
            where=table.c.as_of <= stmt.excluded.as_of,
        )
        changed += session.execute(stmt).rowcount
    return changed


def replace_advisor_day(
    session: Session,
    day: date,
    rows: Sequence[dict[str, Any]],
    source: str,
    keep_keys: Sequence[tuple[str, str, str]] = (),
) -> tuple[int, str | None]:
    """Replace `day`'s Spot Advisor rows. Stored rows of `keep_keys` (entries the new feed had
    wrong) survive; a bundled snapshot never replaces a day already stored from the live feed.
    Returns (rows written, why nothing was written)."""
    table = SpotAdvisorEntry.__table__
    if source == "bundled_snapshot":
        from_feed = session.scalar(
            select(func.count()).select_from(table).where(table.c.day == day, table.c.source == "feed")
        )
        if from_feed:
            return 0, f"{day} already holds {from_feed} rows from the live feed; the snapshot does not replace them"
    kept: list[dict[str, Any]] = []
    if keep_keys:
        wanted = set(keep_keys)
        existing = session.execute(select(table).where(table.c.day == day)).mappings()
        kept = [dict(r) for r in existing if (r["region"], r["operating_system"], r["instance_type"]) in wanted]
    session.execute(delete(table).where(table.c.day == day))
    batch = list(rows) + kept
    for start in range(0, len(batch), 5000):
        session.execute(insert(table), batch[start : start + 5000])
    return len(rows), None


def upsert_instance_types(session: Session, rows: Sequence[dict[str, Any]]) -> int:
    bulk_upsert(session, InstanceTypeSpec.__table__, rows, key=["instance_type"])
    return len(rows)


# ---------------------------------------------------------------------------------------------
# readers (asset checks, other domains)
# ---------------------------------------------------------------------------------------------


def catalog_instance_types(session: Session) -> list[str]:
    return sorted(session.scalars(select(InstanceTypeSpec.instance_type)))


@dataclass
class SpotPriceSliceStats:
    rows: int
    nonpositive: list[dict[str, Any]]  # a sample: region, AZ ID, type, ts, price
    regions: set[str]
    duplicates: int
    days_without_rows: list[date]


def spot_price_stats(engine: Engine, days: Sequence[date]) -> SpotPriceSliceStats:
    """What the checks look at, over the stored rows of `days`."""
    t = SpotPrice.__table__
    in_days = t.c.day.in_(list(days))
    with engine.connect() as conn:
        rows = conn.scalar(select(func.count()).select_from(t).where(in_days)) or 0
        bad = (
            conn.execute(
                select(t.c.region, t.c.availability_zone_id, t.c.instance_type, t.c.ts, t.c.price)
                .where(in_days, t.c.price <= 0)
                .limit(20)
            )
            .mappings()
            .all()
        )
        regions = set(conn.scalars(select(t.c.region).where(in_days).distinct()))
        key = (t.c.availability_zone_id, t.c.instance_type, t.c.product_description, t.c.ts)
        dup_groups = select(*key).where(in_days).group_by(*key).having(func.count() > 1).subquery()
        duplicates = conn.scalar(select(func.count()).select_from(dup_groups)) or 0
        present = set(conn.scalars(select(t.c.day).where(in_days).distinct()))
    return SpotPriceSliceStats(
        rows=rows,
        nonpositive=[dict(r) for r in bad],
        regions=regions,
        duplicates=duplicates,
        days_without_rows=sorted(set(days) - present),
    )


@dataclass
class PriceFetchSummary:
    newest_as_of: datetime | None
    newest_mode: str | None
    as_of_by_region: dict[str, datetime]


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:  # SQLite drops the offset on aggregates
        return value.replace(tzinfo=timezone.utc)
    return value


def price_fetch_summary(conn: Connection) -> PriceFetchSummary:
    """The newest `prices_as_of` overall (and the mode of that fetch), and the newest per region."""
    t = SpotPriceFetch.__table__
    by_region = {
        region: _aware(as_of)
        for region, as_of in conn.execute(select(t.c.region, func.max(t.c.prices_as_of)).group_by(t.c.region))
    }
    newest = conn.execute(select(t.c.prices_as_of, t.c.mode).order_by(t.c.prices_as_of.desc()).limit(1)).first()
    return PriceFetchSummary(
        newest_as_of=_aware(newest[0]) if newest else None,
        newest_mode=newest[1] if newest else None,
        as_of_by_region=by_region,
    )


def on_demand_summary(session: Session) -> dict[str, Any]:
    t = OnDemandPrice.__table__
    row = session.execute(
        select(
            func.count(), func.min(t.c.as_of), func.max(t.c.as_of), func.sum(case((t.c.usd_per_hour <= 0, 1), else_=0))
        )
    ).one()
    oldest = row[1]
    if oldest is not None and oldest.tzinfo is None:  # SQLite drops the offset on aggregates
        oldest = oldest.replace(tzinfo=timezone.utc)
    newest = row[2]
    if newest is not None and newest.tzinfo is None:
        newest = newest.replace(tzinfo=timezone.utc)
    return {"rows": row[0], "oldest_as_of": oldest, "newest_as_of": newest, "nonpositive": row[3] or 0}


def advisor_day_summary(session: Session, day: date) -> dict[str, Any]:
    t = SpotAdvisorEntry.__table__
    out_of_range = or_(t.c.interruption_band < 0, t.c.interruption_band > 4, t.c.savings_pct < 0, t.c.savings_pct > 100)
    rows = session.scalar(select(func.count()).select_from(t).where(t.c.day == day)) or 0
    bad = (
        session.execute(
            select(t.c.region, t.c.operating_system, t.c.instance_type, t.c.interruption_band, t.c.savings_pct)
            .where(t.c.day == day, out_of_range)
            .limit(20)
        )
        .mappings()
        .all()
    )
    return {"rows": rows, "out_of_range": [dict(r) for r in bad]}


# --------------------------------------------------------------------------- readers (DataFrames for core/)


def read_prices(conn: Connection, start: date, end: date) -> pd.DataFrame:
    """Price rows of days [start, end), ordered by market then time (the scorer then skips its sort)."""
    p = SpotPrice
    stmt = (
        select(
            p.ts,
            p.region,
            p.availability_zone,
            p.availability_zone_id,
            p.instance_type,
            p.product_description,
            p.price,
            p.is_day_open,
        )
        .where(p.day >= start, p.day < end)
        .order_by(p.region, p.availability_zone_id, p.instance_type, p.product_description, p.ts)
    )
    if conn.dialect.name == "postgresql":
        return _copy_prices(conn, stmt)
    return read_frame(conn, stmt)


PRICE_KEY_COLUMNS = ("region", "availability_zone", "availability_zone_id", "instance_type", "product_description")


def _copy_prices(conn: Connection, stmt) -> pd.DataFrame:
    """Postgres: COPY the rows out as CSV (spooled to disk past 64 MiB) and parse them with pandas into
    categorical keys, instead of building one Python tuple per row (90 days of a full fleet is ~25 M rows)."""
    sql = str(stmt.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))
    with tempfile.SpooledTemporaryFile(max_size=64 * 2**20, mode="w+b") as spool:
        cursor = conn.connection.dbapi_connection.cursor()
        try:
            cursor.copy_expert(f"COPY ({sql}) TO STDOUT WITH (FORMAT csv, HEADER true)", spool)
        finally:
            cursor.close()
        spool.seek(0)
        frame = pd.read_csv(
            spool,
            dtype={**{c: "category" for c in PRICE_KEY_COLUMNS}, "price": "float64"},
            keep_default_na=False,
            na_values={"price": [""]},
        )
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True, format="ISO8601")
    frame["is_day_open"] = frame["is_day_open"].map({"t": True, "f": False}).astype(bool)
    return frame


def read_on_demand(conn: Connection) -> pd.DataFrame:
    o = OnDemandPrice
    return read_frame(conn, select(o.region, o.instance_type, o.operating_system, o.usd_per_hour))


def read_advisor(conn: Connection, through: date, lookback_days: int = 31) -> pd.DataFrame:
    """Advisor rows of the last `lookback_days` up to `through` (the scorer keeps the latest per key)."""
    a = SpotAdvisorEntry
    return read_frame(
        conn,
        select(a.day, a.region, a.operating_system, a.instance_type, a.interruption_band, a.savings_pct).where(
            a.day <= through, a.day > through - timedelta(days=lookback_days)
        ),
    )


def read_catalog(conn: Connection) -> pd.DataFrame:
    t = InstanceTypeSpec
    return read_frame(conn, select(t.instance_type, t.family, t.vcpu, t.memory_gib, t.architecture))
