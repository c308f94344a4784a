"""Foundation models: accounts, their instances, and the system log.

Other domains keep their models in their own modules (`db/<domain>.py`); each table is created
by a hand-written Alembic migration in `migrations/versions/`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from spot_pipelines.core.clock import utcnow
from spot_pipelines.db.base import Base, JSONType, UTCDateTime

__all__ = ["Account", "Base", "Instance", "JSONType", "SystemLog", "UTCDateTime"]


class Account(Base):
    __tablename__ = "accounts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    aws_account_id: Mapped[str] = mapped_column(String(12), nullable=False)
    auth_method: Mapped[str] = mapped_column(String(8), nullable=False)  # role | keys
    role_arn: Mapped[str | None] = mapped_column(String(2048))
    external_id: Mapped[str | None] = mapped_column(String(1224))
    access_key_id: Mapped[str | None] = mapped_column(String(128))
    # Fernet token; the plaintext secret never reaches the database.
    encrypted_secret: Mapped[str | None] = mapped_column(Text)
    regions: Mapped[list[str] | None] = mapped_column(JSONType)  # None: every enabled region
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="pending", index=True)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime, nullable=False, default=utcnow, onupdate=utcnow
    )
    last_discovered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    # One row per AWS account (migration 0006): a second name would count its savings twice.
    __table_args__ = (Index("uq_accounts_aws_account_id", "aws_account_id", unique=True),)


class Instance(Base):
    __tablename__ = "instances"

    account_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )
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


class SystemLog(Base):
    __tablename__ = "system_logs"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow, index=True)
    component: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    level: Mapped[str] = mapped_column(String(16), nullable=False)
    message: Mapped[str] = mapped_column(Text, nullable=False)
    details: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    run_id: Mapped[str | None] = mapped_column(String(64))
