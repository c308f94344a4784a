"""The model registry and interruption predictions (tables of migration 0004)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pandas as pd
from sqlalchemy import Connection, Float, Integer, Row, String, Text, func, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from spot_pipelines.core.clock import utcnow
from spot_pipelines.db.base import Base, JSONType, UTCDateTime
from spot_pipelines.db.frames import read_frame

# model_registry.status
CANDIDATE, READY, BLOCKED = "candidate", "ready", "blocked"


class ModelRegistryEntry(Base):
    __tablename__ = "model_registry"

    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    trained_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    data_start: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    data_end: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    holdout_start: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    n_train: Mapped[int] = mapped_column(Integer, nullable=False)
    n_holdout: Mapped[int] = mapped_column(Integer, nullable=False)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False)
    features: Mapped[list[str]] = mapped_column(JSONType, nullable=False)
    label_source: Mapped[str] = mapped_column(String(32), nullable=False)
    horizon_hours: Mapped[int] = mapped_column(Integer, nullable=False)
    artifact_uri: Mapped[str] = mapped_column(Text, nullable=False)
    artifact_sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    sklearn_version: Mapped[str] = mapped_column(String(32), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default=CANDIDATE, index=True)
    status_reason: Mapped[str | None] = mapped_column(Text)
    checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class InterruptionPrediction(Base):
    __tablename__ = "interruption_predictions"

    region: Mapped[str] = mapped_column(String(32), primary_key=True)
    availability_zone_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    instance_type: Mapped[str] = mapped_column(String(64), primary_key=True)
    product_description: Mapped[str] = mapped_column(String(64), primary_key=True)
    model_version: Mapped[int] = mapped_column(Integer, nullable=False, index=True)
    p_interruption: Mapped[float] = mapped_column(Float, nullable=False)
    horizon_hours: Mapped[int] = mapped_column(Integer, nullable=False)
    risk_score: Mapped[float] = mapped_column(Float, nullable=False)
    spot_price: Mapped[float] = mapped_column(Float, nullable=False)
    on_demand_price: Mapped[float] = mapped_column(Float, nullable=False)
    predicted_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)


def next_model_version(session: Session) -> int:
    return (session.scalar(select(func.max(ModelRegistryEntry.version))) or 0) + 1


def ready_models(session: Session) -> list[ModelRegistryEntry]:
    """Usable model versions, newest first."""
    return list(
        session.scalars(
            select(ModelRegistryEntry)
            .where(ModelRegistryEntry.status == READY)
            .order_by(ModelRegistryEntry.version.desc())
        )
    )


def latest_model(session: Session) -> ModelRegistryEntry | None:
    return session.scalars(
        select(ModelRegistryEntry).order_by(ModelRegistryEntry.version.desc()).limit(1)
    ).one_or_none()


def set_model_status(session: Session, version: int, status: str, reason: str | None) -> None:
    session.execute(
        update(ModelRegistryEntry)
        .where(ModelRegistryEntry.version == version)
        .values(status=status, status_reason=reason, checked_at=utcnow())
    )


def read_predictions(conn: Connection) -> pd.DataFrame:
    return read_frame(conn, select(InterruptionPrediction))


def newest_models(conn: Connection, limit: int = 50) -> list[Row]:
    """What the health probe judges of the newest registry entries, newest first."""
    m = ModelRegistryEntry
    stmt = select(m.version, m.status, m.trained_at, m.artifact_uri, m.artifact_sha256, m.status_reason)
    return list(conn.execute(stmt.order_by(m.version.desc()).limit(limit)))


def newest_ready_sha256(conn: Connection) -> str | None:
    m = ModelRegistryEntry
    return conn.scalar(select(m.artifact_sha256).where(m.status == READY).order_by(m.version.desc()).limit(1))
