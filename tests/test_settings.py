"""The one settings source: read from the environment when asked (never at import), bad values named, and no
other module reading the environment itself."""

from __future__ import annotations

import ast
from datetime import date
from pathlib import Path

import pytest

from spot_pipelines.core.errors import ValidationError
from spot_pipelines.settings import DEFAULT_PRICE_HISTORY_START, Settings, settings

PACKAGE = Path(__file__).resolve().parents[1] / "spot_pipelines"
# Modules that touch os.environ for a reason other than reading configuration.
ENVIRON_ALLOWED = {
    "settings.py": "the one settings source",
    "core/redaction.py": "scans every variable's value to redact secrets from logs; not configuration",
    "instance_storage.py": "Dagster builds the instance storage from dagster.yaml before our code location "
    "loads; it takes the environment as a parameter to select SQLite or DAGSTER_PG_*",
    "demo/": "the demo sets variables for the processes it starts (emulator endpoints, queue URL, DAGSTER_HOME)",
}


def test_settings_are_read_when_asked_not_at_import(monkeypatch):
    monkeypatch.setenv("REDIS_URL", "redis://first:6379/0")
    assert settings().redis_url == "redis://first:6379/0"
    monkeypatch.setenv("REDIS_URL", "redis://second:6379/0")
    monkeypatch.setenv("REDIS_QUEUE_KEYS", " a, b ,,")
    monkeypatch.setenv("SPOT_PRICE_HISTORY_START", "2025-06-01")
    monkeypatch.setenv("LOG_FORMAT", "TEXT")
    current = settings()
    assert (current.redis_url, current.redis_queue_keys) == ("redis://second:6379/0", ("a", "b"))
    assert current.price_history_start == date(2025, 6, 1)
    assert current.log_format == "text"


def test_defaults_when_unset():
    current = Settings.from_env({})
    assert current.price_history_start == DEFAULT_PRICE_HISTORY_START
    assert (current.database_url, current.redis_url, current.redis_queue_keys) == (None, None, None)
    assert (current.aws_retry_delay_s, current.log_format, current.log_level) == (10.0, "json", "INFO")
    assert current.in_cluster is False
    assert current.interruption_wait_s == 20  # long polling unless told otherwise


@pytest.mark.parametrize(
    "name, value, problem",
    [
        ("SPOT_PRICE_HISTORY_START", "01/06/2025", "is not a YYYY-MM-DD date"),
        ("SPOT_PIPELINES_AWS_RETRY_DELAY", "soon", "is not a number of seconds"),
        ("SPOT_INTERRUPTION_WAIT_S", "21", "is not 0 to 20 seconds"),
        ("SPOT_INTERRUPTION_WAIT_S", "long", "is not 0 to 20 seconds"),
    ],
)
def test_a_bad_value_names_the_variable(name, value, problem):
    with pytest.raises(ValidationError) as caught:
        Settings.from_env({name: value})
    assert str(caught.value).splitlines()[0].startswith(name) and problem in str(caught.value)


def test_the_encryption_key_is_not_a_setting(monkeypatch):
    monkeypatch.setenv("ENCRYPTION_KEY", "a-secret-that-must-not-show-0123456789")
    assert "a-secret-that-must-not-show" not in repr(settings())


def _reads_environment(path: Path) -> list[int]:
    lines = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv", "environb"):
            lines.append(node.lineno)
        elif (
            isinstance(node, ast.ImportFrom)
            and node.module == "os"
            and {a.name for a in node.names} & {"environ", "getenv"}
        ):
            lines.append(node.lineno)
    return lines


def test_no_module_but_settings_reads_the_environment():
    offenders = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        if any(
            relative == allowed or (allowed.endswith("/") and relative.startswith(allowed))
            for allowed in ENVIRON_ALLOWED
        ):
            continue
        if lines := _reads_environment(path):
            offenders[relative] = lines
    assert offenders == {}, f"read the environment through spot_pipelines.settings: {offenders}"
