"""Component health: the tables of migration 0003 (rounds, per-component state), the probes that read the
app database for the checks, and one round run and written."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import BigInteger, Engine, Float, Index, Integer, String, column, func, inspect, select, table, text
from sqlalchemy.orm import Mapped, Session, mapped_column

from spot_pipelines.core import health
from spot_pipelines.core.clock import utcnow
from spot_pipelines.core.health import (
    CRITICAL,
    DEGRADED,
    ML_MODEL,
    NOT_CONFIGURED,
    CheckOutcome,
    HealthThresholds,
    age_outcome,
    by_value,
    error_details,
    k8s_watcher_outcome,
    transitions,
    worst,
)
from spot_pipelines.core.ml import TIE_NOTE
from spot_pipelines.db import kubernetes, market_data, ml
from spot_pipelines.db.base import Base, JSONType, UTCDateTime
from spot_pipelines.db.engine import ensure_schema, transaction
from spot_pipelines.db.system_log import write_system_log
from spot_pipelines.db.upsert import insert_ignoring_conflicts

_BIGID = BigInteger().with_variant(Integer, "sqlite")


class ComponentHealth(Base):
    """One row per check per round."""

    __tablename__ = "component_health"

    id: Mapped[int] = mapped_column(_BIGID, primary_key=True, autoincrement=True)
    round_id: Mapped[str] = mapped_column(String(36), nullable=False)
    checked_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    component: Mapped[str] = mapped_column(String(64), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    latency_ms: Mapped[float | None] = mapped_column(Float)
    details: Mapped[dict[str, Any] | None] = mapped_column(JSONType)

    __table_args__ = (
        Index("ix_component_health_component_checked", "component", "checked_at"),
        Index("ix_component_health_checked_at", "checked_at"),
    )


class ComponentHealthState(Base):
    """The last known status of each component, to detect transitions."""

    __tablename__ = "component_health_state"

    component: Mapped[str] = mapped_column(String(64), primary_key=True)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    since: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    checked_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)


def write_health_round(
    session: Session,
    results: Sequence[Any],
    *,
    round_id: str,
    checked_at: datetime,
    run_id: str | None = None,
    context: dict[str, Any] | None = None,
) -> list[Any]:
    """Store one round (a row per check), update the per-component state, and write a
    `system_logs` row for every status transition with the diagnostic context of that moment:
    the check's details, every other component's status, and `context` (host, trigger…)."""
    session.add_all(
        [
            ComponentHealth(
                round_id=round_id,
                checked_at=checked_at,
                component=r.component,
                status=r.status,
                latency_ms=r.latency_ms,
                details=_json(r.details),
            )
            for r in results
        ]
    )
    states = {s.component: s for s in session.scalars(select(ComponentHealthState).with_for_update())}
    changes = transitions({c: s.status for c, s in states.items()}, results)
    changed = {t.component for t in changes}
    # First sight of a component: insert-if-absent, so two concurrent first rounds cannot collide.
    insert_ignoring_conflicts(
        session,
        ComponentHealthState.__table__,
        [
            {"component": r.component, "status": r.status, "since": checked_at, "checked_at": checked_at}
            for r in results
            if r.component not in states
        ],
        ["component"],
    )
    for r in results:
        state = states.get(r.component)
        if state is not None:
            if r.component in changed:
                state.status, state.since = r.status, checked_at
            state.checked_at = checked_at
    snapshot = {r.component: r.status for r in results}
    by_component = {r.component: r for r in results}
    for change in changes:
        previous = states.get(change.component)
        write_system_log(
            session,
            "component_health",
            change.level,
            change.message,
            run_id=run_id,
            details={
                "component": change.component,
                "from": change.previous,
                "to": change.current,
                "previous_since": previous.since.isoformat() if previous else None,
                "latency_ms": by_component[change.component].latency_ms,
                "check": change.details,
                "round_id": round_id,
                "all_components": snapshot,
                **(context or {}),
            },
        )
    return changes


def critical_components(session: Session) -> list[dict[str, Any]]:
    """Every component whose last known status is critical: since when, and its latest check's details."""
    state, row = ComponentHealthState, ComponentHealth
    out = []
    for s in session.scalars(select(state).where(state.status == CRITICAL).order_by(state.component)):
        latest = session.scalars(
            select(row).where(row.component == s.component).order_by(row.checked_at.desc(), row.id.desc()).limit(1)
        ).first()
        out.append({"component": s.component, "since": s.since, "details": (latest.details if latest else None) or {}})
    return out


