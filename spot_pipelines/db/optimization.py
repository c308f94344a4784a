"""Optimization domain tables: risk scores, the model registry, predictions, recommendations, audit.

Created by migration 0004. Queries used by the assets, the execution job and the CLI live here too.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    case,
    delete,
    func,
    insert,
    select,
    update,
)
import tempfile

import pandas as pd
from sqlalchemy import Connection
from sqlalchemy.orm import Mapped, Session, mapped_column

from spot_pipelines.core.clock import utcnow
from spot_pipelines.core.errors import ValidationError
from spot_pipelines.db.base import Base, JSONType, UTCDateTime

MARKET_KEY = ("region", "availability_zone_id", "instance_type", "product_description")

# spot_recommendations.status
PROPOSED, APPROVED, EXECUTING, EXECUTED, FAILED, REJECTED, SUPERSEDED = (
    "proposed", "approved", "executing", "executed", "failed", "rejected", "superseded")
REC_STATUSES = (PROPOSED, APPROVED, EXECUTING, EXECUTED, FAILED, REJECTED, SUPERSEDED)
ACTIONS = ("move_to_spot", "diversify", "stay_on_demand", "return_to_on_demand")
# model_registry.status
CANDIDATE, READY, BLOCKED = "candidate", "ready", "blocked"

_BigId = BigInteger().with_variant(Integer, "sqlite")


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
    score: Mapped[float] = mapped_column(Float, nullable=False)
    risk_band: Mapped[str] = mapped_column(String(16), nullable=False)
    scored_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, index=True)


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


class SpotRecommendation(Base):
    __tablename__ = "spot_recommendations"

    id: Mapped[int] = mapped_column(_BigId, primary_key=True, autoincrement=True)
    generation_id: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    account_id: Mapped[int] = mapped_column(Integer, ForeignKey("accounts.id", ondelete="CASCADE"),
                                            nullable=False)
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
    monthly_savings_usd: Mapped[float] = mapped_column(Float, nullable=False)
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

    __table_args__ = (Index("ix_spot_recommendations_account_instance", "account_id", "instance_id"),)


class RecommendationAction(Base):
    """Audit trail: one row per EC2 call made (or, in dry-run, that would be made)."""

    __tablename__ = "recommendation_actions"

    id: Mapped[int] = mapped_column(_BigId, primary_key=True, autoincrement=True)
    recommendation_id: Mapped[int] = mapped_column(
        _BigId, ForeignKey("spot_recommendations.id", ondelete="CASCADE"), nullable=False, index=True)
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


# --------------------------------------------------------------------------- writes

def replace_rows(session: Session, model: type[Base], rows: Sequence[dict[str, Any]],
                 batch: int = 5000) -> None:
    """Replace a whole snapshot table (risk scores, predictions) inside the caller's transaction."""
    session.execute(delete(model))
    for start in range(0, len(rows), batch):
        session.execute(insert(model), list(rows[start:start + batch]))


def next_model_version(session: Session) -> int:
    return (session.scalar(select(func.max(ModelRegistryEntry.version))) or 0) + 1


def ready_models(session: Session) -> list[ModelRegistryEntry]:
    """Usable model versions, newest first."""
    return list(session.scalars(select(ModelRegistryEntry).where(ModelRegistryEntry.status == READY)
                                .order_by(ModelRegistryEntry.version.desc())))


def latest_model(session: Session) -> ModelRegistryEntry | None:
    return session.scalars(select(ModelRegistryEntry).order_by(ModelRegistryEntry.version.desc())
                           .limit(1)).one_or_none()


def set_model_status(session: Session, version: int, status: str, reason: str | None) -> None:
    session.execute(update(ModelRegistryEntry).where(ModelRegistryEntry.version == version)
                    .values(status=status, status_reason=reason, checked_at=utcnow()))


def write_recommendations(session: Session, rows: Sequence[dict[str, Any]], *, generated_at: datetime) -> int:
    """Supersede the previous generation's still-proposed rows for these instances, insert the new ones.

    Approved, executing, executed, failed and rejected rows are decisions or history: never touched.
    """
    proposed = session.execute(select(SpotRecommendation.id, SpotRecommendation.account_id,
                                      SpotRecommendation.instance_id)
                               .where(SpotRecommendation.status == PROPOSED)).all()
    # Every proposed row is superseded by a new generation (instances that vanished included).
    stale = [r.id for r in proposed]
    for start in range(0, len(stale), 1000):
        session.execute(update(SpotRecommendation).where(SpotRecommendation.id.in_(stale[start:start + 1000]))
                        .values(status=SUPERSEDED, status_changed_at=generated_at))
    busy = set(session.execute(select(SpotRecommendation.account_id, SpotRecommendation.instance_id)
                               .where(SpotRecommendation.status.in_((APPROVED, EXECUTING)))).all())
    fresh = [r for r in rows if (r["account_id"], r["instance_id"]) not in busy]
    for start in range(0, len(fresh), 2000):
        session.execute(insert(SpotRecommendation), list(fresh[start:start + 2000]))
    return len(fresh)


