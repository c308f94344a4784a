"""Classifying AWS errors: bad credentials, a skippable region, and what a retry cannot fix."""

from __future__ import annotations

from botocore.exceptions import (
    ClientError,
    NoCredentialsError,
    NoRegionError,
    ParamValidationError,
    PartialCredentialsError,
    ProfileNotFound,
    UnauthorizedSSOTokenError,
)

from spot_pipelines.core.errors import SpotPipelinesError

CREDENTIAL_ERRORS = frozenset(
    {
        "AuthFailure",
        "InvalidClientTokenId",
        "SignatureDoesNotMatch",
        "UnrecognizedClientException",
        "AccessDenied",
        "AccessDeniedException",
        "ExpiredToken",
        "ExpiredTokenException",
        "InvalidAccessKeyId",
    }
)
# An opt-in region that is off, or an SCP/IAM policy that denies one region: skip that region.
REGION_SKIP_ERRORS = frozenset({"OptInRequired", "UnauthorizedOperation", "AuthFailure"})
# The same request gets the same answer: credentials, permissions, a bad request. ExpiredToken is
# here because botocore refreshes refreshable credentials before they expire: one that reaches us
# could not be refreshed.
PERMANENT_ERRORS = CREDENTIAL_ERRORS | frozenset(
    {
        "UnauthorizedOperation",
        "OptInRequired",
        "ValidationError",
        "ValidationException",
        "InvalidParameterValue",
        "InvalidParameterCombination",
        "InvalidParameter",
        "MissingParameter",
    }
)
# Raised by botocore before any request is sent, from the local configuration.
PERMANENT_BOTOCORE = (
    NoCredentialsError,
    PartialCredentialsError,
    ParamValidationError,
    NoRegionError,
    ProfileNotFound,
    UnauthorizedSSOTokenError,
)


def error_code(exc: BaseException) -> str | None:
    if isinstance(exc, ClientError):
        return exc.response.get("Error", {}).get("Code")
    return None


def is_permanent(exc: BaseException) -> bool:
    """True when retrying cannot help: missing or rejected credentials, denied permissions,
    invalid requests and malformed data. Throttling, 5xx, timeouts and network errors are not.
    Our own errors (CredentialError, ConfigError, ValidationError) name a bad input or setting."""
    if isinstance(exc, (SpotPipelinesError, *PERMANENT_BOTOCORE)):
        return True
    return error_code(exc) in PERMANENT_ERRORS


def describe(exc: BaseException) -> str:
    """A one-line cause for the operator. botocore messages carry no credentials."""
    if isinstance(exc, SpotPipelinesError):
        return str(exc)  # already written for the operator
    if isinstance(exc, NoCredentialsError):
        # Onboarded accounts bring their own keys or role; only the platform's default chain can be empty.
        return (
            "no AWS credentials found (platform identity: none in the environment, shared config, "
            "container or instance profile)"
        )
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        op = getattr(exc, "operation_name", "call")
        return f"{err.get('Code', 'Error')} on {op}: {err.get('Message', '').strip()}".strip()
    return " ".join(f"{type(exc).__name__}: {exc}".split())  # one line: ParamValidationError spans several
