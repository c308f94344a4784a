"""Validation of operator input: each error names the field."""

from __future__ import annotations

import difflib
import functools
import re
from datetime import datetime, timezone

import botocore.session

from spot_pipelines.core.clock import utcnow
from spot_pipelines.core.errors import ValidationError

ACCOUNT_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
AWS_ACCOUNT_ID = re.compile(r"^\d{12}$")
ROLE_ARN = re.compile(r"^arn:aws(?:-cn|-us-gov)?:iam::(\d{12}):role/[\w+=,.@/-]{1,512}$")
ACCESS_KEY_ID = re.compile(r"^(?:AKIA|ASIA)[A-Z0-9]{12,124}$")
EXTERNAL_ID = re.compile(r"^[\w+=,.@:/-]{2,1224}$")
ECHO_LIMIT = 40


def shown(value: object, limit: int = ECHO_LIMIT) -> str:
    """A value echoed in an error, cut to `limit` characters so a pasted blob stays one short line."""
    text = str(value)
    if len(text) <= limit:
        return repr(value)
    return f"{text[:limit] + '…'!r} ({len(text)} characters)"


@functools.cache
def known_regions() -> frozenset[str]:
    """Every EC2 region in botocore's bundled endpoint data, across partitions (no network)."""
    session = botocore.session.get_session()
    return frozenset(
        region
        for partition in session.get_available_partitions()
        for region in session.get_available_regions("ec2", partition_name=partition)
    )


def account_name(value: str) -> str:
    if not ACCOUNT_NAME.match(value or ""):
        raise ValidationError(
            "name",
            f"{shown(value)} must be 1-63 lowercase letters, digits, '-' or '_', starting with a letter or digit",
        )
    return value


def aws_account_id(value: str) -> str:
    if not AWS_ACCOUNT_ID.match(value or ""):
        raise ValidationError("aws_account_id", f"{shown(value)} is not a 12-digit AWS account id")
    return value


def role_arn(value: str, expected_account_id: str) -> str:
    match = ROLE_ARN.match(value or "")
    if not match:
        raise ValidationError(
            "role_arn", f"{shown(value)} is not an IAM role ARN (arn:aws:iam::123456789012:role/Name)"
        )
    if match.group(1) != expected_account_id:
        raise ValidationError("role_arn", f"the role belongs to account {match.group(1)}, not {expected_account_id}")
    return value


def external_id(value: str) -> str:
    if not EXTERNAL_ID.match(value or ""):
        raise ValidationError("external_id", "must be 2-1224 characters of letters, digits and +=,.@:/-_")
    return value


def access_key_id(value: str) -> str:
    if not ACCESS_KEY_ID.match(value or ""):
        raise ValidationError("access_key_id", f"{shown(value)} is not an AWS access key id (AKIA…/ASIA…)")
    return value


def secret_access_key(value: str) -> str:
    if not value or len(value.strip()) < 16 or any(c.isspace() for c in value.strip()):
        # The value itself is never echoed.
        raise ValidationError("secret_access_key", "is empty, too short or contains spaces")
    return value.strip()


def regions(values: list[str] | None, field: str = "regions") -> list[str] | None:
    """Sorted, de-duplicated region codes, each one botocore knows; None (every enabled region) if empty."""
    if not values:
        return None
    cleaned = sorted({v.strip() for v in values if v.strip()})
    for region in cleaned:
        if region not in known_regions():
            close = difflib.get_close_matches(region, sorted(known_regions()), n=3)
            hint = f"did you mean {', '.join(close)}?" if close else "e.g. eu-west-1"
            raise ValidationError(field, f"{shown(region)} is not an AWS region ({hint})")
    return cleaned or None


def parse_as_of(value: str | None) -> datetime:
    if not value:
        return utcnow()
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValidationError("as_of", f"{value!r} is not an ISO-8601 timestamp") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
