"""component_health: seven concurrent checks (app DB, Redis, Kubernetes watcher, optimizer, price
data, risk scores, ML model) written to the `component_health` table; status transitions go to
`system_logs`. The probes and the round live in db/health.py; the round is `refresh_component_health`
(spot_pipelines.assets), which discovery also runs."""

from dataclasses import fields

import dagster as dg
from pydantic import Field

from spot_pipelines.assets import preview_table, refresh_component_health, table_metadata
from spot_pipelines.core import health
from spot_pipelines.db.health import ComponentHealth, HealthRound
from spot_pipelines.resources.app_database import AppDatabase
from spot_pipelines.resources.kubernetes import KubernetesResource
from spot_pipelines.resources.redis import RedisResource

PREVIEW_COLUMNS = ["component", "status", "latency_ms", "summary"]
_DEFAULTS = health.HealthThresholds()


class ComponentHealthConfig(dg.Config):
    """Per-check timeout and the thresholds where `degraded` / `critical` begin."""

    timeout_s: float = Field(
        default=1.0, gt=0, description="per-check timeout; the round takes about this long at most"
    )
    db_latency_degraded_ms: float = _DEFAULTS.db_latency_degraded_ms
    db_latency_critical_ms: float = _DEFAULTS.db_latency_critical_ms
    redis_latency_degraded_ms: float = _DEFAULTS.redis_latency_degraded_ms
    redis_latency_critical_ms: float = _DEFAULTS.redis_latency_critical_ms
    redis_queue_depth_degraded: int = _DEFAULTS.redis_queue_depth_degraded
    redis_queue_depth_critical: int = _DEFAULTS.redis_queue_depth_critical
    k8s_heartbeat_degraded_s: float = _DEFAULTS.k8s_heartbeat_degraded_s
    k8s_heartbeat_critical_s: float = _DEFAULTS.k8s_heartbeat_critical_s
    optimizer_age_degraded_s: float = _DEFAULTS.optimizer_age_degraded_s
    optimizer_age_critical_s: float = _DEFAULTS.optimizer_age_critical_s
    price_age_degraded_s: float = _DEFAULTS.price_age_degraded_s
    price_age_critical_s: float = _DEFAULTS.price_age_critical_s
    risk_age_degraded_s: float = _DEFAULTS.risk_age_degraded_s
    risk_age_critical_s: float = _DEFAULTS.risk_age_critical_s
    model_age_degraded_s: float = _DEFAULTS.model_age_degraded_s
    model_age_critical_s: float = _DEFAULTS.model_age_critical_s

    def thresholds(self) -> health.HealthThresholds:
        return health.HealthThresholds(**{f.name: getattr(self, f.name) for f in fields(health.HealthThresholds)})


@dg.asset(
    name="component_health",
    group_name="operations",
    metadata=table_metadata(
        ComponentHealth.__table__,
        {
            "round_id": "the health round (one per run or trigger)",
            "checked_at": "UTC time of the check",
            "component": "what was checked",
            "status": "healthy, degraded, critical or not_configured",
            "details": "what the check found (secrets never)",
        },
    ),
    kinds={"sql"},
    owners=["team:platform"],
    check_specs=[
        dg.AssetCheckSpec(
            "no_critical_components",
            asset="component_health",
            description="No component is critical in the latest round.",
        )
    ],
    description=(
        "One round of seven concurrent health checks (app database latency, Redis reachability and queue depth, "
        "Kubernetes watcher heartbeat, optimizer last successful run, price data freshness, risk scores age, "
        "ML model availability), one row per check in `component_health`; transitions go to `system_logs`."
    ),
)
def component_health(
    context: dg.AssetExecutionContext,
    config: ComponentHealthConfig,
    app_db: AppDatabase,
    redis: RedisResource,
    kubernetes: KubernetesResource,
) -> dg.MaterializeResult:
    result = refresh_component_health(
        app_db,
        context.instance,
        redis=redis,
        kubernetes=kubernetes,
        thresholds=config.thresholds(),
        timeout_s=config.timeout_s,
        run_id=context.run_id,
        trigger=context.run.tags.get("dagster/schedule_name", "manual"),
    )
    for change in result.transitions:
        (context.log.warning if change.level != "INFO" else context.log.info)(change.message)
    critical = [r.component for r in result.results if r.status == health.CRITICAL]
    return dg.MaterializeResult(
        metadata=_round_metadata(result),
        check_results=[
            dg.AssetCheckResult(
                check_name="no_critical_components",
                passed=not critical,
                severity=dg.AssetCheckSeverity.WARN,
                metadata={"critical": dg.MetadataValue.json(critical)},
            )
        ],
    )


def _round_metadata(result: HealthRound) -> dict:
    rows = [
        {"component": r.component, "status": r.status, "latency_ms": r.latency_ms, "summary": health.summary(r.details)}
        for r in result.results
    ]
    return {
        "dagster/row_count": len(result.results),
        "overall": result.overall,
        "statuses": dg.MetadataValue.json({r.component: r.status for r in result.results}),
        "round_seconds": round(result.seconds, 3),
        "transitions": len(result.transitions),
        # Freshness lag per component with an age (price data, risk scores, the model...), as series.
        **{f"{r.component}_age_s": round(float(r.details["age_s"]), 1) for r in result.results if "age_s" in r.details},
        "not_configured": dg.MetadataValue.json(
            [r.component for r in result.results if r.status == health.NOT_CONFIGURED]
        ),
        "preview": preview_table(rows, PREVIEW_COLUMNS),
    }


component_health_job = dg.define_asset_job(
    "component_health_job",
    selection=[component_health],
    description="One round of the seven component health checks.",
)
