"""Component health: concurrency and timeouts, the seven checks, transitions, the asset and schedule."""

import hashlib
import threading
import time
from datetime import timedelta

import dagster as dg
from sqlalchemy import create_engine, select, text

from spot_pipelines.assets import refresh_component_health
from spot_pipelines.assets.health import ComponentHealthConfig, component_health
from spot_pipelines.core import health
from spot_pipelines.core.clock import utcnow
from spot_pipelines.core.health import CheckOutcome, HealthThresholds
from spot_pipelines.db import health as db_health
from spot_pipelines.db.engine import ensure_schema, session_factory
from spot_pipelines.db.health import (
    ComponentHealth,
    ComponentHealthState,
    build_checks,
    run_health_round,
)
from spot_pipelines.db.kubernetes import K8sWatcherHeartbeat
from spot_pipelines.db.system_log import SystemLog
from spot_pipelines.resources.app_database import AppDatabase
from spot_pipelines.resources.kubernetes import KubernetesResource
from spot_pipelines.resources.redis import RedisResource, check_redis
from spot_pipelines.sensors.health import component_health_schedule
from spot_pipelines.sensors.kubernetes import k8s_inventory_schedule
from tests.support.health import latest_health

T = HealthThresholds()
NOW = utcnow().replace(minute=0, second=0, microsecond=0)


def ok() -> CheckOutcome:
    return CheckOutcome(health.HEALTHY, {"latency_ms": 1})


# --- the round -------------------------------------------------------------------------------


def test_a_hanging_check_times_out_and_the_round_takes_about_one_timeout():
    release = threading.Event()

    def hang() -> CheckOutcome:
        release.wait(30)
        return ok()

    checks = {f"c{i}": ok for i in range(6)} | {"stuck": hang}
    started = time.monotonic()
    results = health.run_checks(checks, timeout_s=0.3)
    elapsed = time.monotonic() - started
    release.set()
    assert elapsed < 0.6  # not the 7 × 0.3 s sum, and nowhere near the 30 s hang
    by_name = {r.component: r for r in results}
    assert [r.component for r in results] == list(checks)  # order kept
    assert by_name["stuck"].status == "critical" and by_name["stuck"].details["error"] == "timed out after 0.3s"
    assert all(by_name[f"c{i}"].status == "healthy" for i in range(6))


def test_checks_run_concurrently():
    def slow() -> CheckOutcome:
        time.sleep(0.2)
        return ok()

    started = time.monotonic()
    results = health.run_checks({f"c{i}": slow for i in range(7)}, timeout_s=1.0)
    assert time.monotonic() - started < 0.6 and all(r.status == "healthy" for r in results)


def test_a_raising_check_is_critical_with_a_redacted_error():
    secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"

    def boom() -> CheckOutcome:
        raise ConnectionError(f"refused, key {secret}")

    [result] = health.run_checks({"x": boom}, timeout_s=1)
    assert result.status == "critical" and "ConnectionError: refused" in result.details["error"]
    assert secret not in result.details["error"]


def test_per_check_timeouts():
    def sleepy() -> CheckOutcome:
        time.sleep(0.25)
        return ok()

    results = health.run_checks({"short": sleepy, "long": sleepy}, timeout_s={"short": 0.05, "long": 1.0})
    assert [r.status for r in results] == ["critical", "healthy"]


def test_transitions_and_first_sight():
    r = lambda c, s: health.CheckResult(c, s, 1.0, {"error": "x"} if s != "healthy" else {})  # noqa: E731
    assert health.transitions({}, [r("a", "healthy"), r("b", "degraded")])[0].component == "b"
    changes = health.transitions({"a": "healthy", "b": "critical"}, [r("a", "degraded"), r("b", "healthy")])
    assert [(c.component, c.previous, c.current, c.level) for c in changes] == [
        ("a", "healthy", "degraded", "WARNING"),
        ("b", "critical", "healthy", "INFO"),
    ]
    assert health.worst(["not_configured", "healthy"]) == "healthy"
    assert health.worst(["not_configured"]) == "not_configured"


# --- the checks ------------------------------------------------------------------------------


def bare_engine(tmp_path, *ddl):
    engine = create_engine(f"sqlite:///{tmp_path / 'bare.db'}")
    with engine.begin() as conn:
        for stmt in ddl:
            conn.execute(text(stmt))
    return engine