def _json(details: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(details, default=str))


# ---------------------------------------------------------------------------------------------
# The probes: read the app database, leave the verdict to core.health


def check_database(engine: Engine, t: HealthThresholds, clock: Callable[[], float] = time.perf_counter) -> CheckOutcome:
    started = clock()
    with engine.connect() as conn:
        conn.execute(text("SELECT 1")).scalar()
    latency = (clock() - started) * 1000
    status = by_value(latency, t.db_latency_degraded_ms, t.db_latency_critical_ms)
    return CheckOutcome(
        status,
        {"latency_ms": round(latency, 2), "dialect": engine.dialect.name, "degraded_at_ms": t.db_latency_degraded_ms},
    )


def _has_table(engine: Engine, name: str) -> bool:
    return inspect(engine).has_table(name)


def _max_time(engine: Engine, table_name: str, column_name: str) -> datetime | None:
    with engine.connect() as conn:
        return conn.execute(
            select(func.max(column(column_name, UTCDateTime)).label("m")).select_from(table(table_name))
        ).scalar()


def check_table_freshness(
    engine: Engine,
    table_name: str,
    column_name: str,
    degraded_s: float,
    critical_s: float,
    now: Callable[[], datetime] = utcnow,
    what: str = "rows",
) -> CheckOutcome:
    """Age of the newest row; a table that does not exist yet means its pipeline is not deployed."""
    if not _has_table(engine, table_name):
        return CheckOutcome(NOT_CONFIGURED, {"reason": f"table {table_name} does not exist (not deployed yet)"})
    return age_outcome(
        _max_time(engine, table_name, column_name), now(), degraded_s, critical_s, what, table=table_name
    )


def check_price_freshness(
    engine: Engine, t: HealthThresholds, now: Callable[[], datetime] = utcnow, stale_regions_shown: int = 20
) -> CheckOutcome:
    """Age of the newest spot price fetch (`spot_price_fetches.prices_as_of`): when prices were last
    fetched, not when a price last changed (a market whose price held for a day is fresh when fetched a
    minute ago). Regions whose own newest fetch is past the degraded bound are listed."""
    if not _has_table(engine, "spot_price_history"):
        return CheckOutcome(NOT_CONFIGURED, {"reason": "table spot_price_history does not exist (not deployed yet)"})
    if not _has_table(engine, market_data.SpotPriceFetch.__tablename__):
        return CheckOutcome(NOT_CONFIGURED, {"reason": "table spot_price_fetches does not exist (migration 0010)"})
    with engine.connect() as conn:
        summary = market_data.price_fetch_summary(conn)
    moment = now()
    stale = sorted(
        region
        for region, as_of in summary.as_of_by_region.items()
        if (moment - as_of).total_seconds() >= t.price_age_degraded_s
    )
    extra = {"source": "spot_price_fetches.prices_as_of", "regions": len(summary.as_of_by_region)}
    if summary.newest_as_of is not None:
        extra |= {"last_fetch_mode": summary.newest_mode, "stale_regions": stale[:stale_regions_shown]}
    return age_outcome(
        summary.newest_as_of,
        moment,
        t.price_age_degraded_s,
        t.price_age_critical_s,
        "spot price fetch",
        **extra,
    )


def check_k8s_watcher(
    engine: Engine, configured: bool, t: HealthThresholds, now: Callable[[], datetime] = utcnow
) -> CheckOutcome:
    with engine.connect() as conn:
        rows = kubernetes.watcher_heartbeats(conn)
    return k8s_watcher_outcome(rows, configured, t, now())


