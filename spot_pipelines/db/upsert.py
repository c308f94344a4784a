"""Dialect-aware bulk upsert (INSERT … ON CONFLICT DO UPDATE on Postgres and SQLite)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

BATCH_ROWS = 1000


def bulk_upsert(
    session: Session,
    table: Table,
    rows: Sequence[dict[str, Any]],
    *,
    key: Sequence[str],
    keep_on_update: Sequence[str] = (),
) -> None:
    """Insert rows, updating every non-key column on conflict except `keep_on_update`."""
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    insert = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}.get(dialect)
    if insert is None:
        raise NotImplementedError(f"bulk upsert is not implemented for {dialect}")
    columns = rows[0].keys()
    stmt = insert(table)
    updates = {c: stmt.excluded[c] for c in columns if c not in key and c not in keep_on_update}
    stmt = stmt.on_conflict_do_update(index_elements=list(key), set_=updates)
    # executemany with one cached statement: SQLAlchemy batches it into multi-row INSERTs
    # ("insertmanyvalues"). Compiling a fresh `.values([...])` per batch cost more than the write.
    for start in range(0, len(rows), BATCH_ROWS):
        session.execute(stmt, list(rows[start : start + BATCH_ROWS]))


def _dialect_insert(session: Session):
    dialect = session.get_bind().dialect.name
    try:
        return {"postgresql": postgresql.insert, "sqlite": sqlite.insert}[dialect]
    except KeyError:
        raise NotImplementedError(f"insert-if-absent are not implemented for {dialect}") from None


def insert_ignoring_conflicts(
    session: Session, table, rows: Sequence[dict[str, Any]], index_elements: Sequence[str] | None = None
) -> None:
    insert = _dialect_insert(session)
    for start in range(0, len(rows), 1000):
        stmt = insert(table).values(list(rows[start : start + 1000]))
        session.execute(stmt.on_conflict_do_nothing(index_elements=list(index_elements) if index_elements else None))