def test_freshness_checks_are_defensive(tmp_path):
    engine = bare_engine(tmp_path, "CREATE TABLE spot_price_history (ts DATETIME)")
    missing = db_health.check_table_freshness(engine, "interruption_risk_scores", "scored_at", 10, 20)
    assert missing.status == "not_configured" and "does not exist" in missing.details["reason"]
    empty = db_health.check_table_freshness(engine, "spot_price_history", "ts", 10, 20, what="spot prices")
    assert empty.status == "degraded" and empty.details["reason"] == "no spot prices yet"
    for age, expected in ((5, "healthy"), (15, "degraded"), (25, "critical")):
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM spot_price_history"))
            conn.execute(
                text("INSERT INTO spot_price_history VALUES (:ts)"),
                {"ts": (NOW - timedelta(seconds=age)).replace(tzinfo=None).isoformat(sep=" ")},
            )
        out = db_health.check_table_freshness(engine, "spot_price_history", "ts", 10, 20, now=lambda: NOW)
        assert out.status == expected and out.details["age_s"] == age


def test_price_data_is_measured_by_the_last_fetch_not_the_last_price_change(tmp_path, sqlite_url):
    """A price that has not changed for days is fresh when it was fetched a minute ago; the bound is the
    hourly refresh's (degraded after 1 h 30 min, critical after 6 h, both configurable)."""
    from spot_pipelines.db import market_data as market

    bare = bare_engine(tmp_path)
    assert db_health.check_price_freshness(bare, T).status == "not_configured"
    engine = ensure_schema(sqlite_url)
    empty = db_health.check_price_freshness(engine, T, now=lambda: NOW)
    assert empty.status == "degraded" and empty.details["reason"] == "no spot price fetch yet"
    day = NOW.date()
    # The only stored price is today's day-open row: set days ago, unchanged since ...
    with engine.begin() as conn:
        conn.execute(
            market.SpotPrice.__table__.insert(),
            [
                {
                    "day": day,
                    "ts": datetime_at_midnight(NOW),
                    "region": "us-east-1",
                    "availability_zone": "us-east-1a",
                    "availability_zone_id": "use1-az4",
                    "instance_type": "m5.large",
                    "product_description": "Linux/UNIX",
                    "price": 0.03,
                    "is_day_open": True,
                }
            ],
        )
    for region, fetched in (("us-east-1", NOW - timedelta(minutes=1)), ("eu-west-1", NOW - timedelta(hours=2))):
        market.record_spot_price_fetches(
            engine, day, {region: 1}, mode="latest", fetched_at=fetched, prices_as_of=fetched
        )  # ... and fetched a minute ago (eu-west-1's last fetch is two hours old)
    fresh = db_health.check_price_freshness(engine, T, now=lambda: NOW)
    assert fresh.status == "healthy" and fresh.details["age_s"] == 60
    assert fresh.details["stale_regions"] == ["eu-west-1"] and fresh.details["last_fetch_mode"] == "latest"
    assert (T.price_age_degraded_s, T.price_age_critical_s) == (90 * 60, 6 * 3600)
    for after, expected in ((timedelta(minutes=88), "healthy"), (timedelta(minutes=90), "degraded")):
        assert db_health.check_price_freshness(engine, T, now=lambda a=after: NOW + a).status == expected
    assert db_health.check_price_freshness(engine, T, now=lambda: NOW + timedelta(hours=6)).status == "critical"
    strict = HealthThresholds(price_age_degraded_s=30, price_age_critical_s=3600)
    assert db_health.check_price_freshness(engine, strict, now=lambda: NOW).status == "degraded"


def datetime_at_midnight(moment):
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


def test_database_latency_thresholds(sqlite_url):
    engine = ensure_schema(sqlite_url)
    assert db_health.check_database(engine, T).status == "healthy"
    slow = HealthThresholds(db_latency_degraded_ms=0.0, db_latency_critical_ms=1e9)
    assert db_health.check_database(engine, slow).status == "degraded"


def test_redis_not_configured_reachable_and_unreachable():
    assert check_redis(None, [], T).status == "not_configured"
    import redis

    client = redis.Redis.from_url("redis://127.0.0.1:6379/15")
    client.delete("ops_test:queue")
    client.rpush("ops_test:queue", *range(5))
    try:
        out = check_redis("redis://127.0.0.1:6379/15", ["ops_test:queue", "ops_test:absent"], T)
        assert out.status == "healthy" and out.details["queue_depth"] == 5
        deep = check_redis(
            "redis://127.0.0.1:6379/15", ["ops_test:queue"], HealthThresholds(redis_queue_depth_degraded=3)
        )
        assert deep.status == "degraded"
    finally:
        client.delete("ops_test:queue")
    down = check_redis("redis://127.0.0.1:1/0", [], T, timeout_s=0.5)
    assert down.status == "critical" and "127.0.0.1:1" == down.details["server"] and "error" in down.details


