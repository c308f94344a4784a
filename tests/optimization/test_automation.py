"""spot_pipelines_automation_sensor: new prices or a new discovery lead to new risk scores, predictions and
recommendations on their own, and nothing is requested while a required upstream is missing or nothing changed.

Each tick is Dagster's own evaluation of the assets' AutomationConditions against a real instance (what the
daemon runs for the sensor); upstream data arrives as materialization events in that instance.
"""

from datetime import timedelta

import dagster as dg

from spot_pipelines.core.clock import utc_today
from spot_pipelines.definitions import defs
from spot_pipelines.partitions import AWS_ACCOUNTS_PARTITION
from spot_pipelines.sensors.automation import AUTOMATED_ASSETS

ACCOUNT = "acct-prod"


class Daemon:
    """Successive ticks of the automation sensor, carrying its cursor as the daemon does."""

    def __init__(self, instance: dg.DagsterInstance):
        self.instance, self.cursor = instance, None

    def tick(self) -> set[str]:
        result = dg.evaluate_automation_conditions(defs=defs, instance=self.instance, cursor=self.cursor)
        self.cursor = result.cursor
        return {name for name in AUTOMATED_ASSETS if result.get_num_requested(dg.AssetKey(name))}


def materialized(instance: dg.DagsterInstance, *names: str, partition: str | None = None) -> None:
    for name in names:
        instance.report_runless_asset_event(dg.AssetMaterialization(name, partition=partition))


def test_the_sensor_is_on_by_default_and_targets_every_asset_with_a_condition():
    sensor = defs.resolve_sensor_def("spot_pipelines_automation_sensor")
    assert isinstance(sensor, dg.AutomationConditionSensorDefinition)
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    graph = defs.resolve_asset_graph()
    with_conditions = {
        key.to_user_string() for key in graph.get_all_asset_keys() if graph.get(key).automation_condition is not None
    }
    assert with_conditions == set(AUTOMATED_ASSETS)
    assert {k.to_user_string() for k in sensor.asset_selection.resolve(graph)} == with_conditions


def test_new_prices_and_a_new_discovery_refresh_recommendations_without_a_click():
    instance = dg.DagsterInstance.ephemeral()
    daemon = Daemon(instance)
    # The newest daily partition is yesterday's (a day's partition exists once the day is over).
    earlier, yesterday = ((utc_today() - timedelta(days=n)).isoformat() for n in (2, 1))

    assert daemon.tick() == set()  # nothing upstream yet
    materialized(instance, "spot_price_history", partition=earlier)
    assert daemon.tick() == set()  # on-demand prices still missing: scores would price nothing
    materialized(instance, "on_demand_prices", "spot_advisor")
    # The first model trains in the same run as the first scores and predictions (its blocking check runs between).
    assert daemon.tick() == {"interruption_risk_scores", "interruption_model", "interruption_predictions"}
    materialized(instance, "interruption_risk_scores", "interruption_model", "interruption_predictions")
    instance.report_runless_asset_event(
        dg.AssetCheckEvaluation(
            asset_key=dg.AssetKey("interruption_model"), check_name="interruption_model_quality", passed=True
        )
    )
    assert daemon.tick() == set()  # no fleet discovered yet: nothing to recommend for

    instance.add_dynamic_partitions(AWS_ACCOUNTS_PARTITION, [ACCOUNT])
    materialized(instance, "discovered_instances", partition=ACCOUNT)
    assert daemon.tick() == {"spot_recommendations"}
    materialized(instance, "spot_recommendations")
    assert daemon.tick() == set()  # nothing changed since: nothing requested, twice
    assert daemon.tick() == set()

    materialized(instance, "spot_price_history", partition=yesterday)  # the daily schedule's new partition
    # One run down the chain (Dagster orders it); the model retrains weekly, not on every price.
    assert daemon.tick() == {"interruption_risk_scores", "interruption_predictions", "spot_recommendations"}
    materialized(instance, "interruption_risk_scores", "interruption_predictions", "spot_recommendations")
    assert daemon.tick() == set()


def test_automation_follows_new_prices_and_respects_the_blocking_check():
    from spot_pipelines.assets.ml import interruption_model, interruption_model_quality, interruption_predictions
    from spot_pipelines.assets.optimization import spot_recommendations
    from spot_pipelines.assets.risk import interruption_risk_scores
    from spot_pipelines.resources.app_database import AppDatabase
    from spot_pipelines.resources.model_store import LocalModelStore

    local = dg.Definitions(
        assets=[interruption_risk_scores, interruption_model, interruption_predictions, spot_recommendations],
        asset_checks=[interruption_model_quality],
        resources={"app_db": AppDatabase(), "model_store": LocalModelStore()},
    )
    instance = dg.DagsterInstance.ephemeral()
    cursor = None

    def tick() -> dict[str, int]:
        nonlocal cursor
        result = dg.evaluate_automation_conditions(defs=local, instance=instance, cursor=cursor)
        cursor = result.cursor
        return {k: result.get_num_requested(dg.AssetKey(k)) for k in AUTOMATED_ASSETS}

    def report(key: str) -> None:
        instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=key))

    def check(passed: bool) -> None:
        instance.report_runless_asset_event(
            dg.AssetCheckEvaluation(
                asset_key=dg.AssetKey("interruption_model"),
                check_name="interruption_model_quality",
                passed=passed,
                severity=dg.AssetCheckSeverity.ERROR,
            )
        )

    tick()
    instance.report_runless_asset_event(
        dg.AssetMaterialization(asset_key="spot_price_history", partition=(utc_today() - timedelta(days=1)).isoformat())
    )
    report("on_demand_prices")  # nothing is requested while a required upstream was never materialized
    report("discovered_instances")
    # The first model trains in the same run as the first scores and predictions.
    assert tick() == {
        "interruption_risk_scores": 1,
        "interruption_model": 1,
        "interruption_predictions": 1,
        "spot_recommendations": 1,
    }
    for key in ("interruption_risk_scores", "interruption_model", "interruption_predictions", "spot_recommendations"):
        report(key)
    check(passed=True)
    assert tick()["interruption_predictions"] == 0
    # A new model whose blocking check failed (an error, or a tie's warning) does not trigger predictions...
    report("interruption_model")
    check(passed=False)
    assert tick()["interruption_predictions"] == 0
    # ...nor keeps new scores from refreshing them (they serve the last ready version or the prior)...
    report("interruption_risk_scores")
    assert tick()["interruption_predictions"] == 1
    report("interruption_predictions")
    tick()
    # ...and a new model that passes its check does.
    report("interruption_model")
    assert tick()["interruption_predictions"] == 0  # its check has not run yet
    check(passed=True)
    assert tick()["interruption_predictions"] == 1
    report("interruption_predictions")
    report("spot_recommendations")
    tick()
    # New discovery results refresh the recommendations.
    instance.report_runless_asset_event(dg.AssetMaterialization(asset_key="discovered_instances", partition="prod"))
    assert tick()["spot_recommendations"] == 1
