"""Account rows and the status contract: pending → connected → active | failed."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import Connection, Index, Integer, String, Text, func, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from spot_pipelines.core.clock import utcnow
from spot_pipelines.db.base import Base, JSONType, UTCDateTime


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
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow, onupdate=utcnow)
    last_discovered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    # One row per AWS account (migration 0006): a second name would count its savings twice.
    __table_args__ = (Index("uq_accounts_aws_account_id", "aws_account_id", unique=True),)


PENDING, CONNECTED, ACTIVE, FAILED = "pending", "connected", "active", "failed"


def status_after_discovery(current: str, succeeded: bool) -> str:
    """`connected`→`active`/`failed`; `active` stays `active` on success; a failure is `failed`."""
    if current == PENDING:
        raise ValueError("a pending account has not been validated and cannot be discovered")
    return ACTIVE if succeeded else FAILED


def by_name(session: Session, name: str) -> Account | None:
    return session.scalars(select(Account).where(Account.name == name)).one_or_none()


def all_accounts(session: Session) -> list[Account]:
    return list(session.scalars(select(Account).order_by(Account.name)))


def record_discovery(session: Session, account: Account, *, succeeded: bool, error: str | None) -> None:
    account.status = status_after_discovery(account.status, succeeded)
    account.last_error = None if succeeded else error
    if succeeded:
        account.last_discovered_at = utcnow()


def validated_account_names(session: Session) -> list[str]:
    """Every account past `pending` (its credentials were checked once), by name."""
    return list(session.scalars(select(Account.name).where(Account.status != PENDING).order_by(Account.name)))


def by_aws_account_id(session: Session, aws_account_id: str) -> Account | None:
    return session.scalars(select(Account).where(Account.aws_account_id == aws_account_id)).one_or_none()


def account_names(conn: Connection) -> dict[int, str]:
    return dict(conn.execute(select(Account.id, Account.name)).all())


def owners_by_aws_account_id(session: Session, aws_account_ids: Iterable[str]) -> dict[str, list[tuple[int, str]]]:
    """AWS account id → the (id, name) of the accounts onboarded with it, oldest first."""
    ids = sorted(set(aws_account_ids))
    owners: dict[str, list[tuple[int, str]]] = {}
    if ids:
        for id_, name, aws_id in session.execute(
            select(Account.id, Account.name, Account.aws_account_id)
            .where(Account.aws_account_id.in_(ids))
            .order_by(Account.id)
        ):
            owners.setdefault(aws_id, []).append((id_, name))
    return owners


def stored_secret_count(session: Session) -> int:
    return session.scalar(select(func.count()).where(Account.encrypted_secret.is_not(None))) or 0


def accounts_with_secrets_for_update(session: Session) -> list[Account]:
    """The accounts holding an encrypted secret, locked until the transaction ends (key rotation)."""
    return list(session.scalars(select(Account).where(Account.encrypted_secret.is_not(None)).with_for_update()))
