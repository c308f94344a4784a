"""`spot-pipelines accounts add|list|remove|billing-family`: onboarding AWS accounts (secrets never shown)."""

from __future__ import annotations

import json
import sys

import click

from spot_pipelines.cli import Group
from spot_pipelines.cli.keys import encryption_key
from spot_pipelines.core.accounts import DuplicateAwsAccountsError, already_onboarded, build_request
from spot_pipelines.core.errors import SpotPipelinesError
from spot_pipelines.core.validation import secret_access_key, shown
from spot_pipelines.db import accounts as account_rows
from spot_pipelines.db import commitments as commitment_rows
from spot_pipelines.db.accounts import Account
from spot_pipelines.db.engine import ensure_schema
from spot_pipelines.resources.app_database import AppDatabase
from spot_pipelines.resources.credential_vault import CredentialVault


def _transaction_while_duplicates_block_upgrade(db: AppDatabase):
    """`accounts list/remove` resolve the duplicates that block migration 0006, so they run without it."""
    try:
        ensure_schema(db.resolved_url())
    except DuplicateAwsAccountsError:
        pass
    return db.transaction(migrate=False)


@click.group(cls=Group)
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
@click.option(
    "--access-key-id", help="Access key id (key-based onboarding); the secret is read from stdin or a prompt."
)
@click.option("--regions", help="Comma-separated regions to scan (default: every enabled region).")
def accounts_add(
    name: str,
    aws_account_id: str,
    role_arn: str | None,
    external_id: str | None,
    access_key_id: str | None,
    regions: str | None,
) -> None:
    """Onboard an account: store it `pending`, validate with sts:GetCallerIdentity, mark it `connected`.

    The secret access key is never accepted as an argument (argv is visible to other users).
    """
    request = build_request(
        name,
        aws_account_id,
        role_arn=role_arn,
        external_id=external_id,
        access_key_id=access_key_id,
        regions=regions.split(",") if regions else None,
    )
    db = AppDatabase()
    vault = CredentialVault(encryption_key=encryption_key(db) if request.auth_method == "keys" else None)
    encrypted = vault.encrypt(secret_access_key(_read_secret())) if request.auth_method == "keys" else None
    with db.transaction() as session:
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
        with db.transaction() as session:
            row = account_rows.by_name(session, name)
            row.last_error = str(exc)
        raise SpotPipelinesError(f"{exc}; the account stays 'pending' (fix and re-run `accounts add`)") from None
    with db.transaction() as session:
        row = account_rows.by_name(session, name)
        row.status = account_rows.CONNECTED
    click.echo(f"account {name!r} connected as {caller}; the onboarding sensor will discover it")


@accounts.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def accounts_list(as_json: bool) -> None:
    """List accounts with their status (secrets are never shown)."""
    with _transaction_while_duplicates_block_upgrade(AppDatabase()) as session:
        rows = [
            {
                "name": a.name,
                "aws_account_id": a.aws_account_id,
                "auth": a.auth_method,
                "status": a.status,
                "regions": ",".join(a.regions) if a.regions else "all enabled",
                "last_discovered_at": a.last_discovered_at.isoformat() if a.last_discovered_at else None,
                "last_error": a.last_error,
            }
            for a in account_rows.all_accounts(session)
        ]
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
    with _transaction_while_duplicates_block_upgrade(AppDatabase()) as session:
        account = account_rows.by_name(session, name)
        if account is None:
            raise SpotPipelinesError(f"no account named {shown(name)}")
        if not yes:
            click.confirm(f"remove account {name!r} and its discovered instances?", abort=True)
        session.delete(account)
    click.echo(f"account {name!r} removed; the onboarding sensor drops its partition")


@accounts.command("billing-family")
@click.argument("name")
@click.argument("family", required=False)
@click.option("--none", "leave", is_flag=True, help="Leave the billing family: the account's commitments are its own.")
def accounts_billing_family(name: str, family: str | None, leave: bool) -> None:
    """Declare the billing family (one payer) whose RIs and Savings Plans the account shares."""
    if bool(family) == leave:
        raise SpotPipelinesError("give a billing family name, or --none to leave one")
    if family and not (0 < len(family) <= 64):
        raise SpotPipelinesError("billing family: 1 to 64 characters")
    with AppDatabase().transaction() as session:
        account = account_rows.by_name(session, name)
        if account is None:
            raise SpotPipelinesError(f"no account named {shown(name)}")
        commitment_rows.set_billing_family(session, account.id, family)
    click.echo(
        f"account {name!r} "
        + (f"shares commitments in billing family {family!r}" if family else "has its own pool")
        + "; the next spot_recommendations applies it"
    )