def check_optimizer(
    engine: Engine,
    t: HealthThresholds,
    latest_materialization: Callable[[], datetime | None] | None,
    now: Callable[[], datetime] = utcnow,
) -> CheckOutcome:
    """The newest successful `spot_recommendations` materialization (Dagster instance), else the
    table's newest `generated_at`."""
    latest, source = None, None
    if latest_materialization is not None:
        latest, source = latest_materialization(), "dagster materialization of spot_recommendations"
    has_table = _has_table(engine, "spot_recommendations")
    if latest is None and has_table:
        latest, source = _max_time(engine, "spot_recommendations", "generated_at"), "spot_recommendations.generated_at"
    if latest is None and not has_table and latest_materialization is None:
        return CheckOutcome(NOT_CONFIGURED, {"reason": "the optimizer (spot_recommendations) is not deployed"})
    if latest is None:
        return CheckOutcome(DEGRADED, {"reason": "spot_recommendations has never been materialized successfully"})
    return age_outcome(
        latest, now(), t.optimizer_age_degraded_s, t.optimizer_age_critical_s, "successful optimizer run", source=source
    )


def _read_local(uri: str) -> bytes:
    return Path(uri.removeprefix("file://")).read_bytes()


def check_ml_model(
    engine: Engine,
    t: HealthThresholds,
    read_artifact: Callable[[str], bytes] | None = None,
    now: Callable[[], datetime] = utcnow,
    load: Callable[[bytes, str, str], Any] | None = None,
    loaded_sha256: str | None = None,
) -> CheckOutcome:
    """The newest `ready` model in `model_registry`: its artifact readable, matching its sha256,
    and (with `load(data, where, sha256)`, e.g. the ML module's `deserialize`) loadable.

    Loading is proven once per artifact: `loaded_sha256` is the artifact an earlier round loaded
    (its `loaded_sha256` detail); bytes with that same sha256 need no second unpickling."""
    if not _has_table(engine, "model_registry"):
        return CheckOutcome(NOT_CONFIGURED, {"reason": "table model_registry does not exist (ML not deployed yet)"})
    with engine.connect() as conn:
        rows = ml.newest_models(conn)
    if not rows:
        return CheckOutcome(DEGRADED, {"reason": "no model has been trained yet"})
    newest = rows[0]
    ready = next((r for r in rows if r.status == "ready"), None)
    if ready is None and newest.status == "blocked" and TIE_NOTE in (newest.status_reason or ""):
        # Refused for want of a real improvement: the advisor-band prior it would replace serves, as good.
        return CheckOutcome(
            DEGRADED,
            {
                "reason": f"no model beats the advisor-band prior yet: newest v{newest.version} only ties it; "
                "predictions use the prior",
                "newest_version": newest.version,
            },
        )
    if ready is None:
        return CheckOutcome(
            CRITICAL,
            {
                "reason": f"no loadable model: newest v{newest.version} is {newest.status}"
                + (f" ({newest.status_reason})" if newest.status_reason else ""),
                "newest_version": newest.version,
            },
        )
    try:
        data = (read_artifact or _read_local)(ready.artifact_uri)
    except Exception as exc:
        return CheckOutcome(
            CRITICAL,
            {
                "reason": f"model v{ready.version} artifact cannot be read",
                "version": ready.version,
                **error_details(exc),
            },
        )
    if hashlib.sha256(data).hexdigest() != ready.artifact_sha256:
        return CheckOutcome(
            CRITICAL, {"reason": f"model v{ready.version} artifact does not match its sha256", "version": ready.version}
        )
    loaded: dict[str, Any] = {}
    if loaded_sha256 == ready.artifact_sha256:
        loaded = {"loaded_sha256": loaded_sha256, "load_proven": "by an earlier round (same sha256)"}
    elif load is not None:
        try:
            load(data, f"v{ready.version}", ready.artifact_sha256)
        except Exception as exc:
            return CheckOutcome(
                CRITICAL,
                {"reason": f"model v{ready.version} cannot be loaded", "version": ready.version, **error_details(exc)},
            )
        loaded = {"loaded_sha256": ready.artifact_sha256, "load_proven": "this round"}
    outcome = age_outcome(
        ready.trained_at,
        now(),
        t.model_age_degraded_s,
        t.model_age_critical_s,
        "model",
        version=ready.version,
        artifact_bytes=len(data),
        **loaded,
    )
    if newest.version != ready.version and newest.status == "blocked":
        details = {**outcome.details, "reason": f"newest v{newest.version} is blocked; serving v{ready.version}"}
        return CheckOutcome(worst([outcome.status, DEGRADED]), details)
    return outcome


