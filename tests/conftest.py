"""Shared fixtures: hermetic environment, SQLite and real-Postgres app databases, moto AWS."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator

import psycopg2
import pytest
from cryptography.fernet import Fernet
from moto import mock_aws
from sqlalchemy import text

# Dagster's RetryPolicy really sleeps in-process: keep the AWS retry delay short in tests.
os.environ.setdefault("SPOT_PIPELINES_AWS_RETRY_DELAY", "0.01")
# The interruption sensor long-polls SQS until its 40 s budget: tests short-poll unless they ask otherwise.
os.environ.setdefault("SPOT_INTERRUPTION_WAIT_S", "0")

# SPOT_PIPELINES_CLOCK_SHIFT_DAYS=400 (`make test-future`) runs the whole test world that far ahead: importing
# clock_shift moves this process's clock before any test module reads it, and its folder on PYTHONPATH makes
# every Python subprocess a test starts travel the same way (see tests/clock_shift/sitecustomize.py).
try:
    from tests.clock_shift import sitecustomize as clock_shift  # noqa: E402
except ValueError as bad_shift:
    raise pytest.UsageError(str(bad_shift)) from None
if clock_shift.TRAVELLER is not None:
    os.environ["PYTHONPATH"] = os.pathsep.join(
        filter(None, [os.path.dirname(clock_shift.__file__), os.environ.get("PYTHONPATH")])
    )

from spot_pipelines.db.engine import ensure_schema, get_engine  # noqa: E402

PG_ADMIN_DSN = os.environ.get("TEST_PG_ADMIN_DSN", "host=127.0.0.1 port=5432 user=postgres dbname=postgres")
PG_URL_TEMPLATE = os.environ.get("TEST_PG_URL_TEMPLATE", "postgresql+psycopg2://postgres@127.0.0.1:5432/{db}")
ISOLATED_ENV = (
    "DATABASE_URL",
    "ENCRYPTION_KEY",
    "AWS_ENDPOINT_URL",
    "DAGSTER_PG_URL",
    "DAGSTER_PG_HOST",
    "AWS_PROFILE",
    "KUBECONFIG",
    "REDIS_URL",
)


@pytest.fixture(autouse=True)
def hermetic_env(monkeypatch, tmp_path):
    for name in ISOLATED_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    (tmp_path / "dagster_home").mkdir()
    # Platform credentials for moto (and for assuming account roles); never real ones.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


def _admin(sql: str, dsn: str = PG_ADMIN_DSN) -> None:
    """One autocommit statement (CREATE/DROP DATABASE cannot run in a transaction)."""
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
    finally:
        conn.close()


@contextlib.contextmanager
def fresh_pg_database(prefix: str) -> Iterator[str]:
    """A uniquely named Postgres database (parallel sessions never collide), dropped afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    _admin(f'CREATE DATABASE "{name}"')
    url = PG_URL_TEMPLATE.format(db=name)
    try:
        yield url
    finally:
        get_engine(url).dispose()
        _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A fresh Postgres database for this pytest session."""
    with fresh_pg_database("sp_test") as url:
        yield url


@pytest.fixture
def pg_url(pg_database) -> str:
    """The session's Postgres app database, migrated and emptied for this test."""
    engine = ensure_schema(pg_database)
    with engine.begin() as conn:
        tables = [
            r[0]
            for r in conn.execute(
                text("SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'alembic_version'")
            )
        ]
        if tables:
            conn.execute(text("TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " RESTART IDENTITY CASCADE"))
    return pg_database


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    url = f"sqlite:///{tmp_path / 'app.db'}"
    ensure_schema(url)
    return url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request) -> str:
    """Runs the test once on SQLite and once on the real Postgres."""
    return request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")


@pytest.fixture(scope="session")
def dagster_pg_url() -> Iterator[str]:
    """A fresh Postgres database for Dagster's own run/event/schedule storage."""
    with fresh_pg_database("sp_dagster") as url:
        yield url


@pytest.fixture
def encryption_key(monkeypatch) -> str:
    key = Fernet.generate_key().decode()
    monkeypatch.setenv("ENCRYPTION_KEY", key)
    return key


@pytest.fixture
def aws():
    """moto in-process AWS: every boto3 call in the test goes to the emulator."""
    with mock_aws():
        yield
