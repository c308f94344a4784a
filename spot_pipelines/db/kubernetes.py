"""The Kubernetes inventory (nodes, pods) and its watcher heartbeat (tables of migration 0003)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Connection, ForeignKey, Index, Integer, String, Text, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from spot_pipelines.db import discovery
from spot_pipelines.db.base import Base, JSONType, UTCDateTime


class K8sNode(Base):
    __tablename__ = "k8s_nodes"

    cluster: Mapped[str] = mapped_column(String(128), primary_key=True)
    name: Mapped[str] = mapped_column(String(253), primary_key=True)
    provider_id: Mapped[str | None] = mapped_column(String(256))
    instance_id: Mapped[str | None] = mapped_column(String(32))
    account_id: Mapped[int | None] = mapped_column(Integer, ForeignKey("accounts.id", ondelete="SET NULL"))
    capacity_type: Mapped[str] = mapped_column(String(16), nullable=False)  # spot | on-demand | unknown
    capacity_type_source: Mapped[str | None] = mapped_column(String(64))  # the label it came from
    instance_type: Mapped[str | None] = mapped_column(String(64))
    region: Mapped[str | None] = mapped_column(String(32))
    zone: Mapped[str | None] = mapped_column(String(32))
    ready: Mapped[bool] = mapped_column(Boolean, nullable=False)
    unschedulable: Mapped[bool] = mapped_column(Boolean, nullable=False)
    labels: Mapped[dict[str, str] | None] = mapped_column(JSONType)
    observed_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)

    __table_args__ = (Index("ix_k8s_nodes_instance_id", "instance_id"),)


class K8sPod(Base):
    __tablename__ = "k8s_pods"

    cluster: Mapped[str] = mapped_column(String(128), primary_key=True)
    namespace: Mapped[str] = mapped_column(String(253), primary_key=True)
    name: Mapped[str] = mapped_column(String(253), primary_key=True)
    node_name: Mapped[str | None] = mapped_column(String(253))
    phase: Mapped[str | None] = mapped_column(String(32))
    owner_kind: Mapped[str | None] = mapped_column(String(64))
    owner_name: Mapped[str | None] = mapped_column(String(253))
    on_spot: Mapped[bool] = mapped_column(Boolean, nullable=False)
    observed_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)

    __table_args__ = (Index("ix_k8s_pods_node", "cluster", "node_name"),)


class K8sWatcherHeartbeat(Base):
    __tablename__ = "k8s_watcher_heartbeats"

    cluster: Mapped[str] = mapped_column(String(128), primary_key=True)
    heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False)  # ok | error
    node_count: Mapped[int] = mapped_column(Integer, nullable=False)
    pod_count: Mapped[int] = mapped_column(Integer, nullable=False)
    error: Mapped[str | None] = mapped_column(Text)
    last_success_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


def write_k8s_inventory(
    session: Session,
    cluster: str,
    nodes: Sequence[dict[str, Any]],
    pods: Sequence[dict[str, Any]],
    *,
    observed_at: datetime,
) -> dict[str, int]:
    """Replace the cluster's snapshot: upsert what was seen, delete what is gone; map each node's
    provider-ID instance to the discovered instance (and so its account)."""
    from sqlalchemy import delete

    from spot_pipelines.db.upsert import bulk_upsert

    owners = discovery.accounts_of_instances(session, [n["instance_id"] for n in nodes if n.get("instance_id")])
    node_rows = [
        {**n, "cluster": cluster, "account_id": owners.get(n.get("instance_id")), "observed_at": observed_at}
        for n in nodes
    ]
    pod_rows = [{**p, "cluster": cluster, "observed_at": observed_at} for p in pods]
    bulk_upsert(session, K8sNode.__table__, node_rows, key=("cluster", "name"))
    bulk_upsert(session, K8sPod.__table__, pod_rows, key=("cluster", "namespace", "name"))
    gone_nodes = (
        session.execute(
            delete(K8sNode)
            .where(K8sNode.cluster == cluster, K8sNode.observed_at < observed_at)
            .execution_options(synchronize_session=False)
        ).rowcount
        or 0
    )
    gone_pods = (
        session.execute(
            delete(K8sPod)
            .where(K8sPod.cluster == cluster, K8sPod.observed_at < observed_at)
            .execution_options(synchronize_session=False)
        ).rowcount
        or 0
    )
    return {
        "nodes": len(node_rows),
        "pods": len(pod_rows),
        "nodes_matched": sum(1 for r in node_rows if r["account_id"]),
        "nodes_removed": gone_nodes,
        "pods_removed": gone_pods,
    }


def write_heartbeat(
    session: Session,
    cluster: str,
    *,
    at: datetime,
    ok: bool,
    node_count: int = 0,
    pod_count: int = 0,
    error: str | None = None,
) -> None:
    heartbeat = session.get(K8sWatcherHeartbeat, cluster)
    if heartbeat is None:
        heartbeat = K8sWatcherHeartbeat(cluster=cluster, node_count=0, pod_count=0)
        session.add(heartbeat)
    heartbeat.heartbeat_at = at
    heartbeat.status = "ok" if ok else "error"
    heartbeat.error = None if ok else error
    if ok:
        heartbeat.node_count, heartbeat.pod_count, heartbeat.last_success_at = node_count, pod_count, at


def watcher_heartbeats(conn: Connection) -> list[tuple]:
    """(cluster, heartbeat_at, status, error, last_success_at) of every watched cluster."""
    h = K8sWatcherHeartbeat
    rows = conn.execute(select(h.cluster, h.heartbeat_at, h.status, h.error, h.last_success_at))
    return [tuple(r) for r in rows]
