"""The system log: stdout JSON/text, rows in system_logs, and a redaction filter no secret passes."""

import io
import json
import logging

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select, text

from spot_pipelines import system_log
from spot_pipelines.core import redaction
from spot_pipelines.db.engine import session_factory
from spot_pipelines.db.system_log import SystemLog, system_log_row, write_system_log

AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
SESSION_TOKEN = (
    "IQoJb3JpZ2luX2VjEHYaCXVzLWVhc3QtMSJHMEUCIQDxTHxmbFz6yGj4JkLp2wDxb9yAaZq3TcVb7WnL8sQm0QIg"
    "Fq+P1zJt2cVb7WnL8sQm0QIgFq+P1zJt2cVb7WnL8sQm0QIgFq+P1zJt2cVb7WnL8sQm0QIgFq+P1zJt2cVb7Wn"
)


@pytest.fixture
def stream(monkeypatch):
    def make(fmt="json", level="DEBUG"):
        monkeypatch.setenv("LOG_FORMAT", fmt)
        monkeypatch.setenv("LOG_LEVEL", level)
        buf = io.StringIO()
        system_log.configure(buf, force=True)
        return buf

    yield make
    system_log.configure(force=True)


def planted(encryption_key: str) -> list[str]:
    return [
        AWS_SECRET,
        SESSION_TOKEN,
        encryption_key,
        Fernet(encryption_key).encrypt(b"s3cr3t").decode(),
        Fernet.generate_key().decode(),
        "hunter2-db-password",
        "plain-env-token-value-123",
    ]


def test_redact_removes_every_kind_of_secret(monkeypatch, encryption_key):
    monkeypatch.setenv("DB_PASSWORD", "hunter2-db-password")
    monkeypatch.setenv("GITHUB_TOKEN", "plain-env-token-value-123")
    for secret in planted(encryption_key):
        out = redaction.redact_text(f"before {secret} after")
        assert secret not in out, secret
        assert out.startswith("before ") and out.endswith(" after")
    # A rotated key list: each key is redacted on its own too.
    second = Fernet.generate_key().decode()
    monkeypatch.setenv("ENCRYPTION_KEY", f"{encryption_key},{second}")
    assert second not in redaction.redact_text(f"rotating to {second}")
    # Ordinary identifiers survive.
    ordinary = "run 1a2b3c4d-0000-4000-8000-abcdefabcdef i-0123456789abcdef0 3f786850e387550fdab836ed7e6dc881de23001b"
    assert redaction.redact_text(ordinary) == ordinary


def test_redact_structures_and_pairs():
    details = {
        "secret_access_key": "abc",
        "nested": [{"SessionToken": "xyz"}, AWS_SECRET],
        "count": 3,
        "url": "postgresql://app:pw123@db:5432/app",
        "note": 'aws_secret_access_key="q1w2e3"',
    }
    out = redaction.redact(details)
    dumped = json.dumps(out)
    for value in ("abc", "xyz", AWS_SECRET, "pw123", "q1w2e3"):
        assert value not in dumped
    assert out["count"] == 3 and out["url"] == "postgresql://app:[REDACTED]@db:5432/app"
    jwt = "eyJhbGciOiJSUzI1NiIsImtpZCI6IjEyMyJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQifQ.c2lnbmF0dXJl-_x"
    for line in (f"Authorization: Bearer {jwt}", f"token file said {jwt}", "Authorization: Bearer k8s-static-token-42"):
        redacted = redaction.redact_text(line)
        assert jwt not in redacted and "k8s-static-token-42" not in redacted, redacted


def test_json_stdout_carries_component_details_and_no_secret(stream, encryption_key):
    buf = stream("json")
    log = system_log.get_logger("interruptions")
    log.info("drained %s with key %s", "queue", AWS_SECRET, extra={"details": {"events": 3, "token": SESSION_TOKEN}})
    try:
        raise RuntimeError(f"boom {encryption_key}")
    except RuntimeError:
        log.exception("failed")
    lines = [json.loads(line) for line in buf.getvalue().splitlines()]
    assert lines[0]["component"] == "interruptions" and lines[0]["level"] == "INFO"
    assert lines[0]["details"]["events"] == 3
    assert lines[1]["level"] == "ERROR" and "RuntimeError" in lines[1]["exception"]
    assert AWS_SECRET not in buf.getvalue() and SESSION_TOKEN not in buf.getvalue()
    assert encryption_key not in buf.getvalue()


def test_text_format_and_level(stream):
    buf = stream("text", level="WARNING")
    log = system_log.get_logger("health")
    log.info("hidden")
    log.warning("visible", extra={"details": {"a": 1}})
    out = buf.getvalue()
    assert "hidden" not in out and "WARNING  health: visible" in out and '{"a": 1}' in out


def test_redaction_applies_to_child_loggers_of_other_modules(stream):
    buf = stream("json")
    logging.getLogger("spot_pipelines.some.module").warning("creds %s", AWS_SECRET)
    assert "creds [REDACTED]" in buf.getvalue()


def test_system_logs_rows_are_redacted(db_url, encryption_key, monkeypatch, stream):
    buf = stream("json")
    monkeypatch.setenv("MY_API_SECRET", "plain-env-token-value-123")
    with session_factory(db_url)() as session, session.begin():
        write_system_log(
            session,
            "health",
            "warning",
            f"redis key {AWS_SECRET}",
            details={"env": "plain-env-token-value-123", "key": encryption_key},
            run_id="run-1",
        )
    with session_factory(db_url)() as session, session.begin():
        write_system_log(session, "discovery", logging.ERROR, f"failed with {SESSION_TOKEN}")
        write_system_log(session, "k8s", "error", f"stored {encryption_key}", details={"n": 1})
    with session_factory(db_url)() as session:
        rows = session.scalars(select(SystemLog).order_by(SystemLog.id)).all()
        raw = " ".join(str(r) for r in session.execute(text("SELECT * FROM system_logs")).all())
    assert [(r.component, r.level) for r in rows] == [("health", "WARNING"), ("discovery", "ERROR"), ("k8s", "ERROR")]
    assert rows[0].run_id == "run-1" and rows[2].details == {"n": 1}
    for secret in planted(encryption_key)[:3] + ["plain-env-token-value-123"]:
        assert secret not in raw and secret not in buf.getvalue()


def test_bad_level_is_rejected_with_the_field():
    with pytest.raises(ValueError, match="level"):
        system_log_row("x", "LOUD", "m")