def test_redis_that_hangs_is_timed_out_by_the_round():
    """A listener that accepts but never answers: the round still ends on time."""
    import socket

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(5)
    port = server.getsockname()[1]
    try:
        started = time.monotonic()
        [result] = health.run_checks(
            {"redis": lambda: check_redis(f"redis://127.0.0.1:{port}/0", [], T, timeout_s=5)}, timeout_s=0.4
        )
        assert time.monotonic() - started < 0.9
        assert result.status == "critical" and result.details["error"] == "timed out after 0.4s"
    finally:
        server.close()


def test_k8s_watcher_check(sqlite_url):
    engine = ensure_schema(sqlite_url)
    assert db_health.check_k8s_watcher(engine, False, T).status == "not_configured"
    assert db_health.check_k8s_watcher(engine, True, T).status == "degraded"
    with session_factory(sqlite_url)() as session, session.begin():
        session.add(
            K8sWatcherHeartbeat(
                cluster="prod",
                heartbeat_at=NOW - timedelta(minutes=2),
                status="ok",
                node_count=3,
                pod_count=9,
                last_success_at=NOW - timedelta(minutes=2),
            )
        )
    assert db_health.check_k8s_watcher(engine, True, T, now=lambda: NOW).status == "healthy"
    assert db_health.check_k8s_watcher(engine, True, T, now=lambda: NOW + timedelta(hours=2)).status == "critical"
    with session_factory(sqlite_url)() as session, session.begin():
        hb = session.get(K8sWatcherHeartbeat, "prod")
        hb.status, hb.error, hb.heartbeat_at = "error", "Kubernetes API returned 403 Forbidden", NOW
    out = db_health.check_k8s_watcher(engine, True, T, now=lambda: NOW)
    assert out.status == "degraded" and "403" in out.details["error"]


def test_optimizer_check(tmp_path):
    engine = bare_engine(tmp_path)
    assert db_health.check_optimizer(engine, T, None).status == "not_configured"
    never = db_health.check_optimizer(engine, T, lambda: None)
    assert never.status == "degraded" and "never been materialized" in never.details["reason"]
    fresh = db_health.check_optimizer(engine, T, lambda: NOW - timedelta(hours=1), now=lambda: NOW)
    assert fresh.status == "healthy" and "dagster" in fresh.details["source"]
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE spot_recommendations (generated_at DATETIME)"))
        conn.execute(
            text("INSERT INTO spot_recommendations VALUES (:t)"),
            {"t": (NOW - timedelta(days=4)).replace(tzinfo=None).isoformat(sep=" ")},
        )
    stale = db_health.check_optimizer(engine, T, None, now=lambda: NOW)
    assert stale.status == "critical" and stale.details["source"] == "spot_recommendations.generated_at"


MODEL_DDL = (
    "CREATE TABLE model_registry (version INTEGER PRIMARY KEY, trained_at DATETIME, artifact_uri TEXT, "
    "artifact_sha256 TEXT, status TEXT, status_reason TEXT)"
)


def add_model(engine, version, status, uri, sha, reason=None, trained=NOW - timedelta(days=1)):
    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO model_registry VALUES (:v, :t, :u, :s, :st, :r)"),
            {
                "v": version,
                "t": trained.replace(tzinfo=None).isoformat(sep=" "),
                "u": uri,
                "s": sha,
                "st": status,
                "r": reason,
            },
        )


