"""`spot-pipelines`: operator commands for keys, accounts, the database and the demo."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from spot_pipelines.core.accounts import DuplicateAwsAccountsError, already_onboarded, build_request
from spot_pipelines.core.errors import ConfigError, SpotPipelinesError
from spot_pipelines.core.keyring import ENV_VAR, Keyring, generate_key
from spot_pipelines.core.validation import secret_access_key, shown
from spot_pipelines.db import accounts as account_rows
from spot_pipelines.db.engine import session_factory, upgrade
from spot_pipelines.db.models import Account
from spot_pipelines.resources.app_database import AppDatabase
from spot_pipelines.resources.credential_vault import CredentialVault
from spot_pipelines.settings import PROJECT_ROOT, database_url, encryption_keys_from_env


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


class _Group(click.Group):
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


def _assigns_key(line: str) -> bool:
    name, sep, value = line.partition("=")
    return bool(sep and value.strip()) and name.strip().removeprefix("export ").strip() == ENV_VAR


def _env_file_with_key() -> Path | None:
    """The first `.env` (current directory, then project root) that assigns ENCRYPTION_KEY."""
    for path in dict.fromkeys((Path.cwd() / ".env", PROJECT_ROOT / ".env")):
        if path.is_file() and any(_assigns_key(line) for line in path.read_text().splitlines()):
            return path
    return None


def _encryption_key(db: AppDatabase) -> str:
    """ENCRYPTION_KEY, or advice that never makes stored secrets unreadable."""
    key = encryption_keys_from_env()
    if key and key.strip():
        return key
    env_file = _env_file_with_key()
    if env_file is not None:
        where = "./.env" if env_file == Path.cwd() / ".env" else str(env_file)
        raise ConfigError(f"{ENV_VAR} is not set in this shell, but {where} holds one: load it with "
                          f"`set -a; . {where}; set +a` (do not generate a new key: stored secrets would "
                          "become unreadable)")
    with db.session() as session:
        stored = session.scalar(select(func.count()).where(Account.encrypted_secret.is_not(None)))
    if stored:
        raise ConfigError(f"{ENV_VAR} is not set and {stored} stored secret(s) were encrypted under it: "
                          "export the key they were stored with (a new key cannot read them)")
    raise ConfigError(f"{ENV_VAR} is not set and no secrets are stored yet: generate one with "
                      "`spot-pipelines keys generate` and export it")


def _session_while_duplicates_block_upgrade(db: AppDatabase):
    """`accounts list/remove` resolve the duplicates that block migration 0006, so they run without it."""
    try:
        return db.session()
    except DuplicateAwsAccountsError:
        return session_factory(db.resolved_url())()


@click.group(cls=_Group)
def main() -> None:
    """Operate spot_pipelines: encryption keys, AWS accounts, the app database, the demo."""


@main.group(cls=_Group)
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
    keyring = Keyring(_encryption_key(db))
    with db.session() as session, session.begin():
        rows = list(session.scalars(select(Account).where(Account.encrypted_secret.is_not(None))
                                    .with_for_update()))
        for account in rows:
            account.encrypted_secret = keyring.rotate(account.encrypted_secret, owner=f"account {account.name!r}")
        # Nothing is committed unless every secret is now readable by the primary key alone.
        unreadable = [a.name for a in rows if not keyring.readable_by_primary(a.encrypted_secret)]
        if unreadable:
            raise SpotPipelinesError(f"rotation check failed for {unreadable}; nothing was changed")
    click.echo(f"re-encrypted {len(rows)} secret(s) under the primary key")
    if keyring.key_count > 1:
        click.echo("every secret now decrypts with the first key alone: the older keys can be removed from ENCRYPTION_KEY")


@main.group(cls=_Group)
def db() -> None:
    """The app database (DATABASE_URL, else SQLite under $DAGSTER_HOME)."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Apply every Alembic migration (runs also automatically on first use)."""
    upgrade(database_url())
    click.echo("app database is at the newest schema")


@main.group(cls=_Group)
def accounts() -> None:
    """Onboarded AWS accounts."""


def _read_secret() -> str:
    if sys.stdin.isatty():
        return click.prompt("secret access key", hide_input=True)
    return sys.stdin.readline().rstrip("\n")


