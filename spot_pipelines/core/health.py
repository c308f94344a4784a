"""Component health: seven checks run concurrently, each bounded by its own timeout.

Every check is a plain callable returning a `CheckOutcome`; this module evaluates what the probes
(db/health.py, the Redis resource) read, so the round logic is tested without a database.
Statuses: `healthy`, `degraded`, `critical`, and `not_configured` (an optional dependency that is
not set up: a status, not an error).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from spot_pipelines.core.redaction import redact_text

HEALTHY, DEGRADED, CRITICAL, NOT_CONFIGURED = "healthy", "degraded", "critical", "not_configured"
SEVERITY = {NOT_CONFIGURED: 0, HEALTHY: 0, DEGRADED: 1, CRITICAL: 2}

# The seven components, in display order.
APP_DATABASE, REDIS, KUBERNETES_WATCHER, OPTIMIZER, PRICE_DATA, RISK_SCORES, ML_MODEL = (
    "app_database",
    "redis",
    "kubernetes_watcher",
    "optimizer",
    "price_data",
    "risk_scores",
    "ml_model",
)
COMPONENTS = (APP_DATABASE, REDIS, KUBERNETES_WATCHER, OPTIMIZER, PRICE_DATA, RISK_SCORES, ML_MODEL)


@dataclass(frozen=True)
class HealthThresholds:
    """Where `degraded` and `critical` begin. Ages in seconds, latencies in milliseconds."""

    db_latency_degraded_ms: float = 250.0
    db_latency_critical_ms: float = 750.0
    redis_latency_degraded_ms: float = 100.0
    redis_latency_critical_ms: float = 500.0
    redis_queue_depth_degraded: int = 1_000
    redis_queue_depth_critical: int = 10_000
    k8s_heartbeat_degraded_s: float = 15 * 60
    k8s_heartbeat_critical_s: float = 60 * 60
    optimizer_age_degraded_s: float = 26 * 3600
    optimizer_age_critical_s: float = 72 * 3600
    # Spot prices are refreshed hourly (hourly_spot_price_schedule, at :05): degraded once the newest fetch
    # is an hour plus 30 min of slack old (a slow or retried run), critical after 6 h (five missed refreshes).
    price_age_degraded_s: float = 90 * 60
    price_age_critical_s: float = 6 * 3600
    risk_age_degraded_s: float = 26 * 3600
    risk_age_critical_s: float = 72 * 3600
    model_age_degraded_s: float = 14 * 86400
    model_age_critical_s: float = 45 * 86400


@dataclass(frozen=True)
class CheckOutcome:
    status: str
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CheckResult:
    component: str
    status: str
    latency_ms: float
    details: dict[str, Any]


Check = Callable[[], CheckOutcome]


def by_age(age_s: float, degraded_s: float, critical_s: float) -> str:
    return CRITICAL if age_s >= critical_s else DEGRADED if age_s >= degraded_s else HEALTHY


def by_value(value: float, degraded: float, critical: float) -> str:
    return CRITICAL if value >= critical else DEGRADED if value >= degraded else HEALTHY


def worst(statuses: Sequence[str]) -> str:
    relevant = [s for s in statuses if s != NOT_CONFIGURED]
    return max(relevant, key=SEVERITY.__getitem__, default=NOT_CONFIGURED if statuses else HEALTHY)


def summary(details: Mapping[str, Any]) -> str:
    """One line for a person: the error or reason, else the measured age, latency or queue depth."""
    d = details
    if "error" in d:
        return str(d["error"])
    if "reason" in d:
        return str(d["reason"])
    if "age_s" in d:
        return f"newest {d['age_s']:.0f}s old"
    if "queue_depth" in d:
        return f"ping {d['latency_ms']} ms, queue depth {d['queue_depth']}"
    if "latency_ms" in d:
        return f"{d['latency_ms']} ms"
    return ""


def error_details(exc: BaseException) -> dict[str, Any]:
    return {"error": redact_text(f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")[:500]}


# ---------------------------------------------------------------------------------------------
# Running a round


def run_checks(
    checks: Mapping[str, Check],
    *,
    timeout_s: float | Mapping[str, float] = 1.0,
    clock: Callable[[], float] = time.monotonic,
) -> list[CheckResult]:
    """Run every check at once; a check still running after its timeout is `critical: timed out`.

    The round takes about max(timeouts), never their sum. Checks run on daemon threads rather than
    a ThreadPoolExecutor on purpose: the executor joins its workers at interpreter exit, so one
    dependency that hangs forever would hang the run process at exit. A timed-out check's thread is
    abandoned (its clients carry their own socket timeouts, so it ends on its own) and its late
    result is discarded.
    """
    timeouts = {name: float(timeout_s[name] if isinstance(timeout_s, Mapping) else timeout_s) for name in checks}
    results: dict[str, CheckResult] = {}
    done = {name: threading.Event() for name in checks}
    lock = threading.Lock()

    def worker(name: str, check: Check) -> None:
        started = clock()
        try:
            outcome = check()
            if outcome.status not in SEVERITY:
                outcome = CheckOutcome(CRITICAL, {"error": f"check returned unknown status {outcome.status!r}"})
        except Exception as exc:  # a broken check is a critical component, never a crashed round
            outcome = CheckOutcome(CRITICAL, error_details(exc))
        latency = (clock() - started) * 1000
        with lock:
            results.setdefault(name, CheckResult(name, outcome.status, round(latency, 2), dict(outcome.details)))
        done[name].set()

    started = clock()
    for name, check in checks.items():
        threading.Thread(target=worker, args=(name, check), name=f"health-{name}", daemon=True).start()
    for name in sorted(checks, key=timeouts.__getitem__):  # earliest deadline first
        done[name].wait(max(0.0, timeouts[name] - (clock() - started)))
        with lock:  # decided at its deadline: a late answer cannot overwrite the timeout
            results.setdefault(
                name,
                CheckResult(
                    name,
                    CRITICAL,
                    round(timeouts[name] * 1000, 2),
                    {"error": f"timed out after {timeouts[name]:g}s", "timed_out": True},
                ),
            )
    with lock:
        return [results[name] for name in checks]


@dataclass(frozen=True)
class Transition:
    component: str
    previous: str | None
    current: str
    details: dict[str, Any]

    @property
    def level(self) -> str:
        return {CRITICAL: "ERROR", DEGRADED: "WARNING"}.get(self.current, "INFO")

    @property
    def message(self) -> str:
        was = self.previous or "unknown"
        cause = self.details.get("error") or self.details.get("reason") or ""
        return f"{self.component}: {was} → {self.current}" + (f" ({cause})" if cause else "")


def transitions(previous: Mapping[str, str], results: Sequence[CheckResult]) -> list[Transition]:
    """Status changes against the last known state. A component seen for the first time counts
    only when it starts out degraded or critical."""
    changes = []
    for result in results:
        before = previous.get(result.component)
        if before == result.status or (before is None and SEVERITY[result.status] == 0):
            continue
        changes.append(Transition(result.component, before, result.status, result.details))
    return changes


# ---------------------------------------------------------------------------------------------
# Outcomes from what a probe read


def age_outcome(
    latest: datetime | None, now: datetime, degraded_s: float, critical_s: float, what: str, **extra: Any
) -> CheckOutcome:
    if latest is None:
        return CheckOutcome(DEGRADED, {"reason": f"no {what} yet", **extra})
    age = max(0.0, (now - latest).total_seconds())
    return CheckOutcome(
        by_age(age, degraded_s, critical_s),
        {
            "latest": latest.isoformat(),
            "age_s": round(age, 1),
            "degraded_after_s": degraded_s,
            "critical_after_s": critical_s,
            **extra,
        },
    )


def redis_outcome(where: str, latency_ms: float, depths: Mapping[str, int], t: HealthThresholds) -> CheckOutcome:
    depth = sum(depths.values())
    status = worst(
        [
            by_value(latency_ms, t.redis_latency_degraded_ms, t.redis_latency_critical_ms),
            by_value(depth, t.redis_queue_depth_degraded, t.redis_queue_depth_critical),
        ]
    )
    return CheckOutcome(
        status, {"server": where, "latency_ms": round(latency_ms, 2), "queue_depth": depth, "queues": dict(depths)}
    )


def k8s_watcher_outcome(
    heartbeats: Sequence[tuple], configured: bool, t: HealthThresholds, now: datetime
) -> CheckOutcome:
    """`heartbeats`: (cluster, heartbeat_at, status, error, last_success_at) per cluster."""
    if not heartbeats:
        if not configured:
            return CheckOutcome(
                NOT_CONFIGURED,
                {"reason": "no Kubernetes cluster configured (KUBECONFIG unset and not running in a cluster)"},
            )
        return CheckOutcome(DEGRADED, {"reason": "the Kubernetes watcher has not reported yet"})
    statuses, clusters = [], {}
    for cluster, heartbeat_at, status, error, last_success_at in heartbeats:
        age = max(0.0, (now - heartbeat_at).total_seconds())
        state = by_age(age, t.k8s_heartbeat_degraded_s, t.k8s_heartbeat_critical_s)
        if status != "ok":
            since_ok = (now - last_success_at).total_seconds() if last_success_at else float("inf")
            state = worst([state, CRITICAL if since_ok >= t.k8s_heartbeat_critical_s else DEGRADED])
        statuses.append(state)
        clusters[cluster] = {
            "status": state,
            "heartbeat_age_s": round(age, 1),
            "last_poll": status,
            **({"error": error} if error else {}),
        }
    details: dict[str, Any] = {"clusters": clusters}
    errors = [c["error"] for c in clusters.values() if "error" in c]
    if errors:
        details["error"] = errors[0]
    if not configured:
        details["note"] = "no cluster is configured now; these heartbeats are from an earlier configuration"
    return CheckOutcome(worst(statuses), details)
