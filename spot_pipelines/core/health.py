"""Component health: seven checks run concurrently, each bounded by its own timeout.

Every check is a plain callable returning a `CheckOutcome`; the dependencies (an engine, a Redis
URL, a clock, a Dagster-instance lookup) are injected, so the round logic is tested directly.
Statuses: `healthy`, `degraded`, `critical`, and `not_configured` (an optional dependency that is
not set up: a status, not an error).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from sqlalchemy import Engine, column, func, inspect, select, table, text

from spot_pipelines.core.clock import utcnow
from spot_pipelines.core.redaction import redact_text
from spot_pipelines.db.base import JSONType, UTCDateTime

HEALTHY, DEGRADED, CRITICAL, NOT_CONFIGURED = "healthy", "degraded", "critical", "not_configured"
SEVERITY = {NOT_CONFIGURED: 0, HEALTHY: 0, DEGRADED: 1, CRITICAL: 2}

# The seven components, in display order.
APP_DATABASE, REDIS, KUBERNETES_WATCHER, OPTIMIZER, PRICE_DATA, RISK_SCORES, ML_MODEL = (
    "app_database", "redis", "kubernetes_watcher", "optimizer", "price_data", "risk_scores", "ml_model")
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
    price_age_degraded_s: float = 6 * 3600
    price_age_critical_s: float = 26 * 3600
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

    def as_row(self) -> dict[str, Any]:
        return asdict(self)


Check = Callable[[], CheckOutcome]


def by_age(age_s: float, degraded_s: float, critical_s: float) -> str:
    return CRITICAL if age_s >= critical_s else DEGRADED if age_s >= degraded_s else HEALTHY


def by_value(value: float, degraded: float, critical: float) -> str:
    return CRITICAL if value >= critical else DEGRADED if value >= degraded else HEALTHY


def worst(statuses: Sequence[str]) -> str:
    relevant = [s for s in statuses if s != NOT_CONFIGURED]
    return max(relevant, key=SEVERITY.__getitem__, default=NOT_CONFIGURED if statuses else HEALTHY)


def _error_details(exc: BaseException) -> dict[str, Any]:

    return {"error": redact_text(f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")[:500]}


# ---------------------------------------------------------------------------------------------
# Running a round


def run_checks(checks: Mapping[str, Check], *, timeout_s: float | Mapping[str, float] = 1.0,
               clock: Callable[[], float] = time.monotonic) -> list[CheckResult]:
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
            outcome = CheckOutcome(CRITICAL, _error_details(exc))
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
            results.setdefault(name, CheckResult(name, CRITICAL, round(timeouts[name] * 1000, 2), {
                "error": f"timed out after {timeouts[name]:g}s", "timed_out": True}))
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
# The checks


def check_database(engine: Engine, t: HealthThresholds, clock: Callable[[], float] = time.perf_counter) -> CheckOutcome:
    started = clock()
    with engine.connect() as conn:
        conn.execute(text("SELECT 1")).scalar()
    latency = (clock() - started) * 1000
    status = by_value(latency, t.db_latency_degraded_ms, t.db_latency_critical_ms)
    return CheckOutcome(status, {"latency_ms": round(latency, 2), "dialect": engine.dialect.name,
                                 "degraded_at_ms": t.db_latency_degraded_ms})


def check_redis(url: str | None, queue_keys: Sequence[str], t: HealthThresholds, timeout_s: float = 1.0,
                clock: Callable[[], float] = time.perf_counter) -> CheckOutcome:
    if not url:
        return CheckOutcome(NOT_CONFIGURED, {"reason": "REDIS_URL is not set"})
    import redis

    client = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
    target = urlparse(url)
    where = f"{target.hostname}:{target.port or 6379}"
    try:
        started = clock()
        client.ping()
        latency = (clock() - started) * 1000
        depths: dict[str, int] = {}
        for key in queue_keys:
            kind = client.type(key)
            kind = kind.decode() if isinstance(kind, bytes) else kind
            depths[key] = {"list": client.llen, "zset": client.zcard, "stream": client.xlen,
                           "set": client.scard}.get(kind, lambda _k: 0)(key)
    except redis.RedisError as exc:
        return CheckOutcome(CRITICAL, {"server": where, **_error_details(exc)})
    finally:
        client.close()
    depth = sum(depths.values())
    status = worst([by_value(latency, t.redis_latency_degraded_ms, t.redis_latency_critical_ms),
                    by_value(depth, t.redis_queue_depth_degraded, t.redis_queue_depth_critical)])
    return CheckOutcome(status, {"server": where, "latency_ms": round(latency, 2), "queue_depth": depth,
                                 "queues": depths})


def _has_table(engine: Engine, name: str) -> bool:
    return inspect(engine).has_table(name)


def _max_time(engine: Engine, table_name: str, column_name: str) -> datetime | None:
    with engine.connect() as conn:
        return conn.execute(select(func.max(column(column_name, UTCDateTime)).label("m"))
                            .select_from(table(table_name))).scalar()


def _age_outcome(latest: datetime | None, now: datetime, degraded_s: float, critical_s: float,
                 what: str, **extra: Any) -> CheckOutcome:
    if latest is None:
        return CheckOutcome(DEGRADED, {"reason": f"no {what} yet", **extra})
    age = max(0.0, (now - latest).total_seconds())
    return CheckOutcome(by_age(age, degraded_s, critical_s), {
        "latest": latest.isoformat(), "age_s": round(age, 1), "degraded_after_s": degraded_s,
        "critical_after_s": critical_s, **extra})


def check_table_freshness(engine: Engine, table_name: str, column_name: str, degraded_s: float, critical_s: float,
                          now: Callable[[], datetime] = utcnow, what: str = "rows") -> CheckOutcome:
    """Age of the newest row; a table that does not exist yet means its pipeline is not deployed."""
    if not _has_table(engine, table_name):
        return CheckOutcome(NOT_CONFIGURED, {"reason": f"table {table_name} does not exist (not deployed yet)"})
    return _age_outcome(_max_time(engine, table_name, column_name), now(), degraded_s, critical_s, what,
                        table=table_name)


def check_k8s_watcher(engine: Engine, configured: bool, t: HealthThresholds,
                      now: Callable[[], datetime] = utcnow) -> CheckOutcome:
    with engine.connect() as conn:
        rows = conn.execute(select(column("cluster"), column("heartbeat_at", UTCDateTime), column("status"),
                                   column("error"), column("last_success_at", UTCDateTime))
                            .select_from(table("k8s_watcher_heartbeats"))).all()
    if not rows:
        if not configured:
            return CheckOutcome(NOT_CONFIGURED, {"reason": "no Kubernetes cluster configured "
                                                           "(KUBECONFIG unset and not running in a cluster)"})
        return CheckOutcome(DEGRADED, {"reason": "the Kubernetes watcher has not reported yet"})
    current = now()
    statuses, clusters = [], {}
    for cluster, heartbeat_at, status, error, last_success_at in rows:
        age = max(0.0, (current - heartbeat_at).total_seconds())
        state = by_age(age, t.k8s_heartbeat_degraded_s, t.k8s_heartbeat_critical_s)
        if status != "ok":
            since_ok = (current - last_success_at).total_seconds() if last_success_at else float("inf")
            state = worst([state, CRITICAL if since_ok >= t.k8s_heartbeat_critical_s else DEGRADED])
        statuses.append(state)
        clusters[cluster] = {"status": state, "heartbeat_age_s": round(age, 1), "last_poll": status,
                             **({"error": error} if error else {})}
    details: dict[str, Any] = {"clusters": clusters}
    errors = [c["error"] for c in clusters.values() if "error" in c]
    if errors:
        details["error"] = errors[0]
    if not configured:
        details["note"] = "no cluster is configured now; these heartbeats are from an earlier configuration"
    return CheckOutcome(worst(statuses), details)


def check_optimizer(engine: Engine, t: HealthThresholds, latest_materialization: Callable[[], datetime | None] | None,
                    now: Callable[[], datetime] = utcnow) -> CheckOutcome:
    """The newest successful `spot_recommendations` materialization (Dagster instance), else the
    table's newest `generated_at`."""
    latest, source = None, None
    if latest_materialization is not None:
        latest, source = latest_materialization(), "dagster materialization of spot_recommendations"
    has_table = _has_table(engine, "spot_recommendations")
    if latest is None and has_table:
        latest, source = _max_time(engine, "spot_recommendations", "generated_at"), "spot_recommendations.generated_at"
    if latest is None and not has_table and latest_materialization is None:
        return CheckOutcome(NOT_CONFIGURED, {"reason": "the optimizer (spot_recommendations) is not deployed"})
    if latest is None:
        return CheckOutcome(DEGRADED, {"reason": "spot_recommendations has never been materialized successfully"})
    return _age_outcome(latest, now(), t.optimizer_age_degraded_s, t.optimizer_age_critical_s,
                        "successful optimizer run", source=source)


