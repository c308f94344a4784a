"""The public names in ARCHITECTURE.md are a contract: dashboards and operators depend on them.

The one definitions-contract test: every domain's names, partitions, checks and resources in the one Definitions.
"""

import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from spot_pipelines.definitions import defs
from spot_pipelines.partitions import AWS_ACCOUNTS_PARTITION, market_daily_partitions
from spot_pipelines.settings import PROJECT_ROOT

ASSETS = {
    "discovered_instances",
    "spot_price_history",
    "on_demand_prices",
    "spot_advisor",
    "interruption_risk_scores",
    "interruption_model",
    "interruption_predictions",
    "spot_recommendations",
    "component_health",
    "spot_interruption_events",
    "k8s_node_inventory",
    "recommendation_backtest",
    "spot_placement_scores",
}
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


def test_definitions_hold_the_market_data_contract():
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert {"spot_price_history", "on_demand_prices", "spot_advisor"} <= keys
    assert defs.resolve_schedule_def("daily_market_data_schedule").job_name == "daily_market_data"
    job = defs.resolve_job_def("spot_price_history_job")
    assert job.partitions_def == market_daily_partitions
    for name in ("spot_price_history", "spot_advisor"):
        node = graph.get(dg.AssetKey(name))
        assert node.partitions_def == market_daily_partitions
        assert node.backfill_policy == dg.BackfillPolicy.single_run()
        assert node.freshness_policy is not None
    checks = {(k.asset_key.to_user_string(), k.name) for k in graph.asset_check_keys}
    assert {
        ("spot_price_history", "prices_positive"),
        ("spot_price_history", "all_enabled_regions_present"),
        ("spot_price_history", "no_duplicate_prices"),
        ("on_demand_prices", "prices_positive"),
        ("on_demand_prices", "prices_recent"),
        ("spot_advisor", "bands_in_range"),
    } <= checks


def test_definitions_carry_the_operations_names():
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert {"component_health", "spot_interruption_events", "k8s_node_inventory"} <= keys
    assert defs.resolve_sensor_def("spot_interruption_sensor")
    assert defs.resolve_sensor_def("run_failure_alert_sensor")
    assert defs.resolve_schedule_def("component_health_schedule")
    assert defs.resolve_schedule_def("k8s_inventory_schedule")
    assert {"app_db", "redis", "kubernetes", "interruption_queue"} <= set(defs.resources)


def test_optimization_assets_check_job_and_resource_are_registered_with_automation():
    graph = defs.resolve_asset_graph()
    for key in ("interruption_risk_scores", "interruption_model", "interruption_predictions", "spot_recommendations"):
        node = graph.get(dg.AssetKey(key))
        assert node.automation_condition is not None, key
    assert {p.to_user_string() for p in graph.get(dg.AssetKey("interruption_risk_scores")).parent_keys} >= {
        "spot_price_history",
        "spot_advisor",
        "spot_interruption_events",
        "on_demand_prices",
    }
    assert dg.AssetKey("discovered_instances") in graph.get(dg.AssetKey("spot_recommendations")).parent_keys
    [check] = [c for c in defs.resolve_asset_graph().asset_check_keys if c.name == "interruption_model_quality"]
    spec = graph.get_check_spec(check)
    assert spec.blocking and spec.asset_key == dg.AssetKey("interruption_model")
    assert defs.resolve_job_def("execute_approved_recommendations") is not None
    assert "model_store" in defs.resources


def test_dagster_definitions_validate_with_no_secrets(tmp_path):
    (tmp_path / "dagster.yaml").write_text((PROJECT_ROOT / "dagster.yaml").read_text())
    env = {"PATH": "/usr/bin:/bin", "DAGSTER_HOME": str(tmp_path), "HOME": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate", "-m", "spot_pipelines.definitions"],
        capture_output=True,
        text=True,
        env=env,
        cwd=PROJECT_ROOT,
        timeout=180,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_every_asset_links_to_the_source_that_defines_it():
    for spec in defs.resolve_all_asset_specs():
        name = spec.key.to_user_string()
        refs = spec.metadata.get("dagster/code_references")
        assert refs is not None, f"{name} has no dagster/code_references"
        (ref,) = refs.code_references
        assert Path(ref.file_path).parent == PROJECT_ROOT / "spot_pipelines" / "assets", ref.file_path
        # The reference is the decorator line: the next `def` is the asset's own function.
        lines = Path(ref.file_path).read_text().splitlines()[ref.line_number - 1 :]
        assert next(line for line in lines if line.startswith("def ")).startswith(f"def {name}("), (name, ref)
