"""The system_logs table and its writer: every row redacted, echoed to the stdout log.

with session.begin():
    write_system_log(session, "health", "WARNING", "redis degraded", details={...}, run_id=run_id)
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Integer, String, Text
from sqlalchemy.orm import Mapped, Session, mapped_column

from spot_pipelines.core.clock import utcnow
from spot_pipelines.core.redaction import redact, redact_text
from spot_pipelines.db.base import Base, JSONType, UTCDateTime
from spot_pipelines.system_log import LEVELS, get_logger


class SystemLog(Base):
    __tablename__ = "system_logs"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow, index=True)
    component: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    level: Mapped[str] = mapped_column(String(16), nullable=False)
    message: Mapped[str] = mapped_column(Text, nullable=False)
    details: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    run_id: Mapped[str | None] = mapped_column(String(64))


def _level_name(level: str | int) -> str:
    name = logging.getLevelName(level) if isinstance(level, int) else str(level).upper()
    if name == "WARN":
        name = "WARNING"
    if name not in LEVELS:
        raise ValueError(f"level: {level!r} is not one of {', '.join(LEVELS)}")
    return name


def _json_safe(details: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if details is None:
        return None
    return json.loads(json.dumps(redact(dict(details)), default=str))


def system_log_row(
    component: str,
    level: str | int,
    message: str,
    *,
    details: Mapping[str, Any] | None = None,
    run_id: str | None = None,
    created_at: datetime | None = None,
) -> dict[str, Any]:
    """A redacted `system_logs` row as a dict (for bulk inserts)."""
    return {
        "created_at": created_at or utcnow(),
        "component": component[:64],
        "level": _level_name(level),
        "message": redact_text(message),
        "details": _json_safe(details),
        "run_id": run_id,
    }


def write_system_log(
    session: Session,
    component: str,
    level: str | int,
    message: str,
    *,
    details: Mapping[str, Any] | None = None,
    run_id: str | None = None,
    echo: bool = True,
) -> SystemLog:
    """Add a redacted `system_logs` row to the session (the caller commits) and echo it to stdout."""
    row = SystemLog(**system_log_row(component, level, message, details=details, run_id=run_id))
    session.add(row)
    if echo:
        get_logger(component).log(
            logging.getLevelName(row.level), row.message, extra={"details": row.details, "run_id": run_id}
        )
    return row
