from __future__ import annotations

from alembic import context
from sqlalchemy import text

from spot_pipelines.db.engine import PG_MIGRATION_LOCK_ID, get_engine
from spot_pipelines.db.base import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = get_engine(config.get_main_option("sqlalchemy.url"))
    with engine.connect() as connection:
        context.configure(
            connection=connection, target_metadata=target_metadata, render_as_batch=engine.dialect.name == "sqlite"
        )
        with context.begin_transaction():
            if engine.dialect.name == "postgresql":
                # Held to the end of the transaction: a second migrator waits, then finds head.
                connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": PG_MIGRATION_LOCK_ID})
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
