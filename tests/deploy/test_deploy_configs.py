"""The deployment configs load: every dagster.yaml variant as a real DagsterInstance, the Helm
values as YAML with the settings the cluster depends on, and the Dockerfile's references."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import dagster as dg
import pytest
import tomllib
import yaml
from sqlalchemy.engine import make_url

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
SECRET_NAME = "spot-pipelines-secrets"
PG_SECRET_NAME = "dagster-postgresql-secret"


def load_instance(config_file: Path) -> dg.DagsterInstance:
    """The instance a process gets from $DAGSTER_HOME/dagster.yaml (a tmp dir per test)."""
    home = Path(os.environ["DAGSTER_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    shutil.copy(config_file, home / "dagster.yaml")
    return dg.DagsterInstance.get()


def type_name(obj) -> str:
    return type(obj).__name__


def assert_queue_pools_and_retries(instance: dg.DagsterInstance, *, max_runs: int, pool_limit: int) -> None:
    assert isinstance(instance.run_coordinator, dg.QueuedRunCoordinator)
    # What the daemon's queue actually applies (`concurrency:` in dagster.yaml).
    concurrency = instance.get_concurrency_config()
    assert concurrency.run_queue_config.max_concurrent_runs == max_runs
    assert concurrency.pool_config.default_pool_limit == pool_limit
    assert instance.run_retries_enabled and instance.run_retries_max_retries == 2
    # The interruption sensor long-polls for up to 40 s: sensors must not wait on each other.
    assert instance.get_settings("sensors") == {"use_threads": True, "num_workers": 4}


def pg_env(monkeypatch, dagster_pg_url: str) -> str:
    """DAGSTER_PG_HOST/PORT/USER/PASSWORD/DB for the fresh test database; returns its name."""
    url = make_url(dagster_pg_url)
    monkeypatch.setenv("DAGSTER_PG_HOST", url.host)
    monkeypatch.setenv("DAGSTER_PG_PORT", str(url.port or 5432))
    monkeypatch.setenv("DAGSTER_PG_USER", url.username)
    monkeypatch.setenv("DAGSTER_PG_PASSWORD", url.password or "trust-auth-ignores-this")
    monkeypatch.setenv("DAGSTER_PG_DB", url.database)
    return url.database


def current_database(instance: dg.DagsterInstance) -> str:
    from sqlalchemy import text

    with instance.run_storage.connect() as conn:
        return conn.execute(text("SELECT current_database()")).scalar_one()


# ---------------------------------------------------------------- the repo's dagster.yaml


def test_repo_config_without_pg_env_uses_embedded_sqlite(tmp_path, monkeypatch):
    for name in ("DAGSTER_PG_URL", "DAGSTER_PG_HOST"):
        monkeypatch.delenv(name, raising=False)
    home = Path(os.environ["DAGSTER_HOME"])
    instance = load_instance(REPO / "dagster.yaml")
    try:
        assert type_name(instance.run_storage) == "SqliteRunStorage"
        assert type_name(instance.event_log_storage).startswith("Sqlite")
        assert type_name(instance.schedule_storage) == "SqliteScheduleStorage"
        assert instance.get_runs() == []
        assert (home / "storage").is_dir()  # under $DAGSTER_HOME, nowhere else
        assert_queue_pools_and_retries(instance, max_runs=4, pool_limit=4)
    finally:
        instance.dispose()


@pytest.mark.postgres
def test_repo_config_with_dagster_pg_url_uses_postgres(tmp_path, monkeypatch, dagster_pg_url):
    # A bare postgresql:// URL: the storage adds the psycopg2 driver SQLAlchemy 2.1 needs.
    monkeypatch.setenv("DAGSTER_PG_URL", dagster_pg_url.replace("postgresql+psycopg2://", "postgresql://"))
    instance = load_instance(REPO / "dagster.yaml")
    try:
        from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage

        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
        assert isinstance(instance.schedule_storage, PostgresScheduleStorage)
        assert current_database(instance) == make_url(dagster_pg_url).database
        assert_queue_pools_and_retries(instance, max_runs=4, pool_limit=4)
    finally:
        instance.dispose()


@pytest.mark.postgres
def test_repo_config_with_dagster_pg_parts_uses_postgres(tmp_path, monkeypatch, dagster_pg_url):
    database = pg_env(monkeypatch, dagster_pg_url)
    instance = load_instance(REPO / "dagster.yaml")
    try:
        assert type_name(instance.run_storage) == "PostgresRunStorage"
        assert current_database(instance) == database
    finally:
        instance.dispose()


# ---------------------------------------------------------------- deploy/dagster-k8s.yaml


@pytest.fixture
def in_cluster(tmp_path, monkeypatch):
    """What a pod sees: the service-account token and CA files, and the API server's address."""
    import kubernetes.config.incluster_config as incluster

    sa = tmp_path / "serviceaccount"
    sa.mkdir()
    (sa / "token").write_text("test-token")
    (sa / "ca.crt").write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    monkeypatch.setattr(incluster, "SERVICE_TOKEN_FILENAME", str(sa / "token"))
    monkeypatch.setattr(incluster, "SERVICE_CERT_FILENAME", str(sa / "ca.crt"))
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    monkeypatch.setenv("DAGSTER_K8S_JOB_NAMESPACE", "spot-pipelines")
    monkeypatch.setenv("DAGSTER_K8S_SERVICE_ACCOUNT", "dagster")
    monkeypatch.setenv("DAGSTER_K8S_INSTANCE_CONFIG_MAP", "dagster-instance")
    monkeypatch.setenv("DAGSTER_K8S_PG_PASSWORD_SECRET", PG_SECRET_NAME)


