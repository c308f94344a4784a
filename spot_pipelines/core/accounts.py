"""Onboarding logic: validated input → an account row, with the secret encrypted."""

from __future__ import annotations

from dataclasses import dataclass

from spot_pipelines.core import validation
from spot_pipelines.core.errors import SpotPipelinesError, ValidationError


@dataclass(frozen=True)
class AccountRequest:
    name: str
    aws_account_id: str
    auth_method: str
    role_arn: str | None = None
    external_id: str | None = None
    access_key_id: str | None = None
    regions: list[str] | None = None


def build_request(
    name: str,
    aws_account_id: str,
    *,
    role_arn: str | None,
    external_id: str | None,
    access_key_id: str | None,
    regions: list[str] | None,
) -> AccountRequest:
    """Validate every field; exactly one auth method (role or keys) must be given."""
    validation.account_name(name)
    validation.aws_account_id(aws_account_id)
    if bool(role_arn) == bool(access_key_id):
        raise ValidationError(
            "auth", "give either --role-arn (with --external-id) or --access-key-id, not both or neither"
        )
    if role_arn:
        validation.role_arn(role_arn, aws_account_id)
        if external_id:
            validation.external_id(external_id)
        return AccountRequest(
            name,
            aws_account_id,
            "role",
            role_arn=role_arn,
            external_id=external_id,
            regions=validation.regions(regions),
        )
    if external_id:
        raise ValidationError("external_id", "only applies to role-based accounts")
    validation.access_key_id(access_key_id)
    return AccountRequest(
        name, aws_account_id, "keys", access_key_id=access_key_id, regions=validation.regions(regions)
    )


class DuplicateAwsAccountsError(SpotPipelinesError):
    """Existing rows share an AWS account id: the operator must choose which name stays."""


def already_onboarded(aws_account_id: str, name: str, account_id: int) -> SpotPipelinesError:
    return SpotPipelinesError(
        f"AWS account {aws_account_id} is already onboarded as {name!r} (id {account_id}): one AWS account "
        f"is one row, or its instances and savings would count twice (use that name, or "
        f"`spot-pipelines accounts remove {name}` first)"
    )


def duplicates_report(rows: list[tuple[str, str, int]]) -> DuplicateAwsAccountsError:
    """`rows` are (aws_account_id, name, id) of accounts sharing an AWS account id."""
    names: dict[str, list[str]] = {}
    for aws_id, name, account_id in sorted(rows):
        names.setdefault(aws_id, []).append(f"{name!r} (id {account_id})")
    shared = "; ".join(f"AWS account {aws_id} is onboarded as {' and '.join(n)}" for aws_id, n in names.items())
    return DuplicateAwsAccountsError(
        f"one row per AWS account is refused while duplicates exist: {shared}. Keep one name per AWS account "
        "(`spot-pipelines accounts remove NAME` the others), then run `spot-pipelines db upgrade`; "
        "nothing was merged or deleted"
    )
