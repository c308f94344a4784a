"""Kubernetes nodes and pods as plain rows: capacity type, instance, zone, and pod owners.

The functions take the API's JSON (dicts, camelCase keys as the API server sends them), so they
are tested without a cluster; `list_all` pages through a `CoreV1Api` list call.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

# Which label says spot vs on-demand, in order of trust, and how its values map.
CAPACITY_LABELS: tuple[tuple[str, dict[str, str]], ...] = (
    ("karpenter.sh/capacity-type", {"spot": "spot", "on-demand": "on-demand", "reserved": "on-demand"}),
    ("eks.amazonaws.com/capacityType", {"SPOT": "spot", "ON_DEMAND": "on-demand", "CAPACITY_BLOCK": "on-demand"}),
    ("node.kubernetes.io/lifecycle", {"spot": "spot", "normal": "on-demand", "on-demand": "on-demand"}),
)
ZONE_LABELS = ("topology.kubernetes.io/zone", "failure-domain.beta.kubernetes.io/zone")
REGION_LABELS = ("topology.kubernetes.io/region", "failure-domain.beta.kubernetes.io/region")
TYPE_LABELS = ("node.kubernetes.io/instance-type", "beta.kubernetes.io/instance-type")
KEPT_LABELS = (
    {label for label, _ in CAPACITY_LABELS}
    | set(ZONE_LABELS + REGION_LABELS + TYPE_LABELS)
    | {"karpenter.sh/nodepool", "eks.amazonaws.com/nodegroup", "kubernetes.io/arch", "node.kubernetes.io/instance-type"}
)
_PROVIDER_ID = re.compile(r"^aws:///(?P<zone>[a-z0-9-]*)/(?P<instance>i-[0-9a-f]+)$")


def capacity_type(labels: dict[str, str]) -> tuple[str, str | None]:
    """(`spot` | `on-demand` | `unknown`, the label it came from)."""
    for label, values in CAPACITY_LABELS:
        value = labels.get(label)
        if value is not None:
            mapped = values.get(value) or values.get(value.lower()) or values.get(value.upper())
            if mapped:
                return mapped, label
    return "unknown", None


def parse_provider_id(provider_id: str | None) -> tuple[str | None, str | None]:
    """`aws:///us-east-1a/i-0abc…` → (zone, instance id); anything else → (None, None)."""
    match = _PROVIDER_ID.match(provider_id or "")
    return (match.group("zone") or None, match.group("instance")) if match else (None, None)


def _first(labels: dict[str, str], names: Iterable[str]) -> str | None:
    return next((labels[n] for n in names if labels.get(n)), None)


def node_row(node: dict[str, Any]) -> dict[str, Any]:
    meta, spec, status = node.get("metadata", {}), node.get("spec", {}), node.get("status", {})
    labels = meta.get("labels") or {}
    kind, source = capacity_type(labels)
    zone_from_id, instance_id = parse_provider_id(spec.get("providerID"))
    zone = _first(labels, ZONE_LABELS) or zone_from_id
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
    return {
        "name": meta["name"],
        "provider_id": spec.get("providerID"),
        "instance_id": instance_id,
        "capacity_type": kind,
        "capacity_type_source": source,
        "instance_type": _first(labels, TYPE_LABELS),
        "region": _first(labels, REGION_LABELS) or (zone[:-1] if zone else None),
        "zone": zone,
        "ready": ready,
        "unschedulable": bool(spec.get("unschedulable")),
        "labels": {k: v for k, v in labels.items() if k in KEPT_LABELS},
    }


def pod_owner(pod: dict[str, Any]) -> tuple[str | None, str | None]:
    """The workload a pod belongs to; a ReplicaSet made by a Deployment is reported as the Deployment."""
    meta = pod.get("metadata", {})
    refs = meta.get("ownerReferences") or []
    ref = next((r for r in refs if r.get("controller")), refs[0] if refs else None)
    if ref is None:
        return None, None
    kind, name = ref.get("kind"), ref.get("name")
    template_hash = (meta.get("labels") or {}).get("pod-template-hash")
    if kind == "ReplicaSet" and template_hash and name and name.endswith("-" + template_hash):
        return "Deployment", name[: -len(template_hash) - 1]
    return kind, name


def pod_row(pod: dict[str, Any], spot_nodes: set[str]) -> dict[str, Any]:
    meta, spec, status = pod.get("metadata", {}), pod.get("spec", {}), pod.get("status", {})
    owner_kind, owner_name = pod_owner(pod)
    node = spec.get("nodeName")
    return {
        "namespace": meta.get("namespace") or "default",
        "name": meta["name"],
        "node_name": node,
        "phase": status.get("phase"),
        "owner_kind": owner_kind,
        "owner_name": owner_name,
        "on_spot": node in spot_nodes,
    }


@dataclass(frozen=True)
class Inventory:
    nodes: list[dict[str, Any]]
    pods: list[dict[str, Any]]

    @property
    def spot_nodes(self) -> list[dict[str, Any]]:
        return [n for n in self.nodes if n["capacity_type"] == "spot"]

    @property
    def spot_pods(self) -> list[dict[str, Any]]:
        return [p for p in self.pods if p["on_spot"]]

    def workloads_on_spot(self) -> list[dict[str, Any]]:
        """(namespace, owner) with how many of its pods run on spot nodes: who feels an interruption."""
        counts: dict[tuple[str, str, str], int] = {}
        for pod in self.spot_pods:
            key = (pod["namespace"], pod["owner_kind"] or "Pod", pod["owner_name"] or pod["name"])
            counts[key] = counts.get(key, 0) + 1
        return [
            {"namespace": ns, "owner_kind": kind, "owner_name": name, "spot_pods": n}
            for (ns, kind, name), n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        ]


def build_inventory(nodes: Iterable[dict[str, Any]], pods: Iterable[dict[str, Any]]) -> Inventory:
    node_rows = [node_row(n) for n in nodes]
    spot = {n["name"] for n in node_rows if n["capacity_type"] == "spot"}
    return Inventory(node_rows, [pod_row(p, spot) for p in pods])


def list_all(call: Callable[..., Any], *, page_size: int = 500, timeout_s: float = 10.0) -> list[dict[str, Any]]:
    """Every item of a CoreV1Api list call, page by page, as raw JSON dicts."""
    items: list[dict[str, Any]] = []
    token = None
    while True:
        kwargs: dict[str, Any] = {"limit": page_size, "_preload_content": False, "_request_timeout": timeout_s}
        if token:
            kwargs["_continue"] = token
        response = call(**kwargs)
        body = json.loads(response.data)
        items.extend(body.get("items") or [])
        token = (body.get("metadata") or {}).get("continue")
        if not token:
            return items