@pytest.mark.postgres
def test_k8s_config_loads_with_k8s_run_launcher_and_postgres(tmp_path, monkeypatch, dagster_pg_url, in_cluster):
    from dagster_k8s import K8sRunLauncher
    from dagster_postgres import PostgresRunStorage

    database = pg_env(monkeypatch, dagster_pg_url)
    instance = load_instance(DEPLOY / "dagster-k8s.yaml")
    try:
        launcher = instance.run_launcher
        assert isinstance(launcher, K8sRunLauncher)
        assert launcher.job_namespace == "spot-pipelines"
        assert launcher.instance_config_map == "dagster-instance"
        assert launcher.postgres_password_secret == PG_SECRET_NAME
        assert launcher.load_incluster_config is True
        assert SECRET_NAME in launcher.env_secrets  # ENCRYPTION_KEY and DATABASE_URL
        # Run pods load this same file, so they get every env var it reads.
        config_text = (DEPLOY / "dagster-k8s.yaml").read_text()
        env_read = set(re.findall(r"env: (\w+)", config_text)) - {"DAGSTER_PG_PASSWORD"}
        assert env_read <= set(launcher.env_vars)
        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert current_database(instance) == database
        assert_queue_pools_and_retries(instance, max_runs=10, pool_limit=4)
        assert instance.run_monitoring_enabled
        assert type_name(instance.scheduler) == "DagsterDaemonScheduler"
    finally:
        instance.dispose()


def test_k8s_config_holds_no_secret_values():
    config = yaml.safe_load((DEPLOY / "dagster-k8s.yaml").read_text())
    assert config["storage"]["postgres"]["postgres_db"]["password"] == {"env": "DAGSTER_PG_PASSWORD"}
    assert config["storage"]["postgres"]["postgres_db"]["scheme"] == "postgresql+psycopg2"
    assert "ENCRYPTION_KEY" not in (DEPLOY / "dagster-k8s.yaml").read_text().split("#")[0]


# ---------------------------------------------------------------- deploy/helm/values.yaml


@pytest.fixture(scope="module")
def values() -> dict:
    return yaml.safe_load((DEPLOY / "helm" / "values.yaml").read_text())


def test_helm_values_launch_one_pod_per_run_with_the_secrets(values):
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    k8s = values["runLauncher"]["config"]["k8sRunLauncher"]
    assert {"name": SECRET_NAME} in k8s["envSecrets"]
    assert k8s["loadInclusterConfig"] is True

    (deployment,) = values["dagster-user-deployments"]["deployments"]
    assert values["dagster-user-deployments"]["enabled"] is True
    module = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["dagster"]["module_name"]
    assert deployment["dagsterApiGrpcArgs"] == ["-m", module]
    assert {"name": SECRET_NAME} in deployment["envSecrets"]
    assert deployment["includeConfigInLaunchedRuns"]["enabled"] is True
    assert deployment["image"]["tag"] not in ("latest", "")


def test_helm_values_use_external_postgres_with_the_password_from_a_secret(values):
    assert values["postgresql"]["enabled"] is False
    assert values["postgresql"]["postgresqlHost"]
    assert values["postgresql"]["postgresqlScheme"] == "postgresql+psycopg2"
    assert values["global"]["postgresqlSecretName"] == PG_SECRET_NAME
    assert values["generatePostgresqlPasswordSecret"] is False
    assert "postgresqlPassword" not in values["postgresql"]


def test_helm_values_run_the_daemon_queue_retries_and_aws_pool(values):
    daemon = values["dagsterDaemon"]
    assert daemon["enabled"] is True
    assert daemon["runCoordinator"]["enabled"] is True
    assert daemon["runCoordinator"]["type"] == "QueuedRunCoordinator"
    queue = daemon["runCoordinator"]["config"]["queuedRunCoordinator"]
    assert queue["maxConcurrentRuns"] > 0
    # The chart refuses run limits set both here and under concurrency.runs.
    assert "runs" not in values.get("concurrency", {})
    assert daemon["runRetries"] == {"enabled": True, "maxRetries": 2}
    assert daemon["sensors"] == {"useThreads": True, "numWorkers": 4}  # the interruption sensor long-polls
    repo_pools = yaml.safe_load((REPO / "dagster.yaml").read_text())["concurrency"]["pools"]["default_limit"]
    assert values["concurrency"]["pools"]["defaultLimit"] == repo_pools == 4


def test_the_secrets_template_provides_every_key_the_code_reads(values):
    docs = {d["metadata"]["name"]: d for d in yaml.safe_load_all((DEPLOY / "secrets.example.yaml").read_text())}
    assert {"ENCRYPTION_KEY", "DATABASE_URL"} <= set(docs[SECRET_NAME]["stringData"])
    assert "postgresql-password" in docs[values["global"]["postgresqlSecretName"]]["stringData"]
    assert all(v.startswith("<") or "<password>" in v for v in docs[SECRET_NAME]["stringData"].values())


# ---------------------------------------------------------------- deploy/Dockerfile


def test_dockerfile_builds_the_code_location_from_files_that_exist():
    text = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim\b", text, re.M)
    for line in re.findall(r"^COPY (.+)$", text, re.M):
        *sources, _dest = line.split()
        for source in sources:
            if "*" not in source:  # globs (README.md*) are optional
                assert (REPO / source).exists(), f"Dockerfile copies {source}, which is not in the repo"
    assert re.search(r"pip install \.", text)
    cmd = re.search(r"^CMD (\[.+\])$", text, re.M).group(1)
    assert "spot_pipelines.definitions" in cmd and "code-server" in cmd
    # The module the image serves loads with no secrets set.
    import importlib

    defs = importlib.import_module("spot_pipelines.definitions").defs
    assert defs.resolve_asset_graph().get_all_asset_keys()
