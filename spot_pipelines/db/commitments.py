"""Commitments as read from AWS, one snapshot per refresh and account (tables of migration 0007): history is
kept; the newest snapshot of each account is what the allocation uses. Accounts with the same billing family
(account_billing_families, set with `spot-pipelines accounts billing-family`) pool their commitments, as AWS
shares them within one payer; every other account is a pool of its own."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, Float, ForeignKey, Integer, String, func, insert, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from spot_pipelines.core import commitments as cm
from spot_pipelines.db.accounts import Account
from spot_pipelines.db.base import Base, JSONType, UTCDateTime
from spot_pipelines.db.frames import read_frame


class AccountBillingFamily(Base):
    """An account setting: the billing family (one payer's consolidated bill) whose commitments it shares."""

    __tablename__ = "account_billing_families"

    account_id: Mapped[int] = mapped_column(Integer, ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True)
    billing_family: Mapped[str] = mapped_column(String(64), nullable=False)


class CommitmentRefresh(Base):
    __tablename__ = "commitment_refreshes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    account_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False, index=True
    )
    fetched_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, index=True)
    utilization: Mapped[dict[str, float]] = mapped_column(JSONType, nullable=False, default=dict)
    gaps: Mapped[list[str]] = mapped_column(JSONType, nullable=False, default=list)
    skipped: Mapped[list[str]] = mapped_column(JSONType, nullable=False, default=list)


def _refresh_fk() -> Mapped[int]:
    return mapped_column(Integer, ForeignKey("commitment_refreshes.id", ondelete="CASCADE"), primary_key=True)


class ReservedInstance(Base):
    __tablename__ = "reserved_instances"

    refresh_id: Mapped[int] = _refresh_fk()
    commitment_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    region: Mapped[str] = mapped_column(String(32), nullable=False)
    scope: Mapped[str] = mapped_column(String(32), nullable=False)
    availability_zone_id: Mapped[str | None] = mapped_column(String(32))
    instance_type: Mapped[str] = mapped_column(String(64), nullable=False)
    product_description: Mapped[str] = mapped_column(String(64), nullable=False)
    tenancy: Mapped[str] = mapped_column(String(16), nullable=False)
    instance_count: Mapped[int] = mapped_column(Integer, nullable=False)
    offering_class: Mapped[str] = mapped_column(String(16), nullable=False)
    start: Mapped[datetime | None] = mapped_column(UTCDateTime)
    end: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    usd_per_hour: Mapped[float | None] = mapped_column(Float)  # None: not priced in USD


class SavingsPlan(Base):
    __tablename__ = "savings_plans"

    refresh_id: Mapped[int] = _refresh_fk()
    commitment_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    plan_type: Mapped[str] = mapped_column(String(16), nullable=False)
    region: Mapped[str | None] = mapped_column(String(32))
    instance_family: Mapped[str | None] = mapped_column(String(32))
    commitment_usd_per_hour: Mapped[float] = mapped_column(Float, nullable=False)
    term_years: Mapped[float] = mapped_column(Float, nullable=False)
    start: Mapped[datetime | None] = mapped_column(UTCDateTime)
    end: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)


class SavingsPlanRate(Base):
    __tablename__ = "savings_plan_rates"

    refresh_id: Mapped[int] = _refresh_fk()
    commitment_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    region: Mapped[str] = mapped_column(String(32), primary_key=True)
    instance_type: Mapped[str] = mapped_column(String(64), primary_key=True)
    product_description: Mapped[str] = mapped_column(String(64), primary_key=True)
    usd_per_hour: Mapped[float] = mapped_column(Float, nullable=False)


def write_refresh(session: Session, account_id: int, fetched: cm.Fetched, *, fetched_at: datetime) -> int:
    """One snapshot: the refresh row and its commitments, in the caller's transaction. Returns its id."""
    refresh = CommitmentRefresh(
        account_id=account_id,
        fetched_at=fetched_at,
        utilization=fetched.utilization,
        gaps=fetched.gaps,
        skipped=fetched.skipped,
    )
    session.add(refresh)
    session.flush()
    for model, rows, drop in (
        (ReservedInstance, fetched.reserved, {"account_id"}),
        (SavingsPlan, fetched.savings_plans, {"account_id"}),
        (SavingsPlanRate, fetched.rates, set()),
    ):
        rows = [{**{k: v for k, v in r.items() if k not in drop}, "refresh_id": refresh.id} for r in rows]
        for start in range(0, len(rows), 2000):
            session.execute(insert(model), rows[start : start + 2000])
    return refresh.id


def pool_of(billing_family: str | None, account_id: int) -> str:
    return f"family:{billing_family}" if billing_family else f"account:{account_id}"


def account_pools(conn: Connection) -> dict[int, str]:
    """account id → the pool its usage draws commitments from."""
    stmt = select(Account.id, AccountBillingFamily.billing_family).outerjoin(
        AccountBillingFamily, AccountBillingFamily.account_id == Account.id
    )
    return {i: pool_of(family, i) for i, family in conn.execute(stmt)}


def set_billing_family(session: Session, account_id: int, family: str | None) -> None:
    """Join (or with None, leave) a billing family; the next recommendations pool commitments accordingly."""
    row = session.get(AccountBillingFamily, account_id)
    if family is None:
        if row is not None:
            session.delete(row)
    elif row is None:
        session.add(AccountBillingFamily(account_id=account_id, billing_family=family))
    else:
        row.billing_family = family


def read_book(conn: Connection) -> cm.Book:
    """The newest snapshot of every account, each commitment tagged with its owner's pool."""
    latest = (
        select(CommitmentRefresh.account_id, func.max(CommitmentRefresh.id).label("refresh_id"))
        .group_by(CommitmentRefresh.account_id)
        .subquery()
    )
    pools = account_pools(conn)
    refreshes = read_frame(
        conn,
        select(
            CommitmentRefresh.id, CommitmentRefresh.account_id, CommitmentRefresh.utilization, CommitmentRefresh.gaps
        ).join(latest, CommitmentRefresh.id == latest.c.refresh_id),
    )
    owner = dict(zip(refreshes["id"], refreshes["account_id"]))

    def tagged(model, columns):
        wanted = [getattr(model, c) for c in columns if c != "account_id"]
        frame = read_frame(conn, select(*wanted, model.refresh_id).where(model.refresh_id.in_(list(owner))))
        frame["account_id"] = frame["refresh_id"].map(owner)
        frame["pool"] = frame["account_id"].map(pools)
        return frame.drop(columns=["refresh_id"])

    utilization: dict[str, dict[str, float]] = {}
    gaps: dict[str, list[str]] = {}
    for r in refreshes.itertuples(index=False):
        pool = pools.get(r.account_id, pool_of(None, r.account_id))
        for kind, value in (r.utilization or {}).items():
            # A pool's utilization: its least-used account's, the one that shows commitments idle.
            utilization.setdefault(pool, {})[kind] = min(value, utilization.get(pool, {}).get(kind, value))
        gaps.setdefault(pool, []).extend(r.gaps or [])
    reserved = tagged(ReservedInstance, cm.RI_COLUMNS)
    plans = tagged(SavingsPlan, cm.SP_COLUMNS)
    rates = read_frame(
        conn,
        select(*[getattr(SavingsPlanRate, c) for c in cm.RATE_COLUMNS]).where(
            SavingsPlanRate.refresh_id.in_(list(owner))
        ),
    )
    return cm.Book(reserved[[*cm.RI_COLUMNS, "pool"]], plans[[*cm.SP_COLUMNS, "pool"]], rates, utilization, gaps)
