"""The optimization pieces are wired into the one Definitions, with automation and a blocking check."""

import dagster as dg
from click.testing import CliRunner

from spot_pipelines.cli import main
from spot_pipelines.definitions import defs

OURS = ["interruption_risk_scores", "interruption_model", "interruption_predictions", "spot_recommendations"]


def test_assets_check_job_and_resource_are_registered_with_automation():
    graph = defs.resolve_asset_graph()
    for key in OURS:
        node = graph.get(dg.AssetKey(key))
        assert node.automation_condition is not None, key
    assert {p.to_user_string() for p in graph.get(dg.AssetKey("interruption_risk_scores")).parent_keys} >= {
        "spot_price_history", "spot_advisor", "spot_interruption_events", "on_demand_prices"}
    assert dg.AssetKey("discovered_instances") in graph.get(dg.AssetKey("spot_recommendations")).parent_keys
    [check] = [c for c in defs.resolve_asset_graph().asset_check_keys if c.name == "interruption_model_quality"]
    spec = graph.get_check_spec(check)
    assert spec.blocking and spec.asset_key == dg.AssetKey("interruption_model")
    assert defs.resolve_job_def("execute_approved_recommendations") is not None
    assert "model_store" in defs.resources


def test_cli_exposes_the_recommendations_group():
    out = CliRunner().invoke(main, ["recommendations", "--help"])
    assert out.exit_code == 0 and "approve" in out.output and "list" in out.output
