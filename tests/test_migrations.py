import subprocess
import sys

import pytest
from alembic import command
from sqlalchemy import inspect

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
