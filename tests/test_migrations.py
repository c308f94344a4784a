import subprocess
import sys

import pytest
from alembic import command
from click.testing import CliRunner
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError

from spot_pipelines.cli import main
from spot_pipelines.core.accounts import DuplicateAwsAccountsError
from spot_pipelines.core.clock import utcnow
from spot_pipelines.db.engine import alembic_config, current_revisions, get_engine, head_revisions, upgrade
from tests.conftest import fresh_pg_database

FOUNDATION_TABLES = {"accounts", "instances", "system_logs"}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def fresh_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh.db'}"
        return
    with fresh_pg_database("sp_migrate") as url:
        yield url


def test_upgrade_downgrade_upgrade_round_trip(fresh_url):
    upgrade(fresh_url)
    engine = get_engine(fresh_url)
    assert current_revisions(engine) == head_revisions()
    assert FOUNDATION_TABLES <= set(inspect(engine).get_table_names())
    command.downgrade(alembic_config(fresh_url), "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    upgrade(fresh_url)
    assert current_revisions(engine) == head_revisions()


def test_concurrent_first_migrations_from_two_processes(fresh_url):
    code = f"from spot_pipelines.db.engine import upgrade; upgrade({fresh_url!r})"
    procs = [subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE) for _ in range(2)]
    errors = [p.communicate(timeout=120)[1].decode() for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors
    assert current_revisions(get_engine(fresh_url)) == head_revisions()


def seed_at_0005(url: str, accounts: list[tuple[str, str]]) -> dict:
    """Accounts (name, aws id), each with one instance, written at the revision before 0006."""
    command.upgrade(alembic_config(url), "0005")
    now = utcnow()
    with get_engine(url).begin() as conn:
        for name, aws_id in accounts:
            account_id = conn.execute(
                text(
                    "INSERT INTO accounts (name, aws_account_id, auth_method, status, created_at, updated_at) "
                    "VALUES (:n, :a, 'role', 'active', :t, :t) RETURNING id"
                ),
                {"n": name, "a": aws_id, "t": now},
            ).scalar()
            conn.execute(
                text(
                    "INSERT INTO instances (account_id, instance_id, region, instance_type, lifecycle, state, platform, "
                    "tags, first_seen_at, last_seen_at) VALUES (:id, :i, 'eu-west-1', 'm5.large', 'on-demand', "
                    "'running', 'Linux/UNIX', '{}', :t, :t)"
                ),
                {"id": account_id, "i": f"i-{name}", "t": now},
            )
    return stored(url)


def stored(url: str) -> dict:
    with get_engine(url).connect() as conn:
        return {
            "accounts": conn.execute(text("SELECT * FROM accounts ORDER BY id")).all(),
            "instances": conn.execute(text("SELECT * FROM instances ORDER BY instance_id")).all(),
        }


def test_0006_refuses_existing_duplicates_naming_them_and_changes_nothing(fresh_url, monkeypatch):
    before = seed_at_0005(
        fresh_url, [("payments", "111122223333"), ("payments-old", "111122223333"), ("analytics", "123456789012")]
    )
    with pytest.raises(DuplicateAwsAccountsError) as refused:
        upgrade(fresh_url)
    message = str(refused.value)
    assert "AWS account 111122223333 is onboarded as 'payments' (id 1) and 'payments-old' (id 2)" in message
    assert "123456789012" not in message and "accounts remove" in message and "\n" not in message
    assert current_revisions(get_engine(fresh_url)) == {"0005"} and stored(fresh_url) == before

    # The operator's way out: `accounts list` and `accounts remove` work while the upgrade is refused.
    monkeypatch.setenv("DATABASE_URL", fresh_url)
    runner = CliRunner()
    assert "payments-old" in runner.invoke(main, ["accounts", "list"]).output
    assert runner.invoke(main, ["accounts", "remove", "payments-old", "--yes"]).exit_code == 0
    assert runner.invoke(main, ["db", "upgrade"]).exit_code == 0
    assert current_revisions(get_engine(fresh_url)) == head_revisions()
    after = stored(fresh_url)
    assert after["accounts"] == [r for r in before["accounts"] if r.name != "payments-old"]
    assert after["instances"] == [r for r in before["instances"] if r.instance_id != "i-payments-old"]


def test_0006_without_duplicates_keeps_every_row_and_enforces_one_row_per_aws_account(fresh_url):
    before = seed_at_0005(fresh_url, [("payments", "111122223333"), ("analytics", "123456789012")])
    upgrade(fresh_url)
    assert current_revisions(get_engine(fresh_url)) == head_revisions() and stored(fresh_url) == before
    with pytest.raises(IntegrityError), get_engine(fresh_url).begin() as conn:
        conn.execute(
            text(
                "INSERT INTO accounts (name, aws_account_id, auth_method, status, created_at, updated_at) "
                "VALUES ('payments-2', '111122223333', 'role', 'pending', :t, :t)"
            ),
            {"t": utcnow()},
        )
    assert stored(fresh_url) == before
