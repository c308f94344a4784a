"""One round of the component health checks, run by the component_health asset and, outside a run, right
after a successful discovery (`refresh_component_health`): builds the checks from the resources' settings,
runs them concurrently and writes the round (rows, state, transition logs)."""

import os
import socket
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone

import dagster as dg

from spot_pipelines.core import health
from spot_pipelines.core.clock import utcnow
from spot_pipelines.db.engine import ensure_schema, session_factory
from spot_pipelines.db.health import write_health_round
from spot_pipelines.resources.kubernetes import KubernetesResource
from spot_pipelines.resources.redis import RedisResource

RECOMMENDATIONS_KEY = dg.AssetKey("spot_recommendations")


@dataclass(frozen=True)
class HealthRound:
    round_id: str
    checked_at: datetime
    results: list[health.CheckResult]
    transitions: list[health.Transition]
    seconds: float

    @property
    def overall(self) -> str:
        return health.worst([r.status for r in self.results])


def latest_materialization_lookup(instance: dg.DagsterInstance | None, key: dg.AssetKey = RECOMMENDATIONS_KEY):
    """A callable returning when `key` last materialized successfully (None: never), or None
    without an instance."""
    if instance is None:
        return None

    def lookup() -> datetime | None:
        entry = instance.get_latest_materialization_event(key)
        return datetime.fromtimestamp(entry.timestamp, timezone.utc) if entry is not None else None

    return lookup


def model_loader():
    """The ML module's artifact vetting (`core.ml.deserialize`), imported here, outside the timed
    round (a cold scikit-learn import can take longer than a check's timeout); None without it."""
    try:
        from spot_pipelines.core.ml import deserialize
    except ImportError:
        return None
    return lambda data, where, sha256: deserialize(data, where=where, expected_sha256=sha256)


def build_checks(db_url: str, *, thresholds: health.HealthThresholds, timeout_s: float,
                 redis_url: str | None, redis_queue_keys: list[str], k8s_configured: bool,
                 instance: dg.DagsterInstance | None = None, read_artifact=None,
                 load_model="default") -> dict[str, health.Check]:
    engine = ensure_schema(db_url)
    ready_sha, loaded_sha = health.ml_load_state(engine)
    if load_model == "default":
        # Import the ML stack (seconds, cold) only when a ready model has not been proven loadable yet.
        load_model = model_loader() if ready_sha and ready_sha != loaded_sha else None
    t = thresholds
    optimizer_lookup = latest_materialization_lookup(instance)
    return {
        health.APP_DATABASE: lambda: health.check_database(engine, t),
        health.REDIS: lambda: health.check_redis(redis_url, redis_queue_keys, t, timeout_s=timeout_s),
        health.KUBERNETES_WATCHER: lambda: health.check_k8s_watcher(engine, k8s_configured, t),
        health.OPTIMIZER: lambda: health.check_optimizer(engine, t, optimizer_lookup),
        health.PRICE_DATA: lambda: health.check_table_freshness(
            engine, "spot_price_history", "ts", t.price_age_degraded_s, t.price_age_critical_s, what="spot prices"),
        health.RISK_SCORES: lambda: health.check_table_freshness(
            engine, "interruption_risk_scores", "scored_at", t.risk_age_degraded_s, t.risk_age_critical_s,
            what="risk scores"),
        health.ML_MODEL: lambda: health.check_ml_model(engine, t, read_artifact, load=load_model,
                                                       loaded_sha256=loaded_sha),
    }


def run_health_round(db_url: str, checks: dict[str, health.Check], *, timeout_s: float,
                     run_id: str | None = None, trigger: str = "schedule") -> HealthRound:
    """Run the checks concurrently and write the round (rows, state, transition logs)."""
    started = time.monotonic()
    checked_at = utcnow()
    results = health.run_checks(checks, timeout_s=timeout_s)
    round_id = str(uuid.uuid4())
    context = {"trigger": trigger, "host": socket.gethostname(), "pid": os.getpid()}
    with session_factory(db_url)() as session, session.begin():
        changes = write_health_round(session, results, round_id=round_id, checked_at=checked_at, run_id=run_id,
                                     context=context)
    return HealthRound(round_id, checked_at, results, changes, time.monotonic() - started)


def refresh_component_health(app_db_url: str, instance: dg.DagsterInstance | None = None, *,
                             thresholds: health.HealthThresholds | None = None, timeout_s: float = 1.0,
                             redis: RedisResource | None = None, kubernetes: KubernetesResource | None = None,
                             run_id: str | None = None, trigger: str = "manual") -> HealthRound:
    """One health round with the environment's configuration, outside the schedule (e.g. right
    after a successful discovery)."""
    redis = redis or RedisResource()
    kubernetes = kubernetes or KubernetesResource()
    checks = build_checks(app_db_url, thresholds=thresholds or health.HealthThresholds(), timeout_s=timeout_s,
                          redis_url=redis.resolved_url(), redis_queue_keys=redis.resolved_queue_keys(),
                          k8s_configured=kubernetes.is_configured(), instance=instance)
    return run_health_round(app_db_url, checks, timeout_s=timeout_s, run_id=run_id, trigger=trigger)
