"""Spot placement scores, a daily history (table of migration 0009): one row per (day, request configuration,
AZ ID); re-fetching a configuration on the same day replaces its rows, earlier days are kept."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Any

import pandas as pd
from sqlalchemy import Connection, Date, Integer, String, Text, UniqueConstraint, delete, func, insert, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from spot_pipelines.db.base import Base, UTCDateTime
from spot_pipelines.db.frames import read_frame


class SpotPlacementScore(Base):
    __tablename__ = "spot_placement_scores"
    __table_args__ = (UniqueConstraint("day", "config_key", "availability_zone_id", name="uq_spot_placement_scores"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    day: Mapped[date] = mapped_column(Date, nullable=False, index=True)
    config_key: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    region: Mapped[str] = mapped_column(String(32), nullable=False)
    availability_zone_id: Mapped[str] = mapped_column(String(32), nullable=False)
    instance_types: Mapped[str] = mapped_column(Text, nullable=False)  # comma-separated, sorted
    target_capacity: Mapped[int] = mapped_column(Integer, nullable=False)
    score: Mapped[int] = mapped_column(Integer, nullable=False)  # 1..10, as AWS returned it
    fetched_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)


_COLUMNS = ["config_key", "region", "availability_zone_id", "instance_types", "target_capacity", "score", "fetched_at"]


def write_scores(session: Session, rows: Sequence[dict[str, Any]]) -> int:
    """Replace each written configuration's rows of its day (the day of `fetched_at`)."""
    t = SpotPlacementScore.__table__
    rows = [{**r, "day": r["fetched_at"].date()} for r in rows]
    for day, key in {(r["day"], r["config_key"]) for r in rows}:
        session.execute(delete(t).where(t.c.day == day, t.c.config_key == key))
    if rows:
        session.execute(insert(t), rows)
    return len(rows)


def read_since(conn: Connection, since: datetime) -> pd.DataFrame:
    """Rows fetched at or after `since` (the cache and the 24 h configuration window)."""
    s = SpotPlacementScore
    return read_frame(conn, select(*(getattr(s, c) for c in _COLUMNS)).where(s.fetched_at >= since))


def read_between(conn: Connection, start: datetime, end: datetime) -> pd.DataFrame:
    """Rows fetched in [start, end): the history the model's `placement_score` feature is built from (a row
    fetched at or after `end` is not yet known at `end`)."""
    s = SpotPlacementScore
    return read_frame(conn, select(*(getattr(s, c) for c in _COLUMNS)).where(s.fetched_at >= start, s.fetched_at < end))


def read_latest(conn: Connection, lookback: timedelta = timedelta(days=2)) -> pd.DataFrame:
    """Each configuration's newest fetch within `lookback` of the newest one stored (recommend()'s gate)."""
    s = SpotPlacementScore
    newest = conn.execute(select(func.max(s.fetched_at))).scalar()
    if newest is None:
        return pd.DataFrame(columns=_COLUMNS)
    frame = read_frame(conn, select(*(getattr(s, c) for c in _COLUMNS)).where(s.fetched_at >= newest - lookback))
    latest = frame.groupby("config_key")["fetched_at"].transform("max")
    return frame[frame["fetched_at"] == latest].reset_index(drop=True)
