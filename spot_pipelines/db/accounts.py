"""Account rows and the status contract: pending → connected → active | failed."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from spot_pipelines.core.clock import utcnow
from spot_pipelines.db.models import Account

PENDING, CONNECTED, ACTIVE, FAILED = "pending", "connected", "active", "failed"
STATUSES = (PENDING, CONNECTED, ACTIVE, FAILED)


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


def by_aws_account_id(session: Session, aws_account_id: str) -> Account | None:
    return session.scalars(select(Account).where(Account.aws_account_id == aws_account_id)).one_or_none()
