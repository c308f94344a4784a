"""The structured system log: one logger setup for stdout (JSON or text) and rows in `system_logs`.

    from spot_pipelines.system_log import get_logger, write_system_log

    log = get_logger("interruptions")            # stdlib logger "spot_pipelines.interruptions"
    log.info("drained queue", extra={"details": {"events": 12}})
    with session.begin():
        write_system_log(session, "health", "WARNING", "redis degraded", details={...}, run_id=run_id)

Environment: `LOG_FORMAT` = `json` (default) | `text`; `LOG_LEVEL` = `INFO` (default), `DEBUG`, …

Nothing that looks like a secret can be logged: every line written to stdout and every
`system_logs` row passes `redact()`, which removes AWS secret keys (40-char base64ish), session
tokens (long base64 runs), Fernet keys and tokens, bearer tokens and JWTs, passwords in URLs, the values of dict keys
named like secrets, and the current value of `ENCRYPTION_KEY` and of every environment variable
whose name contains SECRET, TOKEN or PASSWORD.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import threading
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from sqlalchemy.orm import Session

from spot_pipelines.core.clock import utcnow
from spot_pipelines.db.system_log import SystemLog

ROOT_LOGGER = "spot_pipelines"
REDACTED = "[REDACTED]"
MIN_ENV_SECRET_LENGTH = 8  # shorter values ("testing", "1") would shred ordinary words
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

_SENSITIVE_ENV_NAME = re.compile(r"SECRET|TOKEN|PASSWORD|PASSWD", re.IGNORECASE)
_SENSITIVE_KEY = re.compile(
    r"secret|token|password|passwd|credential|encryption_key|private_key|api_key|authorization",
    re.IGNORECASE)
# `key=value` / `"key": "value"` pairs whose key names a secret.
_SENSITIVE_PAIR = re.compile(
    r"""(?P<key>["']?[\w.-]*(?:secret|token|password|passwd|encryption_key|private_key|authorization)[\w.-]*["']?)"""
    r"""(?P<sep>\s*[:=]\s*)(?P<quote>["']?)(?P<value>[^\s"',;}]+)""",
    re.IGNORECASE)
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
        lambda m: m.group("key") + m.group("sep") + m.group("quote") + REDACTED
        if m.group("value") != REDACTED else m.group(0), text)
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
        return {redact_text(str(k)): (REDACTED if _SENSITIVE_KEY.search(str(k)) and v not in (None, "")
                                      else redact(v))
                for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [redact(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return redact_text(str(value))


class RedactionFilter(logging.Filter):
    """Rewrites a record in place so no handler after it sees a secret (message, args, details,
    traceback)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not lose the line
            message = f"{record.msg!r} {record.args!r}"
        record.msg = redact_text(message)
        record.args = None
        if getattr(record, "details", None) is not None:
            record.details = redact(record.details)
        if record.exc_info:
            record.exc_text = redact_text(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        if record.stack_info:
            record.stack_info = redact_text(record.stack_info)
        return True


def _component(record: logging.LogRecord) -> str:
    name = record.name
    return name[len(ROOT_LOGGER) + 1:] if name.startswith(ROOT_LOGGER + ".") else name


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "component": _component(record),
            "message": record.getMessage(),
        }
        for field in ("details", "run_id"):
            if getattr(record, field, None) is not None:
                payload[field] = getattr(record, field)
        if record.exc_text:
            payload["exception"] = record.exc_text
        # Redacting the serialised line as well covers anything a caller attached some other way.
        return redact_text(json.dumps(payload, default=str))


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.fromtimestamp(record.created, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        line = f"{ts} {record.levelname:<8} {_component(record)}: {record.getMessage()}"
        if getattr(record, "run_id", None):
            line += f" run_id={record.run_id}"
        if getattr(record, "details", None) is not None:
            line += " " + json.dumps(record.details, default=str, sort_keys=True)
        if record.exc_text:
            line += "\n" + record.exc_text
        return redact_text(line)


_configured_lock = threading.Lock()
_handler: logging.Handler | None = None


# Third-party loggers that write wire contents at DEBUG: botocore logs request headers (the
# session token) and response bodies (AssumeRole's temporary secret key); urllib3 logs URLs.
WIRE_LOGGERS = ("botocore.endpoint", "botocore.parsers", "botocore.auth", "botocore.hooks",
                "botocore.retryhandler", "botocore.httpsession", "urllib3.connectionpool")


def protect_wire_loggers() -> None:
    """Redact every record those loggers create, whatever level or handler anyone configures."""
    for name in WIRE_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactionFilter) for f in logger.filters):
            logger.addFilter(RedactionFilter())


def configure(stream=None, *, force: bool = False) -> logging.Handler:
    """Install the stdout handler on the `spot_pipelines` logger (once; `force` re-reads the env)."""
    global _handler
    with _configured_lock:
        root = logging.getLogger(ROOT_LOGGER)
        if _handler is not None and not force:
            return _handler
        if _handler is not None:
            root.removeHandler(_handler)
        handler = logging.StreamHandler(stream or sys.stdout)
        handler.addFilter(RedactionFilter())
        fmt = os.environ.get("LOG_FORMAT", "json").strip().lower()
        handler.setFormatter(TextFormatter() if fmt == "text" else JsonFormatter())
        level = os.environ.get("LOG_LEVEL", "INFO").strip().upper()
        root.setLevel(level if level in LEVELS else "INFO")
        root.addHandler(handler)
        _handler = handler
        return handler


def get_logger(component: str) -> logging.Logger:
    """The stdlib logger of one component; pass structured context as `extra={"details": {...}}`."""
    configure()
    return logging.getLogger(f"{ROOT_LOGGER}.{component}")


def _level_name(level: str | int) -> str:
    name = logging.getLevelName(level) if isinstance(level, int) else str(level).upper()
    if name == "WARN":
        name = "WARNING"
    if name not in LEVELS:
        raise ValueError(f"level: {level!r} is not one of {', '.join(LEVELS)}")
    return name


def _json_safe(details: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if details is None:
        return None
    return json.loads(json.dumps(redact(dict(details)), default=str))


def system_log_row(component: str, level: str | int, message: str, *, details: Mapping[str, Any] | None = None,
                   run_id: str | None = None, created_at: datetime | None = None) -> dict[str, Any]:
    """A redacted `system_logs` row as a dict (for bulk inserts)."""
    return {
        "created_at": created_at or utcnow(),
        "component": component[:64],
        "level": _level_name(level),
        "message": redact_text(message),
        "details": _json_safe(details),
        "run_id": run_id,
    }


def write_system_log(session: Session, component: str, level: str | int, message: str, *,
                     details: Mapping[str, Any] | None = None, run_id: str | None = None,
                     echo: bool = True) -> SystemLog:
    """Add a redacted `system_logs` row to the session (the caller commits) and echo it to stdout."""
    row = SystemLog(**system_log_row(component, level, message, details=details, run_id=run_id))
    session.add(row)
    if echo:
        get_logger(component).log(logging.getLevelName(row.level), row.message,
                                  extra={"details": row.details, "run_id": run_id})
    return row


def record(db_url: str, component: str, level: str | int, message: str, *,
           details: Mapping[str, Any] | None = None, run_id: str | None = None) -> None:
    """`write_system_log` in its own transaction on the app database at `db_url`."""
    from spot_pipelines.db.engine import ensure_schema, session_factory

    ensure_schema(db_url)
    with session_factory(db_url)() as session, session.begin():
        write_system_log(session, component, level, message, details=details, run_id=run_id)


class SystemLogHandler(logging.Handler):
    """A logging handler that also stores records (WARNING and above by default) in `system_logs`."""

    def __init__(self, db_url: str, level: int = logging.WARNING):
        super().__init__(level)
        self.db_url = db_url
        self.addFilter(RedactionFilter())

    def emit(self, record: logging.LogRecord) -> None:
        try:
            details = getattr(record, "details", None)
            if record.exc_text:
                details = {**(details or {}), "exception": record.exc_text}
            from spot_pipelines.db.engine import ensure_schema, session_factory

            ensure_schema(self.db_url)
            with session_factory(self.db_url)() as session, session.begin():
                write_system_log(session, _component(record), record.levelname, record.getMessage(),
                                 details=details, run_id=getattr(record, "run_id", None), echo=False)
        except Exception:
            self.handleError(record)
