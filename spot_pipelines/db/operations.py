"""Operations models and queries: spot interruption events, dead letters, component health,
the Kubernetes inventory and its watcher heartbeat (tables created by migration 0003)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from collections.abc import Sequence

from sqlalchemy import BigInteger, Boolean, Float, ForeignKey, Index, Integer, String, Text, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, Session, mapped_column

from spot_pipelines.core.clock import utcnow
from spot_pipelines.db.base import Base, JSONType, UTCDateTime
from spot_pipelines.db.models import Account, Instance

_BIGID = BigInteger().with_variant(Integer, "sqlite")

EVENT_TYPES = ("spot_interruption_warning", "rebalance_recommendation", "state_change")
HEALTH_STATUSES = ("healthy", "degraded", "critical", "not_configured")


class SpotInterruptionEvent(Base):
    """One EventBridge event about an EC2 instance, recorded once per event id."""

    __tablename__ = "spot_interruption_events"

    event_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    event_type: Mapped[str] = mapped_column(String(32), nullable=False)
    event_time: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    aws_account_id: Mapped[str] = mapped_column(String(12), nullable=False)
    account_id: Mapped[int | None] = mapped_column(Integer, ForeignKey("accounts.id", ondelete="SET NULL"))
    region: Mapped[str] = mapped_column(String(32), nullable=False)
    availability_zone: Mapped[str | None] = mapped_column(String(32))
    availability_zone_id: Mapped[str | None] = mapped_column(String(32))
    instance_id: Mapped[str] = mapped_column(String(32), nullable=False)
    instance_type: Mapped[str | None] = mapped_column(String(64))
    action_or_state: Mapped[str | None] = mapped_column(String(32))
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSONType)

    __table_args__ = (
        Index("ix_spot_interruption_events_time", "event_time"),
        Index("ix_spot_interruption_events_account_time", "account_id", "event_time"),
        Index("ix_spot_interruption_events_type_az_id", "instance_type", "availability_zone_id"),
        Index("ix_spot_interruption_events_instance", "instance_id"),
    )


class DeadLetter(Base):
    """A message that could not be processed, with the reason, kept instead of dropped."""

    __tablename__ = "dead_letters"

    id: Mapped[int] = mapped_column(_BIGID, primary_key=True, autoincrement=True)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    source: Mapped[str] = mapped_column(String(64), nullable=False)
    reason: Mapped[str] = mapped_column(Text, nullable=False)
    body: Mapped[str | None] = mapped_column(Text)
    message_id: Mapped[str | None] = mapped_column(String(128))

    __table_args__ = (
        Index("ix_dead_letters_received_at", "received_at"),
        Index("ix_dead_letters_source_message", "source", "message_id", unique=True),
    )


class ComponentHealth(Base):
    """One row per check per round."""

    __tablename__ = "component_health"

    id: Mapped[int] = mapped_column(_BIGID, primary_key=True, autoincrement=True)
    round_id: Mapped[str] = mapped_column(String(36), nullable=False)
    checked_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    component: Mapped[str] = mapped_column(String(64), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    latency_ms: Mapped[float | None] = mapped_column(Float)
    details: Mapped[dict[str, Any] | None] = mapped_column(JSONType)

    __table_args__ = (
        Index("ix_component_health_component_checked", "component", "checked_at"),
        Index("ix_component_health_checked_at", "checked_at"),
    )


class ComponentHealthState(Base):
    """The last known status of each component, to detect transitions."""

    __tablename__ = "component_health_state"

    component: Mapped[str] = mapped_column(String(64), primary_key=True)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    since: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    checked_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)


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


# ---------------------------------------------------------------------------------------------
# Queries and writes


def _insert(session: Session):
    dialect = session.get_bind().dialect.name
    try:
        return {"postgresql": postgresql.insert, "sqlite": sqlite.insert}[dialect]
    except KeyError:
        raise NotImplementedError(f"operations writes are not implemented for {dialect}") from None


def insert_ignoring_conflicts(session: Session, table, rows: Sequence[dict[str, Any]],
                              index_elements: Sequence[str] | None = None) -> None:
    insert = _insert(session)
    for start in range(0, len(rows), 1000):
        stmt = insert(table).values(list(rows[start:start + 1000]))
        session.execute(stmt.on_conflict_do_nothing(index_elements=list(index_elements) if index_elements else None))


def dead_letter_rows(rejected: Sequence[tuple[Any, str]], *, source: str, received_at: datetime) -> list[dict]:
    from spot_pipelines.core.interruptions import MAX_DEAD_LETTER_BODY
    from spot_pipelines.system_log import redact_text

    return [{"received_at": received_at, "source": source, "reason": redact_text(reason[:2000]),
             "body": redact_text((message.body or "")[:MAX_DEAD_LETTER_BODY]), "message_id": message.message_id}
            for message, reason in rejected]


def store_interruption_messages(session: Session, messages: Sequence[Any], *, received_at: datetime,
                                source: str = "spot_interruption_queue"):
    """Record one batch of SQS messages in the caller's transaction: each event once (by event id),
    enriched with the account and the discovered instance's AZ ID and type; everything else
    dead-lettered with its reason. Returns a `StoreResult`."""
    from spot_pipelines.core.interruptions import StoreResult, reason_kind, split

    batch = split(messages)
    result = StoreResult(duplicates=batch.duplicates_in_batch)
    rejected = list(batch.rejected)

    account_ids = sorted({e.aws_account_id for _, e in batch.events})
    by_aws_id: dict[str, list[tuple[int, str]]] = {}
    if account_ids:
        for id_, name, aws_id in session.execute(
                select(Account.id, Account.name, Account.aws_account_id)
                .where(Account.aws_account_id.in_(account_ids)).order_by(Account.id)):
            by_aws_id.setdefault(aws_id, []).append((id_, name))

    known = []
    for message, event in batch.events:
        if event.aws_account_id in by_aws_id:
            known.append(event)
        else:
            rejected.append((message, f"account: {event.aws_account_id} is not an onboarded account "
                                      f"(event {event.event_id}, {event.event_type} for {event.instance_id})"))

    ids = [e.event_id for e in known]
    existing = set(session.scalars(select(SpotInterruptionEvent.event_id)
                                   .where(SpotInterruptionEvent.event_id.in_(ids)))) if ids else set()
    new = [e for e in known if e.event_id not in existing]
    result.duplicates += len(known) - len(new)

    instances: dict[tuple[int, str], tuple[str | None, str | None, str | None]] = {}
    instance_ids = sorted({e.instance_id for e in new})
    if instance_ids:
        for account_id, instance_id, az, az_id, itype in session.execute(
                select(Instance.account_id, Instance.instance_id, Instance.availability_zone,
                       Instance.availability_zone_id, Instance.instance_type)
                .where(Instance.instance_id.in_(instance_ids))):
            instances[(account_id, instance_id)] = (az, az_id, itype)

    rows = []
    for event in new:
        owners = by_aws_id[event.aws_account_id]
        account_id = owners[0][0]
        az, az_id, itype = next((instances[(a, event.instance_id)] for a, _ in owners
                                 if (a, event.instance_id) in instances), (None, None, None))
        rows.append({
            "event_id": event.event_id, "event_type": event.event_type, "event_time": event.event_time,
            "received_at": received_at, "aws_account_id": event.aws_account_id, "account_id": account_id,
            "region": event.region, "availability_zone": event.availability_zone or az,
            "availability_zone_id": az_id, "instance_id": event.instance_id, "instance_type": itype,
            "action_or_state": event.action_or_state, "detail": event.detail,
        })
        for _, name in owners:
            result.affected_accounts.setdefault(name, []).append(event.event_id)
    insert_ignoring_conflicts(session, SpotInterruptionEvent.__table__, rows, ["event_id"])
    result.recorded = len(rows)

    if rejected:
        insert_ignoring_conflicts(session, DeadLetter.__table__,
                                  dead_letter_rows(rejected, source=source, received_at=received_at),
                                  ["source", "message_id"])
        result.dead_lettered = len(rejected)
        for _, reason in rejected:
            key = reason_kind(reason)
            result.dead_letter_reasons[key] = result.dead_letter_reasons.get(key, 0) + 1
    return result


def write_health_round(session: Session, results: Sequence[Any], *, round_id: str, checked_at: datetime,
                       run_id: str | None = None, context: dict[str, Any] | None = None) -> list[Any]:
    """Store one round (a row per check), update the per-component state, and write a
    `system_logs` row for every status transition with the diagnostic context of that moment:
    the check's details, every other component's status, and `context` (host, trigger…)."""
    from spot_pipelines.core.health import transitions
    from spot_pipelines.system_log import write_system_log

    session.add_all([ComponentHealth(round_id=round_id, checked_at=checked_at, component=r.component,
                                     status=r.status, latency_ms=r.latency_ms, details=_json(r.details))
                     for r in results])
    states = {s.component: s for s in session.scalars(select(ComponentHealthState).with_for_update())}
    changes = transitions({c: s.status for c, s in states.items()}, results)
    changed = {t.component for t in changes}
    # First sight of a component: insert-if-absent, so two concurrent first rounds cannot collide.
    insert_ignoring_conflicts(session, ComponentHealthState.__table__, [
        {"component": r.component, "status": r.status, "since": checked_at, "checked_at": checked_at}
        for r in results if r.component not in states], ["component"])
    for r in results:
        state = states.get(r.component)
        if state is not None:
            if r.component in changed:
                state.status, state.since = r.status, checked_at
            state.checked_at = checked_at
    snapshot = {r.component: r.status for r in results}
    by_component = {r.component: r for r in results}
    for change in changes:
        previous = states.get(change.component)
        write_system_log(session, "component_health", change.level, change.message, run_id=run_id, details={
            "component": change.component, "from": change.previous, "to": change.current,
            "previous_since": previous.since.isoformat() if previous else None,
            "latency_ms": by_component[change.component].latency_ms,
            "check": change.details, "round_id": round_id, "all_components": snapshot, **(context or {}),
        })
    return changes


def _json(details: dict[str, Any]) -> dict[str, Any]:
    import json

    return json.loads(json.dumps(details, default=str))


def latest_health(session: Session) -> list[ComponentHealth]:
    """The newest row of each component."""
    from sqlalchemy import func

    newest = (select(ComponentHealth.component, func.max(ComponentHealth.id).label("id"))
              .group_by(ComponentHealth.component).subquery())
    return list(session.scalars(select(ComponentHealth).join(newest, ComponentHealth.id == newest.c.id)
                                .order_by(ComponentHealth.component)))


def write_k8s_inventory(session: Session, cluster: str, nodes: Sequence[dict[str, Any]],
                        pods: Sequence[dict[str, Any]], *, observed_at: datetime) -> dict[str, int]:
    """Replace the cluster's snapshot: upsert what was seen, delete what is gone; map each node's
    provider-ID instance to the discovered instance (and so its account)."""
    from sqlalchemy import delete

    from spot_pipelines.db.upsert import bulk_upsert

    instance_ids = sorted({n["instance_id"] for n in nodes if n.get("instance_id")})
    owners: dict[str, int] = {}
    for start in range(0, len(instance_ids), 1000):
        owners.update(session.execute(select(Instance.instance_id, Instance.account_id)
                                      .where(Instance.instance_id.in_(instance_ids[start:start + 1000]))).tuples().all())
    node_rows = [{**n, "cluster": cluster, "account_id": owners.get(n.get("instance_id")), "observed_at": observed_at}
                 for n in nodes]
    pod_rows = [{**p, "cluster": cluster, "observed_at": observed_at} for p in pods]
    bulk_upsert(session, K8sNode.__table__, node_rows, key=("cluster", "name"))
    bulk_upsert(session, K8sPod.__table__, pod_rows, key=("cluster", "namespace", "name"))
    gone_nodes = session.execute(delete(K8sNode).where(K8sNode.cluster == cluster, K8sNode.observed_at < observed_at)
                                 .execution_options(synchronize_session=False)).rowcount or 0
    gone_pods = session.execute(delete(K8sPod).where(K8sPod.cluster == cluster, K8sPod.observed_at < observed_at)
                                .execution_options(synchronize_session=False)).rowcount or 0
    return {"nodes": len(node_rows), "pods": len(pod_rows), "nodes_matched": sum(1 for r in node_rows if r["account_id"]),
            "nodes_removed": gone_nodes, "pods_removed": gone_pods}


def write_heartbeat(session: Session, cluster: str, *, at: datetime, ok: bool, node_count: int = 0,
                    pod_count: int = 0, error: str | None = None) -> None:
    heartbeat = session.get(K8sWatcherHeartbeat, cluster)
    if heartbeat is None:
        heartbeat = K8sWatcherHeartbeat(cluster=cluster, node_count=0, pod_count=0)
        session.add(heartbeat)
    heartbeat.heartbeat_at = at
    heartbeat.status = "ok" if ok else "error"
    heartbeat.error = None if ok else error
    if ok:
        heartbeat.node_count, heartbeat.pod_count, heartbeat.last_success_at = node_count, pod_count, at
