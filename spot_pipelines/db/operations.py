"""Operations models and queries: spot interruption events, dead letters, component health,
the Kubernetes inventory and its watcher heartbeat (tables created by migration 0003)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from spot_pipelines.db.base import Base, JSONType, UTCDateTime, utcnow

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
