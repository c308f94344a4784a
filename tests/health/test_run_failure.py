"""run_failure_alert_sensor writes a system_logs row with the run, the asset and the error."""

import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import dagster as dg
import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select

from spot_pipelines.core.clock import utcnow
from spot_pipelines.db.engine import session_factory
from spot_pipelines.db.system_log import SystemLog
from spot_pipelines.definitions import defs
from spot_pipelines.resources.app_database import AppDatabase
from spot_pipelines.sensors import health as health_sensors
from spot_pipelines.sensors.health import (
    RETRY_GRACE,
    run_failure_alert_sensor,
    unretried_failure_alert_sensor,
    unretried_failures,
)

SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


@dg.asset(name="spot_price_history_demo")
def broken_asset() -> None:
    raise RuntimeError(f"DescribeSpotPriceHistory exploded with key {SECRET}")


def test_failed_run_is_logged_with_run_asset_and_redacted_error(db_url):
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize(
        [broken_asset], instance=instance, raise_on_error=False, tags={"spot_pipelines/trigger": "t"}
    )
    assert not result.success
    run = instance.get_run_by_id(result.run_id)
    failure = next(e for e in result.all_events if e.event_type_value == "PIPELINE_FAILURE")
    context = dg.build_run_status_sensor_context(
        sensor_name="run_failure_alert_sensor",
        dagster_event=failure,
        dagster_instance=instance,
        dagster_run=run,
        resources={"app_db": AppDatabase(url=db_url)},
    ).for_run_failure()
    run_failure_alert_sensor(context)

    with session_factory(db_url)() as session:
        row = session.scalars(select(SystemLog).where(SystemLog.component == "run_failure")).one()
    assert row.level == "ERROR" and row.run_id == result.run_id
    assert "spot_price_history_demo" in row.message and "DescribeSpotPriceHistory exploded" in row.message
    assert row.details["assets"] == ["spot_price_history_demo"]
    assert row.details["failed_steps"][0]["step"] == "spot_price_history_demo"
    assert "RuntimeError" in row.details["failed_steps"][0]["error"]
    assert row.details["tags"] == {"spot_pipelines/trigger": "t"}
    assert SECRET not in row.message + str(row.details)


# --- runs started outside the workspace, and runs left to the retry daemon ------------------------------------

REPO = Path(__file__).resolve().parents[2]
DAGSTER = str(Path(sys.executable).with_name("dagster"))


@dg.asset(name="retry_of_a_failed_run")
def retry_stand_in() -> None:
    """A real run standing in for the daemon's re-execution: what matters is its parent_run_id tag."""


def shipped_instance() -> dg.DagsterInstance:
    home = Path(os.environ["DAGSTER_HOME"])
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    return dg.DagsterInstance.from_config(str(home))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def dagster_storage(request, monkeypatch) -> str:
    """The Dagster instance on its embedded SQLite, or on dagster-postgres (DAGSTER_PG_URL), as deployed."""
    if request.param == "postgres":
        monkeypatch.setenv("DAGSTER_PG_URL", request.getfixturevalue("dagster_pg_url"))
    return request.param


