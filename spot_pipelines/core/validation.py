"""Validation of operator input: each error names the field."""

from __future__ import annotations

import re

from spot_pipelines.core.errors import ValidationError

ACCOUNT_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
AWS_ACCOUNT_ID = re.compile(r"^\d{12}$")
ROLE_ARN = re.compile(r"^arn:aws(?:-cn|-us-gov)?:iam::(\d{12}):role/[\w+=,.@/-]{1,512}$")
ACCESS_KEY_ID = re.compile(r"^(?:AKIA|ASIA)[A-Z0-9]{12,124}$")
EXTERNAL_ID = re.compile(r"^[\w+=,.@:/-]{2,1224}$")
REGION = re.compile(r"^[a-z]{2}(?:-[a-z]+)+-\d{1,2}$")


def account_name(value: str) -> str:
    if not ACCOUNT_NAME.match(value or ""):
        raise ValidationError(
            "name", f"{value!r} must be 1-63 lowercase letters, digits, '-' or '_', starting with a letter or digit"
        )
    return value


def aws_account_id(value: str) -> str:
    if not AWS_ACCOUNT_ID.match(value or ""):
        raise ValidationError("aws_account_id", f"{value!r} is not a 12-digit AWS account id")
    return value


def role_arn(value: str, expected_account_id: str) -> str:
    match = ROLE_ARN.match(value or "")
    if not match:
        raise ValidationError(
            "role_arn", f"{value!r} is not an IAM role ARN (arn:aws:iam::123456789012:role/Name)"
        )
    if match.group(1) != expected_account_id:
        raise ValidationError(
            "role_arn", f"the role belongs to account {match.group(1)}, not {expected_account_id}"
        )
    return value


def external_id(value: str) -> str:
    if not EXTERNAL_ID.match(value or ""):
        raise ValidationError("external_id", "must be 2-1224 characters of letters, digits and +=,.@:/-_")
    return value


def access_key_id(value: str) -> str:
    if not ACCESS_KEY_ID.match(value or ""):
        raise ValidationError("access_key_id", f"{value!r} is not an AWS access key id (AKIA…/ASIA…)")
    return value


def secret_access_key(value: str) -> str:
    if not value or len(value.strip()) < 16 or any(c.isspace() for c in value.strip()):
        # The value itself is never echoed.
        raise ValidationError("secret_access_key", "is empty, too short or contains spaces")
    return value.strip()


def regions(values: list[str] | None) -> list[str] | None:
    if not values:
        return None
    cleaned = sorted({v.strip() for v in values if v.strip()})
    for region in cleaned:
        if not REGION.match(region):
            raise ValidationError("regions", f"{region!r} is not an AWS region code (e.g. eu-west-1)")
    return cleaned or None
