"""Dagster's own storage, chosen by the environment (spot_pipelines.instance_storage).

A run materialized through one instance is read back, with its materialization, by a second
instance loaded from the same dagster.yaml: what the webserver and daemon do with a run that a
run worker wrote.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import dagster as dg
import pytest
from sqlalchemy.engine import make_url

from spot_pipelines.instance_storage import dagster_pg_url

REPO = Path(__file__).resolve().parents[1]


@dg.asset(group_name="storage_check")
def storage_probe() -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata={"dagster/row_count": 3, "note": "written by the first instance"})


def repo_instance() -> dg.DagsterInstance:
    home = Path(os.environ["DAGSTER_HOME"])
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    return dg.DagsterInstance.from_config(str(home))


def materialize_then_read_back() -> tuple[dg.DagsterInstance, str]:
    writer = repo_instance()
    try:
        result = dg.materialize([storage_probe], instance=writer)
        assert result.success
        run_id = result.run_id
    finally:
        writer.dispose()

    reader = repo_instance()
    run = reader.get_run_by_id(run_id)
    assert run is not None and run.status == dg.DagsterRunStatus.SUCCESS
    event = reader.get_latest_materialization_event(dg.AssetKey("storage_probe"))
    assert event is not None and event.run_id == run_id
    assert event.asset_materialization.metadata["note"].value == "written by the first instance"
    events = [r.event_log_entry.dagster_event for r in reader.get_records_for_run(run_id).records]
    assert [e.event_type for e in events if e is not None][-1] == dg.DagsterEventType.RUN_SUCCESS
    return reader, run_id


@pytest.mark.postgres
def test_run_written_to_postgres_is_read_back_by_a_second_instance(monkeypatch, dagster_pg_url):
    monkeypatch.setenv("DAGSTER_PG_URL", dagster_pg_url)
    reader, run_id = materialize_then_read_back()
    try:
        assert type(reader.run_storage).__name__ == "PostgresRunStorage"
        # No embedded SQLite storage was created (compute logs still live under $DAGSTER_HOME).
        assert not list(Path(os.environ["DAGSTER_HOME"]).rglob("*.db"))
        from sqlalchemy import text

        with reader.run_storage.connect() as conn:
            database = conn.execute(text("SELECT current_database()")).scalar_one()
            stored = conn.execute(text("SELECT count(*) FROM runs WHERE run_id = :id"), {"id": run_id}).scalar_one()
        assert database == make_url(dagster_pg_url).database and stored == 1
    finally:
        reader.dispose()


def test_run_written_to_embedded_sqlite_is_read_back_by_a_second_instance():
    reader, _ = materialize_then_read_back()
    try:
        assert type(reader.run_storage).__name__ == "SqliteRunStorage"
        assert (Path(os.environ["DAGSTER_HOME"]) / "storage" / "history" / "runs.db").is_file()
    finally:
        reader.dispose()


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, None),
        ({"DAGSTER_PG_URL": "postgresql://u:p@db:5432/dagster"}, "postgresql+psycopg2://u:p@db:5432/dagster"),
        ({"DAGSTER_PG_URL": "postgresql+psycopg2://u@db/d"}, "postgresql+psycopg2://u@db/d"),
        (
            {
                "DAGSTER_PG_HOST": "db",
                "DAGSTER_PG_USER": "dag ster",
                "DAGSTER_PG_PASSWORD": "p@ss/word",
                "DAGSTER_PG_DB": "runs",
            },
            "postgresql+psycopg2://dag%20ster:p%40ss%2Fword@db:5432/runs",
        ),
        ({"DAGSTER_PG_HOST": "db"}, "postgresql+psycopg2://postgres@db:5432/dagster"),
    ],
)
def test_dagster_pg_url_from_the_environment(environ, expected):
    assert dagster_pg_url(environ) == expected
