"""Spot recommendations, operator decisions on them and the savings they add up to (table of migration 0004)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

import pandas as pd
from sqlalchemy import (
    BigInteger,
    Connection,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    case,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.orm import Mapped, Session, mapped_column

from spot_pipelines.core.clock import utcnow
from spot_pipelines.core.errors import ValidationError
from spot_pipelines.db.base import Base, JSONType, UTCDateTime
from spot_pipelines.db.discovery import running_instance_keys
from spot_pipelines.db.frames import read_frame

# spot_recommendations.status
PROPOSED, APPROVED, EXECUTING, EXECUTED, FAILED, REJECTED, SUPERSEDED = (
    "proposed",
    "approved",
    "executing",
    "executed",
    "failed",
    "rejected",
    "superseded",
)
REC_STATUSES = (PROPOSED, APPROVED, EXECUTING, EXECUTED, FAILED, REJECTED, SUPERSEDED)

_BigId = BigInteger().with_variant(Integer, "sqlite")


class SpotRecommendation(Base):
    __tablename__ = "spot_recommendations"

    id: Mapped[int] = mapped_column(_BigId, primary_key=True, autoincrement=True)
    generation_id: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    account_id: Mapped[int] = mapped_column(Integer, ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False)
    instance_id: Mapped[str] = mapped_column(String(32), nullable=False)
    region: Mapped[str] = mapped_column(String(32), nullable=False)
    availability_zone_id: Mapped[str | None] = mapped_column(String(32))
    current_instance_type: Mapped[str] = mapped_column(String(64), nullable=False)
    current_lifecycle: Mapped[str] = mapped_column(String(16), nullable=False)
    group_key: Mapped[str | None] = mapped_column(String(256))
    action: Mapped[str] = mapped_column(String(32), nullable=False)
    target_instance_type: Mapped[str | None] = mapped_column(String(64))
    target_availability_zone_id: Mapped[str | None] = mapped_column(String(32))
    target_market: Mapped[str | None] = mapped_column(String(16))  # spot | on-demand
    candidates: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, nullable=False)
    on_demand_hourly_cost: Mapped[float] = mapped_column(Float, nullable=False)
    current_hourly_cost: Mapped[float] = mapped_column(Float, nullable=False)
    recommended_hourly_cost: Mapped[float] = mapped_column(Float, nullable=False)
    p_interruption: Mapped[float | None] = mapped_column(Float)
    monthly_savings_usd: Mapped[float] = mapped_column(Float, nullable=False)  # net for actions, 0 for stays
    # Migration 0007. Against the list on-demand price / against the bill under the pool's commitments.
    list_monthly_savings_usd: Mapped[float | None] = mapped_column(Float)
    net_monthly_savings_usd: Mapped[float | None] = mapped_column(Float)
    commitment_covered_fraction: Mapped[float | None] = mapped_column(Float)
    reason: Mapped[str] = mapped_column(Text, nullable=False)
    model_version: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default=PROPOSED, index=True)
    generated_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, index=True)
    approved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    approved_by: Mapped[str | None] = mapped_column(String(128))
    status_changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    executed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    replacement_instance_id: Mapped[str | None] = mapped_column(String(32))
    error: Mapped[str | None] = mapped_column(Text)
    realised_hourly_usd: Mapped[float | None] = mapped_column(Float)  # list price of what was launched (0008)
    realised_price_basis: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (Index("ix_spot_recommendations_account_instance", "account_id", "instance_id"),)


# --------------------------------------------------------------------------- writes


def write_recommendations(session: Session, rows: Sequence[dict[str, Any]], *, generated_at: datetime) -> int:
    """Supersede the previous generation's still-proposed rows for these instances, insert the new ones.

    Approved, executing, executed, failed and rejected rows are decisions or history: never touched.
    """
    proposed = session.execute(
        select(SpotRecommendation.id, SpotRecommendation.account_id, SpotRecommendation.instance_id).where(
            SpotRecommendation.status == PROPOSED
        )
    ).all()
    # Every proposed row is superseded by a new generation (instances that vanished included).
    stale = [r.id for r in proposed]
    for start in range(0, len(stale), 1000):
        session.execute(
            update(SpotRecommendation)
            .where(SpotRecommendation.id.in_(stale[start : start + 1000]))
            .values(status=SUPERSEDED, status_changed_at=generated_at)
        )
    busy = set(
        session.execute(
            select(SpotRecommendation.account_id, SpotRecommendation.instance_id).where(
                SpotRecommendation.status.in_((APPROVED, EXECUTING))
            )
        ).all()
    )
    fresh = [r for r in rows if (r["account_id"], r["instance_id"]) not in busy]
    for start in range(0, len(fresh), 2000):
        session.execute(insert(SpotRecommendation), list(fresh[start : start + 2000]))
    return len(fresh)


def supersede_for_replaced(session: Session, executed: SpotRecommendation, at: datetime) -> int:
    """The instance `executed` replaced is gone: its other open rows (proposed or approved) are moot."""
    result = session.execute(
        update(SpotRecommendation)
        .where(
            SpotRecommendation.account_id == executed.account_id,
            SpotRecommendation.instance_id == executed.instance_id,
            SpotRecommendation.id != executed.id,
            SpotRecommendation.status.in_((PROPOSED, APPROVED)),
        )
        .values(
            status=SUPERSEDED,
            status_changed_at=at,
            error=f"instance replaced by {executed.replacement_instance_id} (recommendation {executed.id})",
        )
        .execution_options(synchronize_session=False)
    )
    return result.rowcount or 0


# --------------------------------------------------------------------------- operator decisions


def _load_for_decision(session: Session, ids: Iterable[int]) -> list[SpotRecommendation]:
    ids = sorted(set(int(i) for i in ids))
    if not ids:
        raise ValidationError("ids", "give at least one recommendation id")
    found = {
        r.id: r
        for r in session.scalars(select(SpotRecommendation).where(SpotRecommendation.id.in_(ids)).with_for_update())
    }
    missing = [i for i in ids if i not in found]
    if missing:
        raise ValidationError(
            "ids",
            f"unknown recommendation id(s): {', '.join(map(str, missing))}; "
            "nothing was changed (see `spot-pipelines recommendations list`)",
        )
    return [found[i] for i in ids]


def approve(session: Session, ids: Iterable[int], *, by: str) -> list[SpotRecommendation]:
    """Mark proposed rows approved, all or nothing. Unknown or non-proposed ids raise ValidationError."""
    recs = _load_for_decision(session, ids)
    wrong = [f"{r.id} is {r.status}" for r in recs if r.status != PROPOSED]
    if wrong:
        raise ValidationError(
            "ids", "only proposed recommendations can be approved: " + "; ".join(wrong) + "; nothing was changed"
        )
    not_actionable = [f"{r.id} is {r.action}" for r in recs if r.action == "stay_on_demand"]
    if not_actionable:
        raise ValidationError("ids", "nothing to execute for: " + "; ".join(not_actionable) + "; nothing was changed")
    now = utcnow()
    for r in recs:
        r.status, r.approved_at, r.approved_by, r.status_changed_at = APPROVED, now, by, now
    return recs


def reject(session: Session, ids: Iterable[int], *, by: str) -> list[SpotRecommendation]:
    recs = _load_for_decision(session, ids)
    wrong = [f"{r.id} is {r.status}" for r in recs if r.status not in (PROPOSED, APPROVED)]
    if wrong:
        raise ValidationError(
            "ids",
            "only proposed or approved recommendations can be rejected: " + "; ".join(wrong) + "; nothing was changed",
        )
    now = utcnow()
    for r in recs:
        r.status, r.approved_by, r.status_changed_at = REJECTED, by, now
    return recs


def list_recommendations(
    session: Session,
    statuses: Sequence[str] | None = None,
    limit: int = 100,
    *,
    account_ids: Sequence[int] | None = None,
    regions: Sequence[str] | None = None,
    actions: Sequence[str] | None = None,
) -> list[SpotRecommendation]:
    """Biggest net saving first; each filter given narrows to its values."""
    r = SpotRecommendation
    net = func.coalesce(r.net_monthly_savings_usd, r.monthly_savings_usd)
    stmt = select(r).order_by(net.desc(), r.id)
    for column, values in ((r.status, statuses), (r.account_id, account_ids), (r.region, regions), (r.action, actions)):
        if values:
            stmt = stmt.where(column.in_(list(values)))
    return list(session.scalars(stmt.limit(limit)))


def covered_stays(session: Session) -> list[SpotRecommendation]:
    """Proposed rows kept on-demand while a commitment covers the instance: moving it would idle the commitment."""
    return list(
        session.scalars(
            select(SpotRecommendation)
            .where(
                SpotRecommendation.status == PROPOSED,
                SpotRecommendation.action == "stay_on_demand",
                SpotRecommendation.commitment_covered_fraction > 0,
            )
            .order_by(SpotRecommendation.id)
        )
    )


def approved_for_execution(session: Session, ids: Sequence[int] | None = None) -> list[SpotRecommendation]:
    """The approved rows (of `ids`, else all), oldest first: what an execution run takes."""
    stmt = select(SpotRecommendation).where(SpotRecommendation.status == APPROVED).order_by(SpotRecommendation.id)
    if ids:
        stmt = stmt.where(SpotRecommendation.id.in_(list(ids)))
    return list(session.scalars(stmt))


def savings_over_time(conn: Connection, days: int = 30) -> pd.DataFrame:
    """Per generation: recommendations, proposed monthly savings, and what was executed of them."""
    r = SpotRecommendation
    executed = func.sum(case((r.status == EXECUTED, r.monthly_savings_usd), else_=0.0))
    stmt = (
        select(
            r.generation_id,
            func.min(r.generated_at).label("generated_at"),
            func.count().label("recommendations"),
            func.sum(r.monthly_savings_usd).label("monthly_savings_usd"),
            executed.label("executed_monthly_savings_usd"),
        )
        .where(r.action != "stay_on_demand", r.generated_at >= utcnow() - timedelta(days=days))
        .group_by(r.generation_id)
        .order_by(func.min(r.generated_at))
    )
    return read_frame(conn, stmt)


def fleet_savings(session: Session) -> tuple[dict[int, dict[str, float]], list[SpotRecommendation]]:
    """Per account id, over the inventory's running instances: `instances`; `to_change` and `monthly` of the
    open (proposed, approved, executing) rows, one per instance; `executed` and `executed_monthly` of the
    executed rows whose replacement is still running. Also the open rows, best first.

    Each saving is counted once: a replaced instance is no longer running, so its savings live only in the
    executed row (counted through the new instance); the replacement's own row says what else it could save.
    """
    running = running_instance_keys(session)
    stats: dict[int, dict[str, float]] = {}

    def of(account_id: int) -> dict[str, float]:
        return stats.setdefault(
            account_id, {"instances": 0, "to_change": 0, "monthly": 0.0, "executed": 0, "executed_monthly": 0.0}
        )

    for account_id, _ in running:
        of(account_id)["instances"] += 1
    open_rows: dict[tuple[int, str], SpotRecommendation] = {}
    for rec in session.scalars(
        select(SpotRecommendation)
        .where(SpotRecommendation.status.in_((PROPOSED, APPROVED, EXECUTING)))
        .order_by(SpotRecommendation.id)
    ):
        if (rec.account_id, rec.instance_id) in running and rec.monthly_savings_usd > 0:
            open_rows[(rec.account_id, rec.instance_id)] = rec  # the newest row per instance
    for rec in open_rows.values():
        s = of(rec.account_id)
        s["to_change"] += 1
        s["monthly"] += rec.monthly_savings_usd
    for rec in session.scalars(select(SpotRecommendation).where(SpotRecommendation.status == EXECUTED)):
        if (rec.account_id, rec.replacement_instance_id) in running:
            s = of(rec.account_id)
            s["executed"] += 1
            s["executed_monthly"] += rec.monthly_savings_usd
    return stats, sorted(open_rows.values(), key=lambda r: (-r.monthly_savings_usd, r.id))
