"""AppDatabase: the SQLAlchemy app database (DATABASE_URL, else SQLite under $DAGSTER_HOME)."""

from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
from sqlalchemy import Connection, Engine
from sqlalchemy.orm import Session

from spot_pipelines.db.engine import ensure_schema, transaction
from spot_pipelines.settings import database_url


class AppDatabase(dg.ConfigurableResource):
    """Migrated to the newest schema on first use in a process, never at definition load.

    The one way in: `with app_db.transaction() as session:` (ORM; committed when the block ends, rolled back
    if it raises) and `with app_db.connection() as conn:` (pandas reads and bulk Core statements, likewise).
    """

    url: str | None = None

    def resolved_url(self) -> str:
        return self.url or database_url()

    @property
    def engine(self) -> Engine:
        return ensure_schema(self.resolved_url())

    @contextmanager
    def transaction(self, *, migrate: bool = True) -> Iterator[Session]:
        """`migrate=False` only for the CLI commands that must run while a migration is blocked."""
        with transaction(self.resolved_url(), migrate=migrate) as session:
            yield session

    @contextmanager
    def connection(self) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            yield conn
