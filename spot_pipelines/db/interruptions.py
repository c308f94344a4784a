"""Spot interruption events and dead letters (tables of migration 0003), and storing a batch of SQS messages."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import pandas as pd
from sqlalchemy import BigInteger, Connection, ForeignKey, Index, Integer, String, Text, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from spot_pipelines.core.clock import utcnow
from spot_pipelines.core.interruptions import MAX_DEAD_LETTER_BODY, StoreResult, plan_store, split
from spot_pipelines.core.redaction import redact_text
from spot_pipelines.core.risk import BurstConfig, hot_pools
from spot_pipelines.db import accounts, discovery
from spot_pipelines.db.base import Base, JSONType, UTCDateTime
from spot_pipelines.db.frames import read_frame
from spot_pipelines.db.upsert import insert_ignoring_conflicts

_BIGID = BigInteger().with_variant(Integer, "sqlite")


class SpotInterruptionEvent(Base):
    """One EventBridge event about an EC2 instance, recorded once per event id."""

    __tablename__ = "spot_interruption_events"

    event_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    event_type: Mapped[str] = mapped_column(String(32), nullable=False)
    event_time: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    aws_account_id: Mapped[str] = mapped_column(String(12), nullable=False)
    account_id: Mapped[int | None] = mapped_column(Integer, ForeignKey("accounts.id", ondelete="SET NULL"))
    region: Mapped[str] = mapped_column(String(32), nullable=False)
    availability_zone: Mapped[str | None] = mapped_column(String(32))
    availability_zone_id: Mapped[str | None] = mapped_column(String(32))
    instance_id: Mapped[str] = mapped_column(String(32), nullable=False)
    instance_type: Mapped[str | None] = mapped_column(String(64))
    action_or_state: Mapped[str | None] = mapped_column(String(32))
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSONType)

    __table_args__ = (
        Index("ix_spot_interruption_events_time", "event_time"),
        Index("ix_spot_interruption_events_account_time", "account_id", "event_time"),
        Index("ix_spot_interruption_events_type_az_id", "instance_type", "availability_zone_id"),
        Index("ix_spot_interruption_events_instance", "instance_id"),
    )


class DeadLetter(Base):
    """A message that could not be processed, with the reason, kept instead of dropped."""

    __tablename__ = "dead_letters"

    id: Mapped[int] = mapped_column(_BIGID, primary_key=True, autoincrement=True)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    source: Mapped[str] = mapped_column(String(64), nullable=False)
    reason: Mapped[str] = mapped_column(Text, nullable=False)
    body: Mapped[str | None] = mapped_column(Text)
    message_id: Mapped[str | None] = mapped_column(String(128))

    __table_args__ = (
        Index("ix_dead_letters_received_at", "received_at"),
        Index("ix_dead_letters_source_message", "source", "message_id", unique=True),
    )


def dead_letter_rows(rejected: Sequence[tuple[Any, str]], *, source: str, received_at: datetime) -> list[dict]:
    return [
        {
            "received_at": received_at,
            "source": source,
            "reason": redact_text(reason[:2000]),
            "body": redact_text((message.body or "")[:MAX_DEAD_LETTER_BODY]),
            "message_id": message.message_id,
        }
        for message, reason in rejected
    ]


def store_interruption_messages(
    session: Session, messages: Sequence[Any], *, received_at: datetime, source: str = "spot_interruption_queue"
) -> StoreResult:
    """Record one batch of SQS messages in the caller's transaction: each event once (by event id),
    enriched with the account and the discovered instance's AZ ID and type; everything else
    dead-lettered with its reason (the decisions: core.interruptions.plan_store)."""
    batch = split(messages)
    events = [e for _, e in batch.events]
    owners = accounts.owners_by_aws_account_id(session, (e.aws_account_id for e in events))
    ids = [e.event_id for e in events]
    existing = (
        set(session.scalars(select(SpotInterruptionEvent.event_id).where(SpotInterruptionEvent.event_id.in_(ids))))
        if ids
        else set()
    )
    instances = discovery.placements(session, sorted({e.instance_id for e in events if e.event_id not in existing}))

    plan = plan_store(batch, owners, existing, instances, received_at=received_at)
    insert_ignoring_conflicts(session, SpotInterruptionEvent.__table__, plan.rows, ["event_id"])
    if plan.rejected:
        insert_ignoring_conflicts(
            session,
            DeadLetter.__table__,
            dead_letter_rows(plan.rejected, source=source, received_at=received_at),
            ["source", "message_id"],
        )
    return plan.result


def read_events(conn: Connection, start: datetime, end: datetime) -> pd.DataFrame:
    e = SpotInterruptionEvent
    return read_frame(
        conn,
        select(e.event_type, e.event_time, e.region, e.availability_zone_id, e.instance_type).where(
            e.event_time >= start, e.event_time < end
        ),
    )


# Far longer than any quiet period a pool stays hot for, so a burst still hot lies inside it.
HOT_LOOKBACK = timedelta(days=14)


def read_hot_pools(conn: Connection, as_of: datetime, config: BurstConfig) -> pd.DataFrame:
    """The pools hot at `as_of` (core.risk.hot_pools) from the warnings stored before it."""
    return hot_pools(read_events(conn, as_of - HOT_LOOKBACK, as_of), as_of, config)
