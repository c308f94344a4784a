"""The instances table and a discovery scan's writes: upsert what was seen, mark what vanished as terminated."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

import pandas as pd
from sqlalchemy import Connection, ForeignKey, Index, Integer, String, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from spot_pipelines.db.base import Base, JSONType, UTCDateTime
from spot_pipelines.db.frames import read_frame
from spot_pipelines.db.upsert import bulk_upsert


class Instance(Base):
    __tablename__ = "instances"

    account_id: Mapped[int] = mapped_column(Integer, ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True)
    instance_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    region: Mapped[str] = mapped_column(String(32), nullable=False)
    availability_zone: Mapped[str | None] = mapped_column(String(32))
    availability_zone_id: Mapped[str | None] = mapped_column(String(32))
    instance_type: Mapped[str] = mapped_column(String(64), nullable=False)
    lifecycle: Mapped[str] = mapped_column(String(16), nullable=False)  # spot | on-demand | scheduled
    state: Mapped[str] = mapped_column(String(16), nullable=False)
    platform: Mapped[str] = mapped_column(String(64), nullable=False)
    architecture: Mapped[str | None] = mapped_column(String(16))
    launch_time: Mapped[datetime | None] = mapped_column(UTCDateTime)
    tags: Mapped[dict[str, str]] = mapped_column(JSONType, nullable=False, default=dict)
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    terminated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        Index("ix_instances_account_region", "account_id", "region"),
        Index("ix_instances_type_az_id", "instance_type", "availability_zone_id"),
    )


@dataclass(frozen=True)
class WriteSummary:
    upserted: int
    newly_terminated: int


def write_scan(
    session: Session, account_id: int, instances: list[dict], *, scanned_regions: Iterable[str], seen_at: datetime
) -> WriteSummary:
    """One transaction's worth of writes for one account's scan.

    Only regions that were scanned completely may mark instances terminated: an instance in a
    skipped or failed region is unknown, not gone.
    """
    rows = [
        {
            **row,
            "account_id": account_id,
            "first_seen_at": seen_at,
            "last_seen_at": seen_at,
            "terminated_at": seen_at if row["state"] == "terminated" else None,
        }
        for row in instances
    ]
    bulk_upsert(session, Instance.__table__, rows, key=("account_id", "instance_id"), keep_on_update=("first_seen_at",))
    vanished = session.execute(
        update(Instance)
        .where(
            Instance.account_id == account_id,
            Instance.region.in_(list(scanned_regions)),
            Instance.last_seen_at < seen_at,
            Instance.terminated_at.is_(None),
        )
        .values(state="terminated", terminated_at=seen_at)
        .execution_options(synchronize_session=False)
    )
    return WriteSummary(upserted=len(rows), newly_terminated=vanished.rowcount or 0)


def record_launched(session: Session, account_id: int, row: dict, *, seen_at: datetime) -> None:
    """Record an instance we launched (a discovery-shaped row), as the next scan would."""
    write = {
        **row,
        "account_id": account_id,
        "first_seen_at": seen_at,
        "last_seen_at": seen_at,
        "terminated_at": seen_at if row["state"] == "terminated" else None,
    }
    bulk_upsert(
        session, Instance.__table__, [write], key=("account_id", "instance_id"), keep_on_update=("first_seen_at",)
    )


def mark_retired(session: Session, account_id: int, instance_id: str, retire: str, *, at: datetime) -> None:
    """The replaced instance is gone from the fleet the recommender sees (retire: terminate | stop)."""
    values = {"state": "terminated", "terminated_at": at} if retire == "terminate" else {"state": "stopped"}
    session.execute(
        update(Instance)
        .where(Instance.account_id == account_id, Instance.instance_id == instance_id)
        .values(**values)
        .execution_options(synchronize_session=False)
    )


def read_running_instances(conn: Connection) -> pd.DataFrame:
    i = Instance
    return read_frame(
        conn,
        select(
            i.account_id,
            i.instance_id,
            i.region,
            i.availability_zone_id,
            i.instance_type,
            i.lifecycle,
            i.state,
            i.platform,
            i.architecture,
            i.tags,
        ).where(i.state == "running", i.terminated_at.is_(None)),
    )


# --------------------------------------------------------------------------- lookups for other domains


def inventory_instance_types(session: Session) -> list[str]:
    """Instance types of the discovered fleet that is still there."""
    rows = session.scalars(select(Instance.instance_type).where(Instance.terminated_at.is_(None)).distinct())
    return sorted(rows)


def running_instance_keys(session: Session) -> set[tuple[int, str]]:
    """(account id, instance id) of every running instance of the inventory."""
    rows = session.execute(
        select(Instance.account_id, Instance.instance_id).where(
            Instance.state == "running", Instance.terminated_at.is_(None)
        )
    )
    return {tuple(r) for r in rows}


def accounts_of_instances(session: Session, instance_ids: Sequence[str]) -> dict[str, int]:
    """Instance id → the account it was discovered in, for the ids that are in the inventory."""
    ids = sorted(set(instance_ids))
    owners: dict[str, int] = {}
    for start in range(0, len(ids), 1000):
        owners.update(
            session.execute(
                select(Instance.instance_id, Instance.account_id).where(
                    Instance.instance_id.in_(ids[start : start + 1000])
                )
            )
            .tuples()
            .all()
        )
    return owners


def placements(session: Session, instance_ids: Sequence[str]) -> dict[tuple[int, str], tuple[str | None, ...]]:
    """(account id, instance id) → (AZ, AZ ID, instance type) of the inventory's instances with these ids."""
    if not instance_ids:
        return {}
    i = Instance
    rows = session.execute(
        select(i.account_id, i.instance_id, i.availability_zone, i.availability_zone_id, i.instance_type).where(
            i.instance_id.in_(list(instance_ids))
        )
    )
    return {(account_id, instance_id): (az, az_id, itype) for account_id, instance_id, az, az_id, itype in rows}
