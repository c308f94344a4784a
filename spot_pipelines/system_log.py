"""The structured log on stdout: one logger setup (JSON or text), every line redacted.

    from spot_pipelines.system_log import get_logger

    log = get_logger("interruptions")            # stdlib logger "spot_pipelines.interruptions"
    log.info("drained queue", extra={"details": {"events": 12}})

Environment: `LOG_FORMAT` = `json` (default) | `text`; `LOG_LEVEL` = `INFO` (default), `DEBUG`, …

Every line written to stdout passes `core.redaction.redact()`; rows in `system_logs` are written by
`spot_pipelines.db.system_log.write_system_log`, redacted the same way.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from datetime import datetime, timezone
from typing import Any

from spot_pipelines.core.redaction import redact, redact_text
from spot_pipelines.settings import settings

ROOT_LOGGER = "spot_pipelines"
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


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


def component_of(record: logging.LogRecord) -> str:
    name = record.name
    return name[len(ROOT_LOGGER) + 1 :] if name.startswith(ROOT_LOGGER + ".") else name


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "component": component_of(record),
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
        line = f"{ts} {record.levelname:<8} {component_of(record)}: {record.getMessage()}"
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
WIRE_LOGGERS = (
    "botocore.endpoint",
    "botocore.parsers",
    "botocore.auth",
    "botocore.hooks",
    "botocore.retryhandler",
    "botocore.httpsession",
    "urllib3.connectionpool",
)


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
        current = settings()
        handler.setFormatter(TextFormatter() if current.log_format == "text" else JsonFormatter())
        root.setLevel(current.log_level if current.log_level in LEVELS else "INFO")
        root.addHandler(handler)
        _handler = handler
        return handler


def get_logger(component: str) -> logging.Logger:
    """The stdlib logger of one component; pass structured context as `extra={"details": {...}}`."""
    configure()
    return logging.getLogger(f"{ROOT_LOGGER}.{component}")