def dagster_cli(*args: str, app_db_url: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DATABASE_URL": app_db_url, "ENCRYPTION_KEY": Fernet.generate_key().decode()}
    return subprocess.run([DAGSTER, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=240)


def tick(sensor, instance, db_url: str, cursor: str | None):
    """One tick as the daemon runs it: inside the spot_pipelines repository (a context without one would
    match runs that have no origin either)."""
    return sensor.evaluate_tick(
        dg.build_sensor_context(
            instance=instance,
            cursor=cursor,
            repository_def=defs.get_repository_def(),
            repository_name=defs.get_repository_def().name,
            resources={"app_db": AppDatabase(url=db_url)},
        )
    )


def alert_rows(db_url: str) -> list[SystemLog]:
    with session_factory(db_url)() as session:
        return list(session.scalars(select(SystemLog).where(SystemLog.component == "run_failure")))


def test_shipped_dagster_yaml_enables_run_retries():
    instance = shipped_instance()
    assert instance.run_retries_enabled and instance.run_retries_max_retries == 2


def test_run_started_with_dagster_job_execute_is_alerted(tmp_path, sqlite_url, dagster_storage):
    instance = shipped_instance()
    cursor = tick(run_failure_alert_sensor, instance, sqlite_url, None).cursor  # the daemon's first tick
    config = tmp_path / "bad.yaml"
    config.write_text("ops:\n  execute_approved:\n    config:\n      retire: bogus\n")
    done = dagster_cli(
        "job",
        "execute",
        "-m",
        "spot_pipelines.definitions",
        "-j",
        "execute_approved_recommendations",
        "-c",
        str(config),
        app_db_url=sqlite_url,
    )
    assert done.returncode != 0 and "resulted in failure" in done.stderr + done.stdout
    run = instance.get_runs(limit=1)[0]
    # What hid it from a location-scoped sensor; and run_retries tags it, though no daemon can retry it.
    assert run.remote_job_origin is None and run.tags["dagster/will_retry"] == "true"

    tick(run_failure_alert_sensor, instance, sqlite_url, cursor)

    [row] = alert_rows(sqlite_url)
    assert row.run_id == run.run_id and row.level == "ERROR"
    assert "execute_approved_recommendations" in row.message and "retire: must be 'terminate' or 'stop'" in row.message


def test_will_retry_run_alerts_only_when_its_retry_never_starts(monkeypatch, sqlite_url):
    instance = shipped_instance()
    cursor = tick(run_failure_alert_sensor, instance, sqlite_url, None).cursor
    # Launched through the workspace (as the UI, schedules and sensors do), so they carry a code-location
    # origin the retry daemon can re-launch; the runs stay queued (no daemon here).
    for _ in range(2):
        launched = dagster_cli(
            "job", "launch", "-w", "workspace.yaml", "-j", "execute_approved_recommendations", app_db_url=sqlite_url
        )
        assert launched.returncode == 0, launched.stderr[-2000:]
    retried, abandoned = reversed(instance.get_runs())  # newest first
    for run in (retried, abandoned):  # what run monitoring reports when a run's pod dies with its spot node
        instance.report_run_failed(run, message="run worker lost: spot node reclaimed")
    retried, abandoned = instance.get_run_by_id(retried.run_id), instance.get_run_by_id(abandoned.run_id)
    assert retried.remote_job_origin is not None
    assert retried.tags["dagster/will_retry"] == abandoned.tags["dagster/will_retry"] == "true"

    tick(run_failure_alert_sensor, instance, sqlite_url, cursor)
    assert alert_rows(sqlite_url) == []  # not final yet: a retry is expected for both

    retry = dg.materialize([retry_stand_in], instance=instance, tags={"dagster/parent_run_id": retried.run_id})
    assert retry.success
    assert unretried_failures(instance, utcnow()) == []  # within the grace period
    late = utcnow() + RETRY_GRACE + timedelta(seconds=1)
    assert [r.run_id for r in unretried_failures(instance, late)] == [abandoned.run_id]

    monkeypatch.setattr(health_sensors, "RETRY_GRACE", timedelta(0))
    tick(unretried_failure_alert_sensor, instance, sqlite_url, None)
    tick(unretried_failure_alert_sensor, instance, sqlite_url, None)  # the next tick alerts nothing twice
    [row] = alert_rows(sqlite_url)
    assert row.run_id == abandoned.run_id and row.details["retry_missing"] is True
    assert "spot node reclaimed" in row.message and "no automatic retry started" in row.message


def run_group(instance: dg.DagsterInstance, root_run_id: str) -> list[dg.DagsterRun]:
    """The root run and its re-executions, oldest first."""
    retries = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/root_run_id": root_run_id}))
    return [instance.get_run_by_id(root_run_id), *reversed(retries)]


# On dagster-postgres only, the deployed storage: the daemon's retry loop is storage-independent, and the SQLite
# twin cost ~45 s of `make test` while the alert tests above already run on both storages.
@pytest.mark.parametrize("dagster_storage", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True)
def test_the_retry_daemon_really_re_executes_a_will_retry_run(dagster_storage, sqlite_url):
    """The shipped dagster.yaml's run_retries, driven by a real dagster-daemon: a run that fails is re-executed
    until max_retries, each retry names its parent, and the last one says no retry follows."""
    instance = shipped_instance()
    unreachable = "postgresql+psycopg2://nobody@127.0.0.1:1/none"  # the run fails at its first query
    launched = dagster_cli(
        "job", "launch", "-w", "workspace.yaml", "-j", "execute_approved_recommendations", app_db_url=unreachable
    )
    assert launched.returncode == 0, launched.stderr[-2000:]
    [root] = instance.get_runs(limit=1)
    env = {**os.environ, "DATABASE_URL": sqlite_url, "ENCRYPTION_KEY": Fernet.generate_key().decode()}
    env["DATABASE_URL"] = unreachable  # the runs the daemon launches inherit it: every attempt fails
    daemon = subprocess.Popen(
        [str(Path(sys.executable).with_name("dagster-daemon")), "run", "-w", "workspace.yaml"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            group = run_group(instance, root.run_id)
            if len(group) == 3 and group[-1].status == dg.DagsterRunStatus.FAILURE:
                break
            time.sleep(2)
    finally:
        os.killpg(daemon.pid, signal.SIGTERM)
        daemon.wait(timeout=60)
    group = run_group(instance, root.run_id)
    assert [r.status for r in group] == [dg.DagsterRunStatus.FAILURE] * 3  # the first run and max_retries=2
    assert [r.tags.get("dagster/parent_run_id") for r in group] == [None, group[0].run_id, group[1].run_id]
    assert [r.tags.get("dagster/will_retry") for r in group] == ["true", "true", "false"]


def test_run_started_with_dagster_asset_materialize_is_alerted(sqlite_url):
    instance = shipped_instance()
    cursor = tick(run_failure_alert_sensor, instance, sqlite_url, None).cursor
    unreachable = "postgresql+psycopg2://nobody@127.0.0.1:1/none"  # the asset fails at its first query
    done = dagster_cli(
        "asset",
        "materialize",
        "-m",
        "spot_pipelines.definitions",
        "--select",
        "spot_recommendations",
        app_db_url=unreachable,
    )
    assert done.returncode != 0
    run = instance.get_runs(limit=1)[0]
    assert run.remote_job_origin is None and run.status == dg.DagsterRunStatus.FAILURE

    tick(run_failure_alert_sensor, instance, sqlite_url, cursor)

    [row] = alert_rows(sqlite_url)
    assert row.run_id == run.run_id and row.details["assets"] == ["spot_recommendations"]
    assert "spot_recommendations" in row.message and "Connection refused" in row.message
