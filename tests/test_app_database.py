"""AppDatabase's one way in: `transaction()` commits when the block ends and rolls back if it raises;
`connection()` likewise, for pandas reads and Core statements. On SQLite and the real Postgres."""

from __future__ import annotations

import pandas as pd
import pytest
from sqlalchemy import select

from spot_pipelines.db.accounts import Account
from spot_pipelines.resources.app_database import AppDatabase


def _names(db: AppDatabase) -> list[str]:
    with db.connection() as conn:
        return pd.read_sql(select(Account.name).order_by(Account.name), conn)["name"].tolist()


def test_a_transaction_commits_at_the_end_of_the_block(db_url):
    db = AppDatabase(url=db_url)
    with db.transaction() as session:
        session.add(Account(name="prod", aws_account_id="123456789012", auth_method="role"))
    assert _names(db) == ["prod"]


def test_a_failing_transaction_changes_no_stored_row(db_url):
    db = AppDatabase(url=db_url)
    with db.transaction() as session:
        session.add(Account(name="prod", aws_account_id="123456789012", auth_method="role", status="active"))
    with db.connection() as conn:
        before = conn.execute(select(Account.__table__)).mappings().all()

    with pytest.raises(RuntimeError, match="boom"), db.transaction() as session:
        session.add(Account(name="staging", aws_account_id="210987654321", auth_method="role"))
        session.scalars(select(Account).where(Account.name == "prod")).one().status = "failed"
        session.flush()
        raise RuntimeError("boom")

    with db.connection() as conn:
        assert conn.execute(select(Account.__table__)).mappings().all() == before


def test_a_failing_connection_block_rolls_back(db_url):
    db = AppDatabase(url=db_url)
    with pytest.raises(RuntimeError, match="boom"), db.connection() as conn:
        conn.execute(
            Account.__table__.insert().values(
                name="prod", aws_account_id="123456789012", auth_method="role", status="pending"
            )
        )
        raise RuntimeError("boom")
    assert _names(db) == []