@accounts.command("add")
@click.argument("name")
@click.option("--aws-account-id", required=True, help="12-digit AWS account id.")
@click.option("--role-arn", help="IAM role to assume in the account (role-based onboarding).")
@click.option("--external-id", help="External ID the role's trust policy requires.")
@click.option("--access-key-id", help="Access key id (key-based onboarding); the secret is read from stdin or a prompt.")
@click.option("--regions", help="Comma-separated regions to scan (default: every enabled region).")
def accounts_add(name: str, aws_account_id: str, role_arn: str | None, external_id: str | None,
                 access_key_id: str | None, regions: str | None) -> None:
    """Onboard an account: store it `pending`, validate with sts:GetCallerIdentity, mark it `connected`.

    The secret access key is never accepted as an argument (argv is visible to other users).
    """
    request = build_request(name, aws_account_id, role_arn=role_arn, external_id=external_id,
                            access_key_id=access_key_id, regions=regions.split(",") if regions else None)
    db = AppDatabase()
    vault = CredentialVault(encryption_key=_encryption_key(db) if request.auth_method == "keys" else None)
    encrypted = vault.encrypt(secret_access_key(_read_secret())) if request.auth_method == "keys" else None
    with db.session() as session, session.begin():
        same_aws = account_rows.by_aws_account_id(session, request.aws_account_id)
        if same_aws is not None and same_aws.name != name:
            raise already_onboarded(same_aws.aws_account_id, same_aws.name, same_aws.id)
        account = account_rows.by_name(session, name)
        if account is not None and account.status != account_rows.PENDING:
            raise SpotPipelinesError(f"account {name!r} already exists ({account.status}); remove it first")
        if account is None:
            account = Account(name=name, status=account_rows.PENDING)
            session.add(account)
        account.aws_account_id = request.aws_account_id
        account.auth_method = request.auth_method
        account.role_arn, account.external_id = request.role_arn, request.external_id
        account.access_key_id, account.encrypted_secret = request.access_key_id, encrypted
        account.regions, account.last_error = request.regions, None
    try:
        caller = vault.validate(account)
    except SpotPipelinesError as exc:
        with db.session() as session, session.begin():
            row = account_rows.by_name(session, name)
            row.last_error = str(exc)
        raise SpotPipelinesError(f"{exc}; the account stays 'pending' (fix and re-run `accounts add`)") from None
    with db.session() as session, session.begin():
        row = account_rows.by_name(session, name)
        row.status = account_rows.CONNECTED
    click.echo(f"account {name!r} connected as {caller}; the onboarding sensor will discover it")


@accounts.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def accounts_list(as_json: bool) -> None:
    """List accounts with their status (secrets are never shown)."""
    with _session_while_duplicates_block_upgrade(AppDatabase()) as session:
        rows = [{
            "name": a.name, "aws_account_id": a.aws_account_id, "auth": a.auth_method,
            "status": a.status, "regions": ",".join(a.regions) if a.regions else "all enabled",
            "last_discovered_at": a.last_discovered_at.isoformat() if a.last_discovered_at else None,
            "last_error": a.last_error,
        } for a in account_rows.all_accounts(session)]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no accounts yet: add one with `spot-pipelines accounts add`")
        return
    columns = ["name", "aws_account_id", "auth", "status", "regions", "last_discovered_at"]
    widths = {c: max(len(c), *(len(str(r[c] or "-")) for r in rows)) for c in columns}
    click.echo("  ".join(c.ljust(widths[c]) for c in columns))
    for row in rows:
        click.echo("  ".join(str(row[c] or "-").ljust(widths[c]) for c in columns))
        if row["last_error"]:
            click.echo(f"    last error: {row['last_error']}")


@accounts.command("remove")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def accounts_remove(name: str, yes: bool) -> None:
    """Remove an account, its stored secret and its discovered instances."""
    with _session_while_duplicates_block_upgrade(AppDatabase()) as session, session.begin():
        account = account_rows.by_name(session, name)
        if account is None:
            raise SpotPipelinesError(f"no account named {shown(name)}")
        if not yes:
            click.confirm(f"remove account {name!r} and its discovered instances?", abort=True)
        session.delete(account)
    click.echo(f"account {name!r} removed; the onboarding sensor drops its partition")


@main.group("demo", cls=_Group, invoke_without_command=True)
@click.option("--no-ui", is_flag=True, help="Run the end-to-end flow and exit instead of serving the UI.")
@click.option("--port", default=3000, show_default=True, help="UI port (another free one is used if taken).")
@click.option("--quick", is_flag=True, envvar="SPOT_PIPELINES_DEMO_QUICK",
              help="Test-sized flow: price only the fleet's own instance types, 17 days of history.")
@click.pass_context
def demo(ctx: click.Context, no_ui: bool, port: int, quick: bool) -> None:
    """Run the whole platform locally: emulator, two accounts, every asset, then the UI."""
    if ctx.invoked_subcommand is not None:
        return
    from spot_pipelines.demo.run import run_demo

    run_demo(ui=not no_ui, port=port, quick=quick)


@demo.command("env")
def demo_env() -> None:
    """Export lines pointing a shell at the running demo (eval them).

    eval "$(.venv/bin/spot-pipelines demo env)" in another shell while `make demo` serves the UI.
    """
    from spot_pipelines.demo.workbench import export_lines
    from spot_pipelines.settings import dagster_home

    click.echo(export_lines(dagster_home().resolve()), nl=False)


from spot_pipelines.cli_recommendations import recommendations  # noqa: E402  (its own module, issue 4)

main.add_command(recommendations)


if __name__ == "__main__":
    main()
