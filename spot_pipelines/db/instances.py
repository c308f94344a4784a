"""Writing a discovery scan: upsert what was seen, mark what vanished as terminated."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from spot_pipelines.db.models import Instance
from spot_pipelines.db.upsert import bulk_upsert


@dataclass(frozen=True)
class WriteSummary:
    upserted: int
    newly_terminated: int


def write_scan(session: Session, account_id: int, instances: list[dict], *,
               scanned_regions: Iterable[str], seen_at: datetime) -> WriteSummary:
    """One transaction's worth of writes for one account's scan.

    Only regions that were scanned completely may mark instances terminated: an instance in a
    skipped or failed region is unknown, not gone.
    """
    rows = [{**row, "account_id": account_id, "first_seen_at": seen_at, "last_seen_at": seen_at,
             "terminated_at": seen_at if row["state"] == "terminated" else None}
            for row in instances]
    bulk_upsert(session, Instance.__table__, rows, key=("account_id", "instance_id"),
                keep_on_update=("first_seen_at",))
    vanished = session.execute(
        update(Instance)
        .where(Instance.account_id == account_id,
               Instance.region.in_(list(scanned_regions)),
               Instance.last_seen_at < seen_at,
               Instance.terminated_at.is_(None))
        .values(state="terminated", terminated_at=seen_at)
        .execution_options(synchronize_session=False)
    )
    return WriteSummary(upserted=len(rows), newly_terminated=vanished.rowcount or 0)


def count_for_account(session: Session, account_id: int) -> int:
    return session.scalar(select(func.count()).select_from(Instance).where(Instance.account_id == account_id))


def record_launched(session: Session, account_id: int, row: dict, *, seen_at: datetime) -> None:
    """Record an instance we launched (a discovery-shaped row), as the next scan would."""
    write = {**row, "account_id": account_id, "first_seen_at": seen_at, "last_seen_at": seen_at,
             "terminated_at": seen_at if row["state"] == "terminated" else None}
    bulk_upsert(session, Instance.__table__, [write], key=("account_id", "instance_id"),
                keep_on_update=("first_seen_at",))


def mark_retired(session: Session, account_id: int, instance_id: str, retire: str, *, at: datetime) -> None:
    """The replaced instance is gone from the fleet the recommender sees (retire: terminate | stop)."""
    values = {"state": "terminated", "terminated_at": at} if retire == "terminate" else {"state": "stopped"}
    session.execute(update(Instance)
                    .where(Instance.account_id == account_id, Instance.instance_id == instance_id)
                    .values(**values)
                    .execution_options(synchronize_session=False))
