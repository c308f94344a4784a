"""k8s_inventory_schedule: the Kubernetes watcher's poll, skipped when no cluster is configured."""

import dagster as dg

from spot_pipelines.assets.kubernetes import k8s_inventory_job
from spot_pipelines.resources.kubernetes import KubernetesResource


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
