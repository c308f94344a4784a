"""`spot-pipelines`: operator commands for keys, accounts, the database, recommendations and the demo."""

from __future__ import annotations

import sys

import click
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from spot_pipelines.core.errors import SpotPipelinesError
from spot_pipelines.settings import database_url


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


class Group(click.Group):
    """Project errors become one clear line and exit code 1, never a traceback with context."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except SpotPipelinesError as exc:
            _fail(str(exc))
        except DBAPIError as exc:
            cause = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
            where = make_url(database_url()).render_as_string(hide_password=True)
            _fail(f"the app database {where} failed: {cause} (is it running? is DATABASE_URL right?)")


@click.group(cls=Group)
def main() -> None:
    """Operate spot_pipelines: encryption keys, AWS accounts, the app database, the demo."""


# The command groups import Group from here, so they are registered once it exists.
from spot_pipelines.cli import accounts, db, demo, keys, markets, recommendations  # noqa: E402

for command in (keys.keys, db.db, accounts.accounts, recommendations.recommendations, markets.markets, demo.demo):
    main.add_command(command)
