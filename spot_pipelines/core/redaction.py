"""Redaction: nothing that looks like a secret leaves the process in a log line or a stored row.

`redact()` removes AWS secret keys (40-char base64ish), session tokens (long base64 runs), Fernet keys and
tokens, bearer tokens and JWTs, passwords in URLs, the values of dict keys named like secrets, and the current
value of `ENCRYPTION_KEY` and of every environment variable whose name contains SECRET, TOKEN or PASSWORD.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

REDACTED = "[REDACTED]"
MIN_ENV_SECRET_LENGTH = 8  # shorter values ("testing", "1") would shred ordinary words

_SENSITIVE_ENV_NAME = re.compile(r"SECRET|TOKEN|PASSWORD|PASSWD", re.IGNORECASE)
_SENSITIVE_KEY = re.compile(
    r"secret|token|password|passwd|credential|encryption_key|private_key|api_key|authorization", re.IGNORECASE
)
# `key=value` / `"key": "value"` pairs whose key names a secret.
_SENSITIVE_PAIR = re.compile(
    r"""(?P<key>["']?[\w.-]*(?:secret|token|password|passwd|encryption_key|private_key|authorization)[\w.-]*["']?)"""
    r"""(?P<sep>\s*[:=]\s*)(?P<quote>["']?)(?P<value>[^\s"',;}]+)""",
    re.IGNORECASE,
)
_URL_PASSWORD = re.compile(r"(?P<prefix>[a-z][a-z0-9+.-]*://[^:/@\s]+:)(?P<password>[^@\s]+)(?=@)", re.IGNORECASE)
_BEARER = re.compile(r"(?P<scheme>\bBearer\s+)[A-Za-z0-9._~+/=-]{8,}")
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*")
_FERNET_TOKEN = re.compile(r"gAAAAA[A-Za-z0-9_\-]{20,}={0,2}")
_FERNET_KEY = re.compile(r"(?<![A-Za-z0-9_\-])[A-Za-z0-9_\-]{43}=(?![A-Za-z0-9_\-=])")
_LONG_BASE64 = re.compile(r"(?<![A-Za-z0-9/+=])[A-Za-z0-9/+]{100,}={0,2}(?![A-Za-z0-9/+=])")
_AWS_SECRET = re.compile(r"(?<![A-Za-z0-9/+=])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])")
_HEX40 = re.compile(r"[0-9a-f]{40}")  # a git sha / content hash, not a secret


def _env_secrets() -> list[str]:
    """The current values of secret-bearing environment variables, longest first."""
    values: set[str] = set()
    for name, value in os.environ.items():
        if not value or not (name == "ENCRYPTION_KEY" or _SENSITIVE_ENV_NAME.search(name)):
            continue
        for part in [value, *value.split(",")]:
            part = part.strip()
            if len(part) >= MIN_ENV_SECRET_LENGTH:
                values.add(part)
    return sorted(values, key=len, reverse=True)


def _aws_secret(match: re.Match) -> str:
    text = match.group(0)
    return text if _HEX40.fullmatch(text) else REDACTED


def redact_text(text: str) -> str:
    for value in _env_secrets():
        if value in text:
            text = text.replace(value, REDACTED)
    text = _URL_PASSWORD.sub(lambda m: m.group("prefix") + REDACTED, text)
    text = _BEARER.sub(lambda m: m.group("scheme") + REDACTED, text)
    text = _JWT.sub(REDACTED, text)
    text = _SENSITIVE_PAIR.sub(
        lambda m: (
            m.group("key") + m.group("sep") + m.group("quote") + REDACTED
            if m.group("value") != REDACTED
            else m.group(0)
        ),
        text,
    )
    text = _FERNET_TOKEN.sub(REDACTED, text)
    text = _LONG_BASE64.sub(REDACTED, text)
    text = _FERNET_KEY.sub(REDACTED, text)
    text = _AWS_SECRET.sub(_aws_secret, text)
    return text


def redact(value: Any) -> Any:
    """A copy of `value` (str, mapping, sequence, scalar) with everything secret-looking removed.

    Mapping values under secret-sounding keys are replaced whole; anything that is not a plain
    JSON type becomes its redacted `str()`.
    """
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {
            redact_text(str(k)): (REDACTED if _SENSITIVE_KEY.search(str(k)) and v not in (None, "") else redact(v))
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple, set, frozenset)):
        return [redact(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return redact_text(str(value))
