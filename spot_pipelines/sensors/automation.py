"""spot_pipelines_automation_sensor: evaluates the assets' AutomationConditions, so new prices or a new
discovery lead to new risk scores, predictions and recommendations without a manual click."""

import dagster as dg

# The assets that carry conditions (assets/risk.py, ml.py, optimization.py). Dagster's implicit
# default_automation_condition_sensor would cover them too, but it starts STOPPED.
AUTOMATED_ASSETS = [
    "interruption_risk_scores",
    "interruption_model",
    "interruption_predictions",
    "spot_recommendations",
]

spot_pipelines_automation_sensor = dg.AutomationConditionSensorDefinition(
    "spot_pipelines_automation_sensor",
    target=dg.AssetSelection.assets(*AUTOMATED_ASSETS),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=60,
    description="Requests risk scores, predictions and recommendations when their upstream data changes "
    "(and the weekly model retrain), never while an upstream run is in progress.",
)
