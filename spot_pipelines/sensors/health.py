"""component_health_schedule (every few minutes) and the Kubernetes watcher's poll schedule."""

import dagster as dg

from spot_pipelines.assets.health import component_health
from spot_pipelines.assets.kubernetes import k8s_node_inventory
from spot_pipelines.resources.kubernetes import KubernetesResource

component_health_job = dg.define_asset_job(
    "component_health_job", selection=[component_health],
    description="One round of the seven component health checks.",
)
k8s_inventory_job = dg.define_asset_job(
    "k8s_inventory_job", selection=[k8s_node_inventory],
    description="Poll the Kubernetes cluster's nodes and pods (the watcher heartbeat).",
)

component_health_schedule = dg.ScheduleDefinition(
    name="component_health_schedule",
    job=component_health_job,
    cron_schedule="*/5 * * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Checks every component every five minutes (and right after each successful discovery).",
)


@dg.schedule(
    name="k8s_inventory_schedule",
    job=k8s_inventory_job,
    cron_schedule="*/5 * * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Polls the Kubernetes cluster every five minutes; skips when no cluster is configured.",
)
def k8s_inventory_schedule(context: dg.ScheduleEvaluationContext, kubernetes: KubernetesResource):
    if not kubernetes.is_configured():
        return dg.SkipReason(kubernetes.not_configured_reason())
    return dg.RunRequest(run_key=None, tags={"spot_pipelines/trigger": "k8s_watcher"})