def _read_local(uri: str) -> bytes:
    return Path(uri.removeprefix("file://")).read_bytes()


def check_ml_model(engine: Engine, t: HealthThresholds, read_artifact: Callable[[str], bytes] | None = None,
                   now: Callable[[], datetime] = utcnow,
                   load: Callable[[bytes, str, str], Any] | None = None,
                   loaded_sha256: str | None = None) -> CheckOutcome:
    """The newest `ready` model in `model_registry`: its artifact readable, matching its sha256,
    and (with `load(data, where, sha256)`, e.g. the ML module's `deserialize`) loadable.

    Loading is proven once per artifact: `loaded_sha256` is the artifact an earlier round loaded
    (its `loaded_sha256` detail); bytes with that same sha256 need no second unpickling."""
    if not _has_table(engine, "model_registry"):
        return CheckOutcome(NOT_CONFIGURED, {"reason": "table model_registry does not exist (ML not deployed yet)"})
    cols = ", ".join(["version", "status", "trained_at", "artifact_uri", "artifact_sha256", "status_reason"])
    with engine.connect() as conn:
        rows = conn.execute(text(f"SELECT {cols} FROM model_registry ORDER BY version DESC LIMIT 50")).all()
    if not rows:
        return CheckOutcome(DEGRADED, {"reason": "no model has been trained yet"})
    newest = rows[0]
    ready = next((r for r in rows if r.status == "ready"), None)
    if ready is None:
        return CheckOutcome(CRITICAL, {"reason": f"no loadable model: newest v{newest.version} is {newest.status}"
                                       + (f" ({newest.status_reason})" if newest.status_reason else ""),
                                       "newest_version": newest.version})
    try:
        data = (read_artifact or _read_local)(ready.artifact_uri)
    except Exception as exc:
        return CheckOutcome(CRITICAL, {"reason": f"model v{ready.version} artifact cannot be read",
                                       "version": ready.version, **_error_details(exc)})
    if hashlib.sha256(data).hexdigest() != ready.artifact_sha256:
        return CheckOutcome(CRITICAL, {"reason": f"model v{ready.version} artifact does not match its sha256",
                                       "version": ready.version})
    loaded: dict[str, Any] = {}
    if loaded_sha256 == ready.artifact_sha256:
        loaded = {"loaded_sha256": loaded_sha256, "load_proven": "by an earlier round (same sha256)"}
    elif load is not None:
        try:
            load(data, f"v{ready.version}", ready.artifact_sha256)
        except Exception as exc:
            return CheckOutcome(CRITICAL, {"reason": f"model v{ready.version} cannot be loaded",
                                           "version": ready.version, **_error_details(exc)})
        loaded = {"loaded_sha256": ready.artifact_sha256, "load_proven": "this round"}
    trained_at = UTCDateTime().process_result_value(_as_datetime(ready.trained_at), None)
    outcome = _age_outcome(trained_at, now(), t.model_age_degraded_s, t.model_age_critical_s, "model",
                           version=ready.version, artifact_bytes=len(data), **loaded)
    if newest.version != ready.version and newest.status == "blocked":
        details = {**outcome.details, "reason": f"newest v{newest.version} is blocked; serving v{ready.version}"}
        return CheckOutcome(worst([outcome.status, DEGRADED]), details)
    return outcome


def ml_load_state(engine: Engine) -> tuple[str | None, str | None]:
    """(sha256 of the newest ready model, sha256 an earlier round proved loadable): lets the caller
    import the (heavy) loader only when there is something new to load."""
    try:
        with engine.connect() as conn:
            ready = conn.execute(text("SELECT artifact_sha256 FROM model_registry WHERE status = 'ready' "
                                      "ORDER BY version DESC LIMIT 1")).scalar()
            last = conn.execute(select(column("details", JSONType)).select_from(table("component_health"))
                                .where(column("component") == ML_MODEL).order_by(column("id").desc())
                                .limit(1)).scalar()
    except Exception:  # no registry (yet): nothing to load
        return None, None
    return ready, (last or {}).get("loaded_sha256") if isinstance(last, dict) else None


def _as_datetime(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))
