"""`spot-pipelines db upgrade`."""

from __future__ import annotations

import click

from spot_pipelines.cli import Group
from spot_pipelines.db.engine import upgrade
from spot_pipelines.settings import database_url


@click.group(cls=Group)
def db() -> None:
    """The app database (DATABASE_URL, else SQLite under $DAGSTER_HOME)."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Apply every Alembic migration (runs also automatically on first use)."""
    upgrade(database_url())
    click.echo("app database is at the newest schema")
