"""k8s_node_inventory: the cluster's nodes with their capacity type and discovered instance, and
the pods on spot nodes with their owning workloads; each poll is the watcher's heartbeat."""

import json

import dagster as dg
from urllib3.exceptions import HTTPError as Urllib3Error

from spot_pipelines.assets import preview_table, table_metadata
from spot_pipelines.core.clock import utcnow
from spot_pipelines.core.kubernetes import build_inventory, list_all
from spot_pipelines.core.redaction import redact_text
from spot_pipelines.core.reporting import counts_by
from spot_pipelines.db.kubernetes import K8sNode, write_heartbeat, write_k8s_inventory
from spot_pipelines.db.system_log import write_system_log
from spot_pipelines.resources.app_database import AppDatabase
from spot_pipelines.resources.kubernetes import KubernetesResource

COMPONENT = "k8s_node_inventory"
NODE_COLUMNS = ["name", "capacity_type", "instance_type", "zone", "instance_id", "ready"]
WORKLOAD_COLUMNS = ["namespace", "owner_kind", "owner_name", "spot_pods"]
_HINTS = {
    401: "the credentials in the kubeconfig were rejected (expired token?)",
    403: "the identity may not list nodes/pods cluster-wide (needs a ClusterRole with get/list on nodes, pods)",
}


def describe_k8s_error(exc: BaseException) -> tuple[str, bool]:
    """(operator-facing cause, retryable)."""
    from kubernetes.client.exceptions import ApiException

    if isinstance(exc, ApiException):
        reason = exc.reason or "error"
        try:
            message = json.loads(exc.body or "{}").get("message") or ""
        except (TypeError, ValueError):
            message = ""
        hint = _HINTS.get(exc.status, "")
        cause = (
            f"Kubernetes API returned {exc.status} {reason}"
            + (f": {message}" if message else "")
            + (f" ({hint})" if hint else "")
        )
        return redact_text(cause), exc.status not in (401, 403)
    if isinstance(exc, Urllib3Error | TimeoutError | OSError):
        return redact_text(f"Kubernetes API unreachable or timed out ({type(exc).__name__}: {exc})")[:500], True
    return redact_text(f"{type(exc).__name__}: {exc}")[:500], False


def _poll_failure(context, app_db: AppDatabase, kubernetes: KubernetesResource, cluster: str, exc) -> dg.Failure:
    """Store the failed poll (heartbeat not ok, an ERROR system log) and build the run's Failure."""
    cause, retryable = describe_k8s_error(exc)
    with app_db.transaction() as session:
        write_heartbeat(session, cluster, at=utcnow(), ok=False, error=cause)
        write_system_log(
            session,
            COMPONENT,
            "ERROR",
            f"cluster {cluster!r}: {cause}",
            run_id=context.run_id,
            details={"cluster": cluster, "mode": kubernetes.mode()},
        )
    return dg.Failure(description=f"cluster {cluster!r}: {cause}", allow_retries=retryable)


@dg.asset(
    name="k8s_node_inventory",
    group_name="operations",
    metadata=table_metadata(
        K8sNode.__table__,
        {
            "cluster": "the kubeconfig context / cluster name",
            "name": "Kubernetes node name",
            "provider_id": "aws:///<AZ>/<instance id>",
            "capacity_type": "spot or on-demand",
            "capacity_type_source": "the label the capacity type was read from",
            "zone": "topology.kubernetes.io/zone",
            "observed_at": "UTC time of the poll",
            "ready": "the node's Ready condition",
            "unschedulable": "cordoned",
            "labels": "the node's labels",
        },
    ),
    kinds={"kubernetes", "sql"},
    owners=["team:platform"],
    description=(
        "Kubernetes nodes (capacity type from karpenter.sh/capacity-type, eks.amazonaws.com/capacityType or "
        "node.kubernetes.io/lifecycle; instance type; zone; provider ID mapped to discovered instances) and the "
        "pods on spot nodes with their owning workloads. Each poll writes the watcher heartbeat. "
        "No cluster configured: reports 'not configured' and succeeds. No retry policy: the next scheduled "
        "poll (k8s_inventory_schedule) is the retry, and the heartbeat shows the failure meanwhile."
    ),
)
def k8s_node_inventory(
    context: dg.AssetExecutionContext, app_db: AppDatabase, kubernetes: KubernetesResource
) -> dg.MaterializeResult:
    if not kubernetes.is_configured():
        context.log.info(kubernetes.not_configured_reason())
        return dg.MaterializeResult(
            metadata={"status": "not configured", "reason": kubernetes.not_configured_reason(), "dagster/row_count": 0}
        )
    cluster = kubernetes.resolved_cluster_name()
    try:
        api = kubernetes.core_v1()
        nodes = list_all(api.list_node, page_size=kubernetes.page_size, timeout_s=kubernetes.request_timeout_s)
        pods = list_all(
            api.list_pod_for_all_namespaces, page_size=kubernetes.page_size, timeout_s=kubernetes.request_timeout_s
        )
    except Exception as exc:
        raise _poll_failure(context, app_db, kubernetes, cluster, exc) from None

    inventory = build_inventory(nodes, pods)
    observed_at = utcnow()
    with app_db.transaction() as session:
        written = write_k8s_inventory(session, cluster, inventory.nodes, inventory.pods, observed_at=observed_at)
        write_heartbeat(
            session, cluster, at=observed_at, ok=True, node_count=len(inventory.nodes), pod_count=len(inventory.pods)
        )
    context.log.info(
        f"cluster {cluster!r}: {len(inventory.nodes)} nodes ({len(inventory.spot_nodes)} spot), "
        f"{len(inventory.spot_pods)} of {len(inventory.pods)} pods on spot"
    )
    return dg.MaterializeResult(metadata=_inventory_metadata(cluster, inventory, written))


def _inventory_metadata(cluster: str, inventory, written: dict) -> dict:
    unknown = [n["name"] for n in inventory.nodes if n["capacity_type"] == "unknown"]
    return {
        "dagster/row_count": len(inventory.nodes),
        "cluster": cluster,
        "nodes_by_capacity_type": dg.MetadataValue.json(counts_by(inventory.nodes, "capacity_type")),
        "pods": len(inventory.pods),
        "pods_on_spot": len(inventory.spot_pods),
        "nodes_matched_to_discovered_instances": written["nodes_matched"],
        "nodes_with_unknown_capacity_type": dg.MetadataValue.json(unknown[:50]),
        "nodes_removed": written["nodes_removed"],
        "nodes": preview_table(inventory.nodes, NODE_COLUMNS),
        "workloads_on_spot": preview_table(inventory.workloads_on_spot(), WORKLOAD_COLUMNS),
    }


k8s_inventory_job = dg.define_asset_job(
    "k8s_inventory_job",
    selection=[k8s_node_inventory],
    description="Poll the Kubernetes cluster's nodes and pods (the watcher heartbeat).",
)
