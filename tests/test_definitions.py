"""The public names in ARCHITECTURE.md are a contract: dashboards and operators depend on them."""

import subprocess
import sys

import dagster as dg
import pytest

from spot_pipelines.definitions import defs
from spot_pipelines.partitions import AWS_ACCOUNTS_PARTITION
from spot_pipelines.settings import PROJECT_ROOT

ASSETS = {"discovered_instances", "spot_price_history", "on_demand_prices", "spot_advisor",
          "interruption_risk_scores", "interruption_model", "interruption_predictions", "spot_recommendations",
          "component_health", "spot_interruption_events", "k8s_node_inventory"}
SENSORS = {"account_onboarding_sensor", "spot_interruption_sensor"}
SCHEDULES = {"component_health_schedule", "daily_market_data_schedule", "nightly_rediscovery_schedule"}
JOBS = {"execute_approved_recommendations"}


def test_every_public_name_is_defined():
    assert ASSETS <= {key.to_user_string() for key in defs.resolve_all_asset_keys()}
    assert SENSORS <= {s.name for s in defs.sensors}
    assert SCHEDULES <= {s.name for s in defs.schedules}
    assert JOBS <= {j.name for j in defs.resolve_all_job_defs()}


def test_discovery_is_partitioned_by_the_project_specific_account_partitions():
    partitions_def = defs.resolve_assets_def("discovered_instances").partitions_def
    assert isinstance(partitions_def, dg.DynamicPartitionsDefinition)
    assert partitions_def.name == AWS_ACCOUNTS_PARTITION == "spot_pipelines_aws_accounts"


@pytest.mark.parametrize("daily", ["spot_price_history", "spot_advisor"])
def test_market_data_is_daily_partitioned(daily):
    assert isinstance(defs.resolve_assets_def(daily).partitions_def, dg.DailyPartitionsDefinition)


def test_dagster_definitions_validate_with_no_secrets(tmp_path):
    (tmp_path / "dagster.yaml").write_text((PROJECT_ROOT / "dagster.yaml").read_text())
    env = {"PATH": "/usr/bin:/bin", "DAGSTER_HOME": str(tmp_path), "HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-m", "dagster", "definitions", "validate", "-m", "spot_pipelines.definitions"],
                         capture_output=True, text=True, env=env, cwd=PROJECT_ROOT, timeout=180)
    assert out.returncode == 0, out.stdout + out.stderr