def supersede_for_replaced(session: Session, executed: SpotRecommendation, at: datetime) -> int:
    """The instance `executed` replaced is gone: its other open rows (proposed or approved) are moot."""
    result = session.execute(
        update(SpotRecommendation)
        .where(SpotRecommendation.account_id == executed.account_id,
               SpotRecommendation.instance_id == executed.instance_id,
               SpotRecommendation.id != executed.id,
               SpotRecommendation.status.in_((PROPOSED, APPROVED)))
        .values(status=SUPERSEDED, status_changed_at=at,
                error=f"instance replaced by {executed.replacement_instance_id} (recommendation {executed.id})")
        .execution_options(synchronize_session=False))
    return result.rowcount or 0


# --------------------------------------------------------------------------- operator decisions

def _load_for_decision(session: Session, ids: Iterable[int]) -> list[SpotRecommendation]:
    ids = sorted(set(int(i) for i in ids))
    if not ids:
        raise ValidationError("ids", "give at least one recommendation id")
    found = {r.id: r for r in session.scalars(select(SpotRecommendation).where(SpotRecommendation.id.in_(ids))
                                              .with_for_update())}
    missing = [i for i in ids if i not in found]
    if missing:
        raise ValidationError("ids", f"unknown recommendation id(s): {', '.join(map(str, missing))}; "
                                     "nothing was changed (see `spot-pipelines recommendations list`)")
    return [found[i] for i in ids]


def approve(session: Session, ids: Iterable[int], *, by: str) -> list[SpotRecommendation]:
    """Mark proposed rows approved, all or nothing. Unknown or non-proposed ids raise ValidationError."""
    recs = _load_for_decision(session, ids)
    wrong = [f"{r.id} is {r.status}" for r in recs if r.status != PROPOSED]
    if wrong:
        raise ValidationError("ids", "only proposed recommendations can be approved: " + "; ".join(wrong)
                              + "; nothing was changed")
    not_actionable = [f"{r.id} is {r.action}" for r in recs if r.action == "stay_on_demand"]
    if not_actionable:
        raise ValidationError("ids", "nothing to execute for: " + "; ".join(not_actionable)
                              + "; nothing was changed")
    now = utcnow()
    for r in recs:
        r.status, r.approved_at, r.approved_by, r.status_changed_at = APPROVED, now, by, now
    return recs


def reject(session: Session, ids: Iterable[int], *, by: str) -> list[SpotRecommendation]:
    recs = _load_for_decision(session, ids)
    wrong = [f"{r.id} is {r.status}" for r in recs if r.status not in (PROPOSED, APPROVED)]
    if wrong:
        raise ValidationError("ids", "only proposed or approved recommendations can be rejected: "
                              + "; ".join(wrong) + "; nothing was changed")
    now = utcnow()
    for r in recs:
        r.status, r.approved_by, r.status_changed_at = REJECTED, by, now
    return recs


def list_recommendations(session: Session, statuses: Sequence[str] | None = None,
                         limit: int = 100) -> list[SpotRecommendation]:
    stmt = select(SpotRecommendation).order_by(SpotRecommendation.monthly_savings_usd.desc(),
                                               SpotRecommendation.id)
    if statuses:
        stmt = stmt.where(SpotRecommendation.status.in_(list(statuses)))
    return list(session.scalars(stmt.limit(limit)))


def approved_for_execution(session: Session, ids: Sequence[int] | None = None) -> list[SpotRecommendation]:
    stmt = select(SpotRecommendation).where(SpotRecommendation.status == APPROVED).order_by(SpotRecommendation.id)
    if ids:
        stmt = stmt.where(SpotRecommendation.id.in_(list(ids)))
    return list(session.scalars(stmt))


# --------------------------------------------------------------------------- readers (DataFrames for core/)

def _frame(conn: Connection, stmt) -> pd.DataFrame:
    result = conn.execute(stmt)
    return pd.DataFrame(result.fetchall(), columns=list(result.keys()))


def read_prices(conn: Connection, start: date, end: date) -> pd.DataFrame:
    """Price rows of days [start, end), ordered by market then time (the scorer then skips its sort)."""
    from spot_pipelines.db.market import SpotPrice

    p = SpotPrice
    stmt = (select(p.ts, p.region, p.availability_zone, p.availability_zone_id, p.instance_type,
                   p.product_description, p.price, p.is_day_open)
            .where(p.day >= start, p.day < end)
            .order_by(p.region, p.availability_zone_id, p.instance_type, p.product_description, p.ts))
    if conn.dialect.name == "postgresql":
        return _copy_prices(conn, stmt)
    return _frame(conn, stmt)


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
        frame = pd.read_csv(spool, dtype={**{c: "category" for c in PRICE_KEY_COLUMNS}, "price": "float64"},
                            keep_default_na=False, na_values={"price": [""]})
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True, format="ISO8601")
    frame["is_day_open"] = frame["is_day_open"].map({"t": True, "f": False}).astype(bool)
    return frame


