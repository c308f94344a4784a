"""Environment configuration, read lazily so that importing the package needs no secrets."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def dagster_home() -> Path:
    return Path(os.environ.get("DAGSTER_HOME") or PROJECT_ROOT / ".dagster_home")


def database_url() -> str:
    """`DATABASE_URL`, else a SQLite file under `$DAGSTER_HOME`."""
    url = os.environ.get("DATABASE_URL")
    if url:
        return url
    home = dagster_home()
    home.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{home / 'spot_pipelines.db'}"


def encryption_keys_from_env() -> str | None:
    return os.environ.get("ENCRYPTION_KEY")


def aws_retry_delay_seconds() -> float:
    """First delay of the RetryPolicy on AWS-calling assets (exponential with jitter after it)."""
    return float(os.environ.get("SPOT_PIPELINES_AWS_RETRY_DELAY", "10"))
