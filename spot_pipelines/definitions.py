"""The one Definitions object of the spot_pipelines code location."""

import warnings

import dagster as dg

from spot_pipelines.assets.backtest import recommendation_backtest
from spot_pipelines.assets.commitments import aws_commitments, commitments_job
from spot_pipelines.assets.discovery import discovered_instances, discovery_job
from spot_pipelines.assets.execution import execute_approved_recommendations, realised_savings
from spot_pipelines.assets.health import component_health, component_health_job
from spot_pipelines.assets.interruptions import spot_interruption_events, spot_interruption_events_job
from spot_pipelines.assets.kubernetes import k8s_inventory_job, k8s_node_inventory
from spot_pipelines.assets.market_data import market_data_assets, market_data_jobs
from spot_pipelines.assets.markets import spot_market_analytics
from spot_pipelines.assets.ml import interruption_model, interruption_model_quality, interruption_predictions
from spot_pipelines.assets.optimization import spot_recommendations
from spot_pipelines.assets.placement import spot_placement_scores
from spot_pipelines.assets.risk import interruption_risk_scores
from spot_pipelines.resources.app_database import AppDatabase
from spot_pipelines.resources.credential_vault import CredentialVault
from spot_pipelines.resources.interruptions import SpotInterruptionQueue
from spot_pipelines.resources.kubernetes import KubernetesResource
from spot_pipelines.resources.market_data import MarketDataAPIs
from spot_pipelines.resources.model_store import LocalModelStore
from spot_pipelines.resources.notifications import Notifier
from spot_pipelines.resources.redis import RedisResource
from spot_pipelines.sensors.automation import spot_pipelines_automation_sensor
from spot_pipelines.sensors.commitments import daily_commitments_schedule
from spot_pipelines.sensors.discovery import account_onboarding_sensor, nightly_rediscovery_schedule
from spot_pipelines.sensors.execution import execution_reconciler_sensor
from spot_pipelines.sensors.health import (
    component_health_schedule,
    run_failure_alert_sensor,
    unretried_failure_alert_sensor,
)
from spot_pipelines.sensors.interruptions import spot_interruption_sensor
from spot_pipelines.sensors.kubernetes import k8s_inventory_schedule
from spot_pipelines.sensors.market_data import daily_market_data_schedule, hourly_spot_price_schedule
from spot_pipelines.sensors.notifications import (
    alert_notifications_sensor,
    execution_failure_notifications_sensor,
    notifications_sensor,
)

# Source links in the UI; no git remote is configured, so local file references only. The API is beta:
# its warning would print on every load of the code location.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", dg.BetaWarning)
    assets = dg.with_source_code_references(
        [
            discovered_instances,
            aws_commitments,
            *market_data_assets,
            component_health,
            spot_interruption_events,
            k8s_node_inventory,
            interruption_risk_scores,
            interruption_model,
            interruption_predictions,
            spot_recommendations,
            realised_savings,
            recommendation_backtest,
            spot_placement_scores,
            spot_market_analytics,
        ]
    )

defs = dg.Definitions(
    assets=assets,
    asset_checks=[interruption_model_quality],
    jobs=[
        discovery_job,
        commitments_job,
        *market_data_jobs,
        component_health_job,
        k8s_inventory_job,
        spot_interruption_events_job,
        execute_approved_recommendations,
    ],
    sensors=[
        account_onboarding_sensor,
        spot_interruption_sensor,
        run_failure_alert_sensor,
        unretried_failure_alert_sensor,
        spot_pipelines_automation_sensor,
        execution_reconciler_sensor,
        notifications_sensor,
        execution_failure_notifications_sensor,
        alert_notifications_sensor,
    ],
    schedules=[
        nightly_rediscovery_schedule,
        daily_commitments_schedule,
        daily_market_data_schedule,
        hourly_spot_price_schedule,
        component_health_schedule,
        k8s_inventory_schedule,
    ],
    resources={
        "app_db": AppDatabase(),
        "interruption_queue": SpotInterruptionQueue(),
        "kubernetes": KubernetesResource(),
        "redis": RedisResource(),
        "market_apis": MarketDataAPIs(),
        "model_store": LocalModelStore(),
        "notifier": Notifier(),
        "vault": CredentialVault(encryption_key=dg.EnvVar("ENCRYPTION_KEY")),
    },
)