def test_ml_model_check(tmp_path):
    assert db_health.check_ml_model(bare_engine(tmp_path), T).status == "not_configured"
    engine = create_engine(f"sqlite:///{tmp_path / 'models.db'}")
    with engine.begin() as conn:
        conn.execute(text(MODEL_DDL))
    assert db_health.check_ml_model(engine, T).details["reason"] == "no model has been trained yet"
    artifact = tmp_path / "v1.joblib"
    artifact.write_bytes(b"model-bytes")
    sha = hashlib.sha256(b"model-bytes").hexdigest()
    add_model(engine, 1, "blocked", artifact.as_uri(), sha, reason="AUC below baseline")
    blocked = db_health.check_ml_model(engine, T, now=lambda: NOW)
    assert blocked.status == "critical" and "blocked (AUC below baseline)" in blocked.details["reason"]
    add_model(engine, 2, "ready", artifact.as_uri(), sha)
    assert db_health.check_ml_model(engine, T, now=lambda: NOW).status == "healthy"
    add_model(engine, 3, "blocked", artifact.as_uri(), sha)
    newer_blocked = db_health.check_ml_model(engine, T, now=lambda: NOW)
    assert newer_blocked.status == "degraded" and "serving v2" in newer_blocked.details["reason"]

    def refuse(data, where, sha):
        raise ValueError(f"model artifact {where} is incompatible: trained with scikit-learn 0.1")

    real = db_health.model_loader()
    if real is not None:  # the ML module's own vetting: these bytes are no joblib artifact
        garbage = db_health.check_ml_model(engine, T, now=lambda: NOW, load=real)
        assert garbage.status == "critical" and "cannot be loaded" in garbage.details["error"]
    unloadable = db_health.check_ml_model(engine, T, now=lambda: NOW, load=refuse)
    assert unloadable.status == "critical" and "v2 cannot be loaded" in unloadable.details["reason"]
    assert "scikit-learn 0.1" in unloadable.details["error"]
    proven = db_health.check_ml_model(engine, T, now=lambda: NOW, load=lambda *a: None)
    assert proven.details["loaded_sha256"] == sha and proven.details["load_proven"] == "this round"
    again = db_health.check_ml_model(engine, T, now=lambda: NOW, load=refuse, loaded_sha256=sha)
    assert again.status == "degraded" and again.details["load_proven"].startswith("by an earlier round")
    artifact.write_bytes(b"tampered")
    assert "sha256" in db_health.check_ml_model(engine, T, now=lambda: NOW).details["reason"]
    artifact.unlink()
    gone = db_health.check_ml_model(engine, T, now=lambda: NOW)
    assert gone.status == "critical" and "cannot be read" in gone.details["reason"]


# --- rounds written to the database ----------------------------------------------------------


def test_refresh_writes_seven_components_not_configured_is_not_an_error(db_url):
    result = refresh_component_health(
        AppDatabase(url=db_url), None, redis=RedisResource(), kubernetes=KubernetesResource()
    )
    assert result.seconds < 3
    statuses = {r.component: r.status for r in result.results}
    assert set(statuses) == set(health.COMPONENTS)
    assert statuses["app_database"] == "healthy"
    assert statuses["redis"] == "not_configured" and statuses["kubernetes_watcher"] == "not_configured"
    # Tables of parallel work may or may not exist: either way a clear status, never an error.
    assert all(
        statuses[c] in ("not_configured", "degraded") for c in ("optimizer", "price_data", "risk_scores", "ml_model")
    )
    with session_factory(db_url)() as session:
        rows = latest_health(session)
        assert {r.component for r in rows} == set(health.COMPONENTS)
        assert len(session.scalars(select(ComponentHealthState)).all()) == 7


def test_transitions_write_system_logs_with_context(db_url):
    state = {"status": "healthy"}
    checks = {
        "app_database": lambda: CheckOutcome(
            state["status"], {"error": "slow"} if state["status"] != "healthy" else {}
        ),
        "redis": lambda: CheckOutcome("not_configured", {"reason": "REDIS_URL is not set"}),
    }
    run_health_round(db_url, checks, timeout_s=1)
    state["status"] = "degraded"
    run_health_round(db_url, checks, timeout_s=1)
    run_health_round(db_url, checks, timeout_s=1)  # no change, no log
    state["status"] = "critical"
    run_health_round(db_url, checks, timeout_s=1, run_id="run-9")
    state["status"] = "healthy"
    run_health_round(db_url, checks, timeout_s=1)
    with session_factory(db_url)() as session:
        logs = session.scalars(
            select(SystemLog).where(SystemLog.component == "component_health").order_by(SystemLog.id)
        ).all()
        assert len(session.scalars(select(ComponentHealth)).all()) == 10
    assert [(l.details["from"], l.details["to"], l.level) for l in logs] == [
        ("healthy", "degraded", "WARNING"),
        ("degraded", "critical", "ERROR"),
        ("critical", "healthy", "INFO"),
    ]
    assert logs[1].run_id == "run-9" and logs[1].details["check"] == {"error": "slow"}
    assert logs[1].details["all_components"] == {"app_database": "critical", "redis": "not_configured"}
    assert logs[1].details["host"] and logs[1].message == "app_database: degraded → critical (slow)"


