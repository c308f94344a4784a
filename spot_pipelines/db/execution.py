"""The execution audit trail: one row per EC2 call of a recommendation (table of migration 0004)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, ForeignKey, Integer, String, Text, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from spot_pipelines.core.clock import utcnow
from spot_pipelines.core.execution import RecommendationView
from spot_pipelines.db import discovery as inventory
from spot_pipelines.db import optimization as opt
from spot_pipelines.db.accounts import Account
from spot_pipelines.db.base import Base, JSONType, UTCDateTime
from spot_pipelines.db.market_data import OnDemandPrice, SpotPrice
from spot_pipelines.db.optimization import EXECUTING, SpotRecommendation

_BigId = BigInteger().with_variant(Integer, "sqlite")


class RecommendationAction(Base):
    """Audit trail: one row per EC2 call made (or, in dry-run, that would be made)."""

    __tablename__ = "recommendation_actions"

    id: Mapped[int] = mapped_column(_BigId, primary_key=True, autoincrement=True)
    recommendation_id: Mapped[int] = mapped_column(
        _BigId, ForeignKey("spot_recommendations.id", ondelete="CASCADE"), nullable=False, index=True
    )
    run_id: Mapped[str | None] = mapped_column(String(64))
    dry_run: Mapped[bool] = mapped_column(Boolean, nullable=False)
    step: Mapped[int] = mapped_column(Integer, nullable=False)
    operation: Mapped[str] = mapped_column(String(64), nullable=False)
    params: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False)
    before_state: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    after_state: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    outcome: Mapped[str] = mapped_column(String(16), nullable=False)  # planned | succeeded | failed
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


def record_call(session: Session, recommendation_id: int, run_id: str | None, dry_run: bool, call) -> None:
    session.add(
        RecommendationAction(
            recommendation_id=recommendation_id,
            run_id=run_id,
            dry_run=dry_run,
            step=call.step,
            operation=call.operation,
            params=call.params,
            before_state=call.before_state,
            after_state=call.after_state,
            outcome=call.outcome,
            error=call.error,
            started_at=call.started_at,
            finished_at=call.finished_at,
        )
    )


def actions_for(session: Session, recommendation_id: int) -> list[RecommendationAction]:
    return list(
        session.scalars(
            select(RecommendationAction)
            .where(RecommendationAction.recommendation_id == recommendation_id)
            .order_by(RecommendationAction.id)
        )
    )


def recommendation_view(rec: SpotRecommendation, account: Account) -> RecommendationView:
    return RecommendationView(
        id=rec.id,
        account_name=account.name,
        instance_id=rec.instance_id,
        region=rec.region,
        current_instance_type=rec.current_instance_type,
        current_lifecycle=rec.current_lifecycle,
        action=rec.action,
        target_instance_type=rec.target_instance_type,
        target_availability_zone_id=rec.target_availability_zone_id,
        target_market=rec.target_market,
        group_key=rec.group_key,
        candidate_types=tuple(
            dict.fromkeys(c["instance_type"] for c in rec.candidates or [] if c.get("instance_type"))
        ),
    )


def stuck_executing(session: Session, older_than: datetime) -> list[SpotRecommendation]:
    """Rows a run left `executing` (killed between its first mutating call and its final write)."""
    return list(
        session.scalars(
            select(SpotRecommendation)
            .where(SpotRecommendation.status == EXECUTING, SpotRecommendation.status_changed_at < older_than)
            .order_by(SpotRecommendation.id)
        )
    )


def record_outcome(session: Session, rec_id: int, outcome) -> None:
    """One transaction: the row's final status, and the inventory as EC2 now has it (so the next
    spot_recommendations neither proposes the replaced instance again nor mistakes the new one)."""
    rec = session.get(SpotRecommendation, rec_id)
    now = utcnow()
    rec.status, rec.status_changed_at, rec.error = outcome.status, now, outcome.error
    rec.replacement_instance_id = outcome.replacement_instance_id
    if outcome.replacement is not None:
        inventory.record_launched(session, rec.account_id, outcome.replacement, seen_at=now)
    if outcome.status == opt.EXECUTED:
        rec.executed_at = now
        if outcome.replacement is not None:
            rec.realised_hourly_usd, rec.realised_price_basis = realised_price(session, outcome.replacement, now)
    if outcome.status == opt.EXECUTED and outcome.retired:  # a group plan retires no instance itself
        inventory.mark_retired(session, rec.account_id, rec.instance_id, outcome.retired, at=now)
        opt.supersede_for_replaced(session, rec, now)


def realised_price(session: Session, launched: dict[str, Any], at: datetime) -> tuple[float | None, str]:
    """(USD per hour, basis) of a launched instance from stored list prices: the spot price in force for
    its type and AZ ID at `at`, or its on-demand price. None, saying which input is missing, never zero."""
    itype, az_id = launched["instance_type"], launched.get("availability_zone_id")
    if launched.get("lifecycle") == "spot":
        product = launched.get("platform") or "Linux/UNIX"
        price = session.scalars(
            select(SpotPrice)
            .where(
                SpotPrice.instance_type == itype,
                SpotPrice.availability_zone_id == az_id,
                SpotPrice.product_description == product,
                SpotPrice.ts <= at,
            )
            .order_by(SpotPrice.ts.desc())
            .limit(1)
        ).first()
        if price is None:
            return None, f"no stored spot price for {itype} {product} in {az_id} at or before {at.isoformat()}"
        return price.price, f"list spot price of {itype} {product} in {az_id} since {price.ts.isoformat()}"
    os_name = "Linux" if (launched.get("platform") or "Linux/UNIX").startswith("Linux") else launched["platform"]
    price = session.get(OnDemandPrice, (launched["region"], itype, os_name))
    if price is None:
        return None, f"no stored on-demand price for {itype} ({os_name}) in {launched['region']}"
    return (
        price.usd_per_hour,
        f"list on-demand price of {itype} in {launched['region']} ({price.source}, {price.as_of.date()})",
    )


def executed_for_ledger(session: Session) -> list[dict[str, Any]]:
    """Executed recommendations with the prices the ledger needs: the previous hourly cost (the list on-demand
    price for an on-demand source, the risk-adjusted spot cost for a spot one), the realised list price of the
    replacement, and when the inventory saw the replacement end (None: still there)."""
    r, i = SpotRecommendation, inventory.Instance
    rows = session.execute(
        select(r, i.terminated_at)
        .outerjoin(i, (i.account_id == r.account_id) & (i.instance_id == r.replacement_instance_id))
        .where(r.status == opt.EXECUTED)
        .order_by(r.id)
    ).all()
    return [
        {
            "id": rec.id,
            "account_id": rec.account_id,
            "executed_at": rec.executed_at,
            "ended_at": ended,
            "previous_hourly_usd": rec.on_demand_hourly_cost
            if rec.current_lifecycle == "on-demand"
            else rec.current_hourly_cost,
            "realised_hourly_usd": rec.realised_hourly_usd,
        }
        for rec, ended in rows
    ]
