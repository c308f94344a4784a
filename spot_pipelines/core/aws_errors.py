"""Classifying AWS errors: which mean bad credentials, which a skippable region."""

from __future__ import annotations

from botocore.exceptions import BotoCoreError, ClientError

CREDENTIAL_ERRORS = frozenset({
    "AuthFailure", "InvalidClientTokenId", "SignatureDoesNotMatch", "UnrecognizedClientException",
    "AccessDenied", "AccessDeniedException", "ExpiredToken", "ExpiredTokenException",
    "InvalidAccessKeyId",
})
# An opt-in region that is off, or an SCP/IAM policy that denies one region: skip that region.
REGION_SKIP_ERRORS = frozenset({"OptInRequired", "UnauthorizedOperation", "AuthFailure"})
THROTTLING_ERRORS = frozenset({
    "RequestLimitExceeded", "Throttling", "ThrottlingException", "TooManyRequestsException",
})


def error_code(exc: BaseException) -> str | None:
    if isinstance(exc, ClientError):
        return exc.response.get("Error", {}).get("Code")
    return None


def describe(exc: BaseException) -> str:
    """A one-line cause for the operator. botocore messages carry no credentials."""
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        op = getattr(exc, "operation_name", "call")
        return f"{err.get('Code', 'Error')} on {op}: {err.get('Message', '').strip()}".strip()
    if isinstance(exc, BotoCoreError):
        return f"{type(exc).__name__}: {exc}"
    return f"{type(exc).__name__}: {exc}"
