"""Component health rounds and per-component state (tables of migration 0003)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Float, Index, Integer, String, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from spot_pipelines.db.base import Base, JSONType, UTCDateTime
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


def write_health_round(session: Session, results: Sequence[Any], *, round_id: str, checked_at: datetime,
                       run_id: str | None = None, context: dict[str, Any] | None = None) -> list[Any]:
    """Store one round (a row per check), update the per-component state, and write a
    `system_logs` row for every status transition with the diagnostic context of that moment:
    the check's details, every other component's status, and `context` (host, trigger…)."""
    from spot_pipelines.core.health import transitions

    session.add_all([ComponentHealth(round_id=round_id, checked_at=checked_at, component=r.component,
                                     status=r.status, latency_ms=r.latency_ms, details=_json(r.details))
                     for r in results])
    states = {s.component: s for s in session.scalars(select(ComponentHealthState).with_for_update())}
    changes = transitions({c: s.status for c, s in states.items()}, results)
    changed = {t.component for t in changes}
    # First sight of a component: insert-if-absent, so two concurrent first rounds cannot collide.
    insert_ignoring_conflicts(session, ComponentHealthState.__table__, [
        {"component": r.component, "status": r.status, "since": checked_at, "checked_at": checked_at}
        for r in results if r.component not in states], ["component"])
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
        write_system_log(session, "component_health", change.level, change.message, run_id=run_id, details={
            "component": change.component, "from": change.previous, "to": change.current,
            "previous_since": previous.since.isoformat() if previous else None,
            "latency_ms": by_component[change.component].latency_ms,
            "check": change.details, "round_id": round_id, "all_components": snapshot, **(context or {}),
        })
    return changes


def _json(details: dict[str, Any]) -> dict[str, Any]:
    import json

    return json.loads(json.dumps(details, default=str))


def latest_health(session: Session) -> list[ComponentHealth]:
    """The newest row of each component."""
    from sqlalchemy import func

    newest = (select(ComponentHealth.component, func.max(ComponentHealth.id).label("id"))
              .group_by(ComponentHealth.component).subquery())
    return list(session.scalars(select(ComponentHealth).join(newest, ComponentHealth.id == newest.c.id)
                                .order_by(ComponentHealth.component)))