def ml_load_state(engine: Engine) -> tuple[str | None, str | None]:
    """(sha256 of the newest ready model, sha256 an earlier round proved loadable): lets the caller
    import the (heavy) loader only when there is something new to load."""
    try:
        with engine.connect() as conn:
            ready = ml.newest_ready_sha256(conn)
            last = conn.execute(
                select(column("details", JSONType))
                .select_from(table("component_health"))
                .where(column("component") == ML_MODEL)
                .order_by(column("id").desc())
                .limit(1)
            ).scalar()
    except Exception:  # no registry (yet): nothing to load
        return None, None
    return ready, (last or {}).get("loaded_sha256") if isinstance(last, dict) else None


# ---------------------------------------------------------------------------------------------
# One round


@dataclass(frozen=True)
class HealthRound:
    round_id: str
    checked_at: datetime
    results: list[health.CheckResult]
    transitions: list[health.Transition]
    seconds: float

    @property
    def overall(self) -> str:
        return health.worst([r.status for r in self.results])


def model_loader():
    """The ML module's artifact vetting (`core.ml.deserialize`), imported here, outside the timed
    round (a cold scikit-learn import can take longer than a check's timeout); None without it."""
    try:
        from spot_pipelines.core.ml import deserialize
    except ImportError:
        return None
    return lambda data, where, sha256: deserialize(data, where=where, expected_sha256=sha256)


def build_checks(
    db_url: str,
    *,
    thresholds: HealthThresholds,
    timeout_s: float,
    redis,
    k8s_configured: bool,
    latest_materialization: Callable[[], datetime | None] | None = None,
    read_artifact=None,
    load_model="default",
) -> dict[str, health.Check]:
    """The seven checks; `redis` is the RedisResource (its `check` probes the server),
    `latest_materialization` when spot_recommendations last materialized (the Dagster instance)."""
    engine = ensure_schema(db_url)
    ready_sha, loaded_sha = ml_load_state(engine)
    if load_model == "default":
        # Import the ML stack (seconds, cold) only when a ready model has not been proven loadable yet.
        load_model = model_loader() if ready_sha and ready_sha != loaded_sha else None
    t = thresholds
    return {
        health.APP_DATABASE: lambda: check_database(engine, t),
        health.REDIS: lambda: redis.check(t, timeout_s=timeout_s),
        health.KUBERNETES_WATCHER: lambda: check_k8s_watcher(engine, k8s_configured, t),
        health.OPTIMIZER: lambda: check_optimizer(engine, t, latest_materialization),
        health.PRICE_DATA: lambda: check_price_freshness(engine, t),
        health.RISK_SCORES: lambda: check_table_freshness(
            engine,
            "interruption_risk_scores",
            "scored_at",
            t.risk_age_degraded_s,
            t.risk_age_critical_s,
            what="risk scores",
        ),
        health.ML_MODEL: lambda: check_ml_model(engine, t, read_artifact, load=load_model, loaded_sha256=loaded_sha),
    }


def run_health_round(
    db_url: str,
    checks: dict[str, health.Check],
    *,
    timeout_s: float,
    run_id: str | None = None,
    trigger: str = "schedule",
) -> HealthRound:
    """Run the checks concurrently and write the round (rows, state, transition logs)."""
    started = time.monotonic()
    checked_at = utcnow()
    results = health.run_checks(checks, timeout_s=timeout_s)
    round_id = str(uuid.uuid4())
    context = {"trigger": trigger, "host": socket.gethostname(), "pid": os.getpid()}
    with transaction(db_url) as session:
        changes = write_health_round(
            session, results, round_id=round_id, checked_at=checked_at, run_id=run_id, context=context
        )
    return HealthRound(round_id, checked_at, results, changes, time.monotonic() - started)
