"""The optimization pieces are wired into the one Definitions, with automation and a blocking check."""

from datetime import timedelta

import dagster as dg
from click.testing import CliRunner

from spot_pipelines.cli import main
from spot_pipelines.core.clock import utc_today
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


def test_automation_follows_new_prices_and_respects_the_blocking_check():
    from spot_pipelines.assets.ml import interruption_model, interruption_model_quality, interruption_predictions
    from spot_pipelines.assets.optimization import spot_recommendations
    from spot_pipelines.assets.risk import interruption_risk_scores
    from spot_pipelines.resources.app_database import AppDatabase
    from spot_pipelines.resources.model_store import LocalModelStore

    local = dg.Definitions(assets=[interruption_risk_scores, interruption_model, interruption_predictions,
                                   spot_recommendations], asset_checks=[interruption_model_quality],
                           resources={"app_db": AppDatabase(), "model_store": LocalModelStore()})
    instance = dg.DagsterInstance.ephemeral()
    cursor = None

    def tick() -> dict[str, int]:
        nonlocal cursor
        result = dg.evaluate_automation_conditions(defs=local, instance=instance, cursor=cursor)
        cursor = result.cursor
        return {k: result.get_num_requested(dg.AssetKey(k)) for k in OURS}

    def report(key: str) -> None:
        instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=key))

    def check(passed: bool) -> None:
        instance.report_runless_asset_event(dg.AssetCheckEvaluation(
            asset_key=dg.AssetKey("interruption_model"), check_name="interruption_model_quality", passed=passed,
            severity=dg.AssetCheckSeverity.ERROR))

    tick()
    instance.report_runless_asset_event(dg.AssetMaterialization(asset_key="spot_price_history", partition=(utc_today() - timedelta(days=1)).isoformat()))
    report("on_demand_prices")  # nothing is requested while a required upstream was never materialized
    report("discovered_instances")
    # The first model trains in the same run as the first scores.
    assert tick() == {"interruption_risk_scores": 1, "interruption_model": 1, "interruption_predictions": 0,
                      "spot_recommendations": 0}
    report("interruption_risk_scores")
    report("interruption_model")
    check(passed=True)
    assert tick() == {"interruption_risk_scores": 0, "interruption_model": 0, "interruption_predictions": 1,
                      "spot_recommendations": 1}
    report("interruption_predictions")
    report("spot_recommendations")
    tick()
    # A new model whose blocking check failed does not trigger predictions.
    report("interruption_model")
    check(passed=False)
    assert tick()["interruption_predictions"] == 0
    # New discovery results refresh the recommendations.
    instance.report_runless_asset_event(dg.AssetMaterialization(asset_key="discovered_instances", partition="prod"))
    assert tick()["spot_recommendations"] == 1
