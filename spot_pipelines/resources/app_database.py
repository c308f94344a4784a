"""AppDatabase: the SQLAlchemy app database (DATABASE_URL, else SQLite under $DAGSTER_HOME)."""

import dagster as dg
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from spot_pipelines.db.engine import ensure_schema, session_factory
from spot_pipelines.settings import database_url


class AppDatabase(dg.ConfigurableResource):
    """Migrated to the newest schema on first use in a process, never at definition load."""

    url: str | None = None

    def resolved_url(self) -> str:
        return self.url or database_url()

    @property
    def engine(self) -> Engine:
        return ensure_schema(self.resolved_url())

    def session(self) -> Session:
        self.engine  # migrate first
        return session_factory(self.resolved_url())()