def read_on_demand(conn: Connection) -> pd.DataFrame:
    from spot_pipelines.db.market import OnDemandPrice as o

    return _frame(conn, select(o.region, o.instance_type, o.operating_system, o.usd_per_hour))


def read_advisor(conn: Connection, through: date, lookback_days: int = 31) -> pd.DataFrame:
    """Advisor rows of the last `lookback_days` up to `through` (the scorer keeps the latest per key)."""
    from spot_pipelines.db.market import SpotAdvisorEntry as a

    return _frame(conn, select(a.day, a.region, a.operating_system, a.instance_type, a.interruption_band,
                               a.savings_pct).where(a.day <= through,
                                                    a.day > through - timedelta(days=lookback_days)))


def read_events(conn: Connection, start: datetime, end: datetime) -> pd.DataFrame:
    from spot_pipelines.db.operations import SpotInterruptionEvent as e

    return _frame(conn, select(e.event_type, e.event_time, e.region, e.availability_zone_id, e.instance_type)
                  .where(e.event_time >= start, e.event_time < end))


def read_catalog(conn: Connection) -> pd.DataFrame:
    from spot_pipelines.db.market import InstanceTypeSpec as t

    return _frame(conn, select(t.instance_type, t.family, t.vcpu, t.memory_gib, t.architecture))


def read_running_instances(conn: Connection) -> pd.DataFrame:
    from spot_pipelines.db.models import Instance as i

    return _frame(conn, select(i.account_id, i.instance_id, i.region, i.availability_zone_id, i.instance_type,
                               i.lifecycle, i.state, i.platform, i.architecture, i.tags)
                  .where(i.state == "running", i.terminated_at.is_(None)))


def read_risk_scores(conn: Connection) -> pd.DataFrame:
    return _frame(conn, select(InterruptionRiskScore))


def read_predictions(conn: Connection) -> pd.DataFrame:
    return _frame(conn, select(InterruptionPrediction))


def account_names(conn: Connection) -> dict[int, str]:
    from spot_pipelines.db.models import Account

    return dict(conn.execute(select(Account.id, Account.name)).all())


def savings_over_time(conn: Connection, days: int = 30) -> pd.DataFrame:
    """Per generation: recommendations, proposed monthly savings, and what was executed of them."""
    r = SpotRecommendation
    executed = func.sum(case((r.status == EXECUTED, r.monthly_savings_usd), else_=0.0))
    stmt = (select(r.generation_id, func.min(r.generated_at).label("generated_at"),
                   func.count().label("recommendations"),
                   func.sum(r.monthly_savings_usd).label("monthly_savings_usd"),
                   executed.label("executed_monthly_savings_usd"))
            .where(r.action != "stay_on_demand", r.generated_at >= utcnow() - timedelta(days=days))
            .group_by(r.generation_id).order_by(func.min(r.generated_at)))
    return _frame(conn, stmt)


def fleet_savings(session: Session) -> tuple[dict[int, dict[str, float]], list[SpotRecommendation]]:
    """Per account id, over the inventory's running instances: `instances`; `to_change` and `monthly` of the
    open (proposed, approved, executing) rows, one per instance; `executed` and `executed_monthly` of the
    executed rows whose replacement is still running. Also the open rows, best first.

    Each saving is counted once: a replaced instance is no longer running, so its savings live only in the
    executed row (counted through the new instance); the replacement's own row says what else it could save.
    """
    from spot_pipelines.db.models import Instance

    running = {tuple(r) for r in session.execute(
        select(Instance.account_id, Instance.instance_id)
        .where(Instance.state == "running", Instance.terminated_at.is_(None)))}
    stats: dict[int, dict[str, float]] = {}

    def of(account_id: int) -> dict[str, float]:
        return stats.setdefault(account_id, {"instances": 0, "to_change": 0, "monthly": 0.0,
                                             "executed": 0, "executed_monthly": 0.0})

    for account_id, _ in running:
        of(account_id)["instances"] += 1
    open_rows: dict[tuple[int, str], SpotRecommendation] = {}
    for rec in session.scalars(select(SpotRecommendation).where(
            SpotRecommendation.status.in_((PROPOSED, APPROVED, EXECUTING))).order_by(SpotRecommendation.id)):
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


def record_call(session: Session, recommendation_id: int, run_id: str | None, dry_run: bool, call) -> None:
    session.add(RecommendationAction(
        recommendation_id=recommendation_id, run_id=run_id, dry_run=dry_run, step=call.step,
        operation=call.operation, params=call.params, before_state=call.before_state,
        after_state=call.after_state, outcome=call.outcome, error=call.error, started_at=call.started_at,
        finished_at=call.finished_at))


def actions_for(session: Session, recommendation_id: int) -> list[RecommendationAction]:
    return list(session.scalars(select(RecommendationAction)
                                .where(RecommendationAction.recommendation_id == recommendation_id)
                                .order_by(RecommendationAction.id)))
