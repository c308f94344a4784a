"""Onboarding logic: validated input → an account row, with the secret encrypted."""

from __future__ import annotations

from dataclasses import dataclass

from spot_pipelines.core import validation
from spot_pipelines.core.errors import ValidationError


@dataclass(frozen=True)
class AccountRequest:
    name: str
    aws_account_id: str
    auth_method: str
    role_arn: str | None = None
    external_id: str | None = None
    access_key_id: str | None = None
    regions: list[str] | None = None


def build_request(name: str, aws_account_id: str, *, role_arn: str | None, external_id: str | None,
                  access_key_id: str | None, regions: list[str] | None) -> AccountRequest:
    """Validate every field; exactly one auth method (role or keys) must be given."""
    validation.account_name(name)
    validation.aws_account_id(aws_account_id)
    if bool(role_arn) == bool(access_key_id):
        raise ValidationError("auth", "give either --role-arn (with --external-id) or --access-key-id, not both or neither")
    if role_arn:
        validation.role_arn(role_arn, aws_account_id)
        if external_id:
            validation.external_id(external_id)
        return AccountRequest(name, aws_account_id, "role", role_arn=role_arn, external_id=external_id,
                              regions=validation.regions(regions))
    if external_id:
        raise ValidationError("external_id", "only applies to role-based accounts")
    validation.access_key_id(access_key_id)
    return AccountRequest(name, aws_account_id, "keys", access_key_id=access_key_id,
                          regions=validation.regions(regions))
