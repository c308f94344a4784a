"""After a successful discovery the health data is refreshed at once; a failing round never fails it."""

import dagster as dg
import pytest
from sqlalchemy import select

import spot_pipelines.assets.discovery as discovery_assets
from spot_pipelines.db.engine import session_factory
from spot_pipelines.db.health import ComponentHealth
from spot_pipelines.resources.credential_vault import CredentialVault
from tests.discovery.test_assets import add_account, discover
from tests.support.aws_fakes import role_session, seed_instances


@pytest.fixture
def vault(encryption_key):
    return CredentialVault(encryption_key=encryption_key, max_attempts=2)


def health_rows(url):
    with session_factory(url)() as session:
        return session.scalars(select(ComponentHealth)).all()


def test_successful_discovery_writes_a_health_round(aws, sqlite_url, vault):
    seed_instances(role_session(region="eu-west-1"), "eu-west-1", 1, "m5.large")
    add_account(sqlite_url, vault, "prod", regions=["eu-west-1"])
    result = discover(sqlite_url, vault, "prod")
    assert result.success
    rows = health_rows(sqlite_url)
    assert len(rows) == 7 and len({r.round_id for r in rows}) == 1
    assert {r.component: r.status for r in rows}["app_database"] == "healthy"


def test_a_failing_health_round_does_not_fail_discovery(aws, sqlite_url, vault, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("health storage is down")

    monkeypatch.setattr(discovery_assets, "refresh_component_health", broken)
    seed_instances(role_session(region="eu-west-1"), "eu-west-1", 1, "m5.large")
    add_account(sqlite_url, vault, "prod", regions=["eu-west-1"])
    instance = dg.DagsterInstance.ephemeral()
    result = discover(sqlite_url, vault, "prod", instance=instance)
    assert result.success and health_rows(sqlite_url) == []
    messages = [e.user_message for e in instance.all_logs(result.run_id)]
    assert "component health refresh after discovery failed: RuntimeError" in messages
