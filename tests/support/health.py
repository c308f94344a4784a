"""Reading back what health rounds wrote (the product itself only writes them)."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from spot_pipelines.db.health import ComponentHealth


def latest_health(session: Session) -> list[ComponentHealth]:
    """The newest row of each component."""
    newest = (
        select(ComponentHealth.component, func.max(ComponentHealth.id).label("id"))
        .group_by(ComponentHealth.component)
        .subquery()
    )
    return list(
        session.scalars(
            select(ComponentHealth).join(newest, ComponentHealth.id == newest.c.id).order_by(ComponentHealth.component)
        )
    )
