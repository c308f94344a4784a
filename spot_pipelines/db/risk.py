"""Interruption risk scores, one row per spot market (table of migration 0004, model features of 0011)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import pandas as pd
from sqlalchemy import Connection, Float, Integer, String, delete, insert, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from spot_pipelines.db.base import Base, UTCDateTime
from spot_pipelines.db.frames import read_frame

MARKET_KEY = ("region", "availability_zone_id", "instance_type", "product_description")


class InterruptionRiskScore(Base):
    """One row per spot market (region, AZ ID, type, product): features kept for inspection."""

    __tablename__ = "interruption_risk_scores"

    region: Mapped[str] = mapped_column(String(32), primary_key=True)
    availability_zone_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    instance_type: Mapped[str] = mapped_column(String(64), primary_key=True)
    product_description: Mapped[str] = mapped_column(String(64), primary_key=True)
    window_start: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    window_end: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    spot_price: Mapped[float] = mapped_column(Float, nullable=False)
    on_demand_price: Mapped[float] = mapped_column(Float, nullable=False)
    price_to_on_demand: Mapped[float] = mapped_column(Float, nullable=False)
    price_mean: Mapped[float] = mapped_column(Float, nullable=False)
    volatility: Mapped[float] = mapped_column(Float, nullable=False)
    changes_per_day: Mapped[float] = mapped_column(Float, nullable=False)
    mean_abs_change_pct: Mapped[float] = mapped_column(Float, nullable=False)
    spike_ratio_7d: Mapped[float] = mapped_column(Float, nullable=False)
    hours_since_change: Mapped[float] = mapped_column(Float, nullable=False)
    advisor_band: Mapped[int | None] = mapped_column(Integer)
    advisor_savings_pct: Mapped[float | None] = mapped_column(Float)
    observed_interruptions: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    # Migration 0011: rebalance recommendations (a feature, never a warning) and the pool's placement score
    # (NULL where AWS gave none: never invented).
    observed_rebalances: Mapped[int] = mapped_column(Integer, nullable=False, default=0, server_default="0")
    placement_score: Mapped[float | None] = mapped_column(Float)
    score: Mapped[float] = mapped_column(Float, nullable=False)
    risk_band: Mapped[str] = mapped_column(String(16), nullable=False)
    scored_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, index=True)


def replace_rows(session: Session, model: type[Base], rows: Sequence[dict[str, Any]], batch: int = 5000) -> None:
    """Replace a whole snapshot table (risk scores, predictions) inside the caller's transaction."""
    session.execute(delete(model))
    for start in range(0, len(rows), batch):
        session.execute(insert(model), list(rows[start : start + batch]))


def read_risk_scores(conn: Connection) -> pd.DataFrame:
    return read_frame(conn, select(InterruptionRiskScore))