def test_round_with_real_dependencies_and_one_hanging(sqlite_url, monkeypatch):
    """The built checks, with the Redis check pointed at a server that never answers."""
    import socket

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(5)
    try:
        checks = build_checks(
            sqlite_url,
            thresholds=T,
            timeout_s=0.5,
            redis=RedisResource(url=f"redis://127.0.0.1:{server.getsockname()[1]}/0", queue_keys=["q"]),
            k8s_configured=True,
        )
        result = run_health_round(sqlite_url, checks, timeout_s=0.5)
    finally:
        server.close()
    assert result.seconds < 1.5
    statuses = {r.component: r.status for r in result.results}
    assert statuses["redis"] == "critical" and statuses["kubernetes_watcher"] == "degraded"


def test_component_health_asset_and_schedule(sqlite_url, monkeypatch):
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6379/15")
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize(
        [component_health],
        instance=instance,
        resources={"app_db": AppDatabase(url=sqlite_url), "redis": RedisResource(), "kubernetes": KubernetesResource()},
        run_config={"ops": {"component_health": {"config": ComponentHealthConfig(timeout_s=2).model_dump()}}},
    )
    assert result.success
    meta = result.asset_materializations_for_node("component_health")[0].metadata
    assert meta["dagster/row_count"].value == 7
    assert meta["statuses"].value["redis"] == "healthy"
    assert "kubernetes_watcher" in meta["not_configured"].value
    [check] = result.get_asset_check_evaluations()
    assert check.check_name == "no_critical_components"
    # The optimizer check reads the instance: never materialized → degraded, not a crash.
    with session_factory(sqlite_url)() as session:
        optimizer = next(r for r in latest_health(session) if r.component == "optimizer")
    assert optimizer.status == "degraded" and "never been materialized" in optimizer.details["reason"]

    assert component_health_schedule.cron_schedule == "*/5 * * * *"
    skip = k8s_inventory_schedule(dg.build_schedule_context(resources={"kubernetes": KubernetesResource()}))
    assert isinstance(skip, dg.SkipReason) and "KUBECONFIG is unset" in skip.skip_message


def test_optimizer_lookup_sees_a_materialization(sqlite_url):
    @dg.asset(name="spot_recommendations")
    def fake_recommendations() -> None:
        return None

    instance = dg.DagsterInstance.ephemeral()
    assert dg.materialize([fake_recommendations], instance=instance).success
    result = refresh_component_health(
        AppDatabase(url=sqlite_url), instance, redis=RedisResource(), kubernetes=KubernetesResource()
    )
    optimizer = next(r for r in result.results if r.component == "optimizer")
    assert optimizer.status == "healthy" and optimizer.details["age_s"] < 60


def test_schedule_tick_runs_the_job_and_writes_a_round(sqlite_url):
    from spot_pipelines.assets.health import component_health_job

    defs = dg.Definitions(
        assets=[component_health],
        jobs=[component_health_job],
        schedules=[component_health_schedule],
        resources={"app_db": AppDatabase(url=sqlite_url), "redis": RedisResource(), "kubernetes": KubernetesResource()},
    )
    instance = dg.DagsterInstance.ephemeral()
    tick = defs.resolve_schedule_def("component_health_schedule").evaluate_tick(
        dg.build_schedule_context(instance=instance, scheduled_execution_time=NOW)
    )
    [request] = tick.run_requests
    result = defs.resolve_job_def("component_health_job").execute_in_process(instance=instance, tags=request.tags)
    assert result.success
    with session_factory(sqlite_url)() as session:
        assert {r.component for r in latest_health(session)} == set(health.COMPONENTS)


def test_ml_load_state_lets_the_loader_import_be_skipped(tmp_path):
    engine = bare_engine(tmp_path)
    assert db_health.ml_load_state(engine) == (None, None)  # no registry: nothing to load
    with engine.begin() as conn:
        conn.execute(text(MODEL_DDL))
        conn.execute(text("CREATE TABLE component_health (id INTEGER PRIMARY KEY, component TEXT, details JSON)"))
    add_model(engine, 1, "ready", "file:///nowhere", "abc")
    assert db_health.ml_load_state(engine) == ("abc", None)
    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO component_health (component, details) VALUES ('ml_model', :d)"),
            {"d": '{"loaded_sha256": "abc"}'},
        )
    assert db_health.ml_load_state(engine) == ("abc", "abc")
