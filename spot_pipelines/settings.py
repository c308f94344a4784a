"""The one settings source: every environment variable the package reads, read when `settings()` is called
(never at import), so importing the package needs no configuration and tests can change the environment.

Secrets are not settings: resources take them as Dagster `EnvVar`s (e.g. ENCRYPTION_KEY), so they never land
in a repr, a log line or run config.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from spot_pipelines.core.errors import ValidationError

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# The earliest day the product supports: the partition set starts here (fixed, so it never moves with the clock).
DEFAULT_PRICE_HISTORY_START = date(2025, 1, 1)


@dataclass(frozen=True)
class Settings:
    dagster_home: Path
    database_url: str | None  # None: a SQLite file under dagster_home (see `database_url()`)
    aws_retry_delay_s: float  # first delay of the RetryPolicy on AWS-calling assets
    price_history_start: date  # first daily partition of the market data
    interruption_queue_url: str | None
    interruption_wait_s: int  # SQS long-poll wait of the interruption sensor (0: short polling)
    aws_region: str | None
    redis_url: str | None
    redis_queue_keys: tuple[str, ...] | None  # None: the resource's default keys
    kubeconfig: str | None
    in_cluster: bool  # KUBERNETES_SERVICE_HOST is set inside a pod
    log_format: str  # "json" or "text"
    log_level: str

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ

        def get(name: str) -> str | None:
            return (env.get(name) or "").strip() or None

        keys = get("REDIS_QUEUE_KEYS")
        return cls(
            dagster_home=Path(get("DAGSTER_HOME") or PROJECT_ROOT / ".dagster_home"),
            database_url=get("DATABASE_URL"),
            aws_retry_delay_s=_parse(
                get("SPOT_PIPELINES_AWS_RETRY_DELAY") or "10",
                "SPOT_PIPELINES_AWS_RETRY_DELAY",
                float,
                "is not a number of seconds",
            ),
            price_history_start=_parse(
                get("SPOT_PRICE_HISTORY_START"),
                "SPOT_PRICE_HISTORY_START",
                date.fromisoformat,
                "is not a YYYY-MM-DD date",
            )
            or DEFAULT_PRICE_HISTORY_START,
            interruption_queue_url=get("SPOT_INTERRUPTION_QUEUE_URL"),
            interruption_wait_s=_parse(
                get("SPOT_INTERRUPTION_WAIT_S") or "20", "SPOT_INTERRUPTION_WAIT_S", _sqs_wait, "is not 0 to 20 seconds"
            ),
            aws_region=get("AWS_DEFAULT_REGION") or get("AWS_REGION"),
            redis_url=get("REDIS_URL"),
            redis_queue_keys=tuple(k.strip() for k in keys.split(",") if k.strip()) if keys else None,
            kubeconfig=get("KUBECONFIG"),
            in_cluster=bool(get("KUBERNETES_SERVICE_HOST")),
            log_format=(get("LOG_FORMAT") or "json").lower(),
            log_level=(get("LOG_LEVEL") or "INFO").upper(),
        )


def _parse(raw, name, parse, complaint):
    if raw is None:
        return None
    try:
        return parse(raw)
    except ValueError:
        raise ValidationError(name, f"{raw!r} {complaint}") from None


def _sqs_wait(raw: str) -> int:
    value = int(raw)
    if not 0 <= value <= 20:  # SQS's WaitTimeSeconds range
        raise ValueError(raw)
    return value


def settings() -> Settings:
    """The settings as the environment stands now (cheap; read afresh on every call)."""
    return Settings.from_env()


def dagster_home() -> Path:
    return settings().dagster_home


def database_url() -> str:
    """`DATABASE_URL`, else a SQLite file under `$DAGSTER_HOME`."""
    current = settings()
    if current.database_url:
        return current.database_url
    current.dagster_home.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{current.dagster_home / 'spot_pipelines.db'}"


def encryption_keys_from_env() -> str | None:
    """For the `keys` CLI only (resources take ENCRYPTION_KEY as an EnvVar); not a Settings field, so a
    Settings repr can never show it."""
    return os.environ.get("ENCRYPTION_KEY")


# The notifications resource's fields and the variables they fall back to. A Slack token and a webhook URL are
# secrets, so none of them is a Settings field (a Settings repr can never show them).
NOTIFICATION_ENV = {
    "slack_token": "SLACK_BOT_TOKEN",
    "slack_channel": "SLACK_CHANNEL",
    "slack_base_url": "SLACK_API_BASE_URL",
    "webhook_url": "NOTIFICATIONS_WEBHOOK_URL",
    "min_monthly_savings_usd": "NOTIFICATIONS_MIN_MONTHLY_SAVINGS_USD",
}


def notification_setting(field: str) -> str | None:
    """The env value behind one of the notifications resource's fields (NOTIFICATION_ENV), None when unset."""
    return (os.environ.get(NOTIFICATION_ENV[field]) or "").strip() or None


def aws_retry_delay_seconds() -> float:
    """First delay of the RetryPolicy on AWS-calling assets (exponential with jitter after it)."""
    return settings().aws_retry_delay_s
