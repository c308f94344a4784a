"""`spot-pipelines keys generate|rotate`, and finding ENCRYPTION_KEY (or advice that loses no secret)."""

from __future__ import annotations

from pathlib import Path

import click

from spot_pipelines.cli import Group
from spot_pipelines.core.errors import ConfigError, SpotPipelinesError
from spot_pipelines.core.keyring import ENV_VAR, Keyring, generate_key
from spot_pipelines.db import accounts as account_rows
from spot_pipelines.resources.app_database import AppDatabase
from spot_pipelines.settings import PROJECT_ROOT, encryption_keys_from_env


def _assigns_key(line: str) -> bool:
    name, sep, value = line.partition("=")
    return bool(sep and value.strip()) and name.strip().removeprefix("export ").strip() == ENV_VAR


def _env_file_with_key() -> Path | None:
    """The first `.env` (current directory, then project root) that assigns ENCRYPTION_KEY."""
    for path in dict.fromkeys((Path.cwd() / ".env", PROJECT_ROOT / ".env")):
        if path.is_file() and any(_assigns_key(line) for line in path.read_text().splitlines()):
            return path
    return None


def encryption_key(db: AppDatabase) -> str:
    """ENCRYPTION_KEY, or advice that never makes stored secrets unreadable."""
    key = encryption_keys_from_env()
    if key and key.strip():
        return key
    env_file = _env_file_with_key()
    if env_file is not None:
        where = "./.env" if env_file == Path.cwd() / ".env" else str(env_file)
        raise ConfigError(
            f"{ENV_VAR} is not set in this shell, but {where} holds one: load it with "
            f"`set -a; . {where}; set +a` (do not generate a new key: stored secrets would "
            "become unreadable)"
        )
    with db.transaction() as session:
        stored = account_rows.stored_secret_count(session)
    if stored:
        raise ConfigError(
            f"{ENV_VAR} is not set and {stored} stored secret(s) were encrypted under it: "
            "export the key they were stored with (a new key cannot read them)"
        )
    raise ConfigError(
        f"{ENV_VAR} is not set and no secrets are stored yet: generate one with "
        "`spot-pipelines keys generate` and export it"
    )


@click.group(cls=Group)
def keys() -> None:
    """Fernet keys for secrets at rest (ENCRYPTION_KEY)."""


@keys.command("generate")
def keys_generate() -> None:
    """Print a new Fernet key. Put it first in ENCRYPTION_KEY (comma-separated) to rotate."""
    click.echo(generate_key())


@keys.command("rotate")
def keys_rotate() -> None:
    """Re-encrypt every stored secret under the first key of ENCRYPTION_KEY, in one transaction."""
    db = AppDatabase()
    keyring = Keyring(encryption_key(db))
    with db.transaction() as session:
        rows = account_rows.accounts_with_secrets_for_update(session)
        for account in rows:
            account.encrypted_secret = keyring.rotate(account.encrypted_secret, owner=f"account {account.name!r}")
        # Nothing is committed unless every secret is now readable by the primary key alone.
        unreadable = [a.name for a in rows if not keyring.readable_by_primary(a.encrypted_secret)]
        if unreadable:
            raise SpotPipelinesError(f"rotation check failed for {unreadable}; nothing was changed")
    click.echo(f"re-encrypted {len(rows)} secret(s) under the primary key")
    if keyring.key_count > 1:
        click.echo(
            "every secret now decrypts with the first key alone: the older keys can be removed from ENCRYPTION_KEY"
        )
