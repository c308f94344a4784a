"""notifications_sensor / execution_failure_notifications_sensor: tell the team when a run made something to
approve or executed recommendations; alert_notifications_sensor: when a component turns critical or a spot pool
turns hot in an interruption burst (the Notifier is off unless configured by env)."""

import json

import dagster as dg
from sqlalchemy import select

from spot_pipelines.core.clock import utcnow
from spot_pipelines.core.health import summary
from spot_pipelines.core.risk import POOL_KEY, BurstConfig
from spot_pipelines.db import execution as execution_rows
from spot_pipelines.db import health as health_rows
from spot_pipelines.db import interruptions as event_rows
from spot_pipelines.db import optimization as opt
from spot_pipelines.db.accounts import account_names
from spot_pipelines.resources.app_database import AppDatabase
from spot_pipelines.resources.notifications import Notifier
from spot_pipelines.sensors.interruptions import parse_cursor


def notify_for_run(app_db: AppDatabase, notifier: Notifier, run_id: str, log=None) -> dict[str, dict[str, bool]]:
    """The digest of the recommendations `run_id` generated, and the outcome of those it executed."""
    if not notifier.enabled():
        return {}
    r, a = opt.SpotRecommendation, execution_rows.RecommendationAction
    with app_db.transaction() as session:
        names = account_names(session.connection())
        new = [
            {
                **{c: getattr(rec, c) for c in ("account_id", "instance_id", "action", "target_instance_type")},
                "account": names.get(rec.account_id),
                "net_monthly_savings_usd": rec.net_monthly_savings_usd or 0.0,
            }
            for rec in session.scalars(select(r).where(r.generation_id == run_id, r.action != "stay_on_demand"))
        ]
        calls = session.execute(select(a.recommendation_id, a.dry_run).where(a.run_id == run_id)).all()
        touched = {rec_id: dry for rec_id, dry in calls}
        executed = [
            {"id": rec.id, "instance_id": rec.instance_id, "status": rec.status, "error": rec.error}
            for rec in session.scalars(select(r).where(r.id.in_(list(touched))).order_by(r.id))
        ]
    sent = {}
    if new:
        sent["recommendations"] = notifier.recommendations_digest(new, log)
    if executed:
        sent["execution"] = notifier.execution(executed, dry_run=all(touched.values()), log=log)
    return sent


@dg.run_status_sensor(
    run_status=dg.DagsterRunStatus.SUCCESS,
    name="notifications_sensor",
    default_status=dg.DefaultSensorStatus.RUNNING,
    monitor_all_code_locations=True,  # runs started from the CLI carry no code-location origin
    description="After a successful run: a digest of the new recommendations worth more than the threshold, and "
    "the outcome of the recommendations it executed (Slack / webhook; off unless configured).",
)
def notifications_sensor(context: dg.RunStatusSensorContext, app_db: AppDatabase, notifier: Notifier) -> None:
    notify_for_run(app_db, notifier, context.dagster_run.run_id, context.log)


@dg.run_failure_sensor(
    name="execution_failure_notifications_sensor",
    default_status=dg.DefaultSensorStatus.RUNNING,
    monitor_all_code_locations=True,
    description="After a failed execution run: each recommendation's outcome (failed, rolled back, executed).",
)
def execution_failure_notifications_sensor(
    context: dg.RunFailureSensorContext, app_db: AppDatabase, notifier: Notifier
) -> None:
    notify_for_run(app_db, notifier, context.dagster_run.run_id, context.log)


def pool_key(pool) -> str:
    return "/".join(str(pool[c]) for c in POOL_KEY)


def notify_new_alerts(
    app_db: AppDatabase, notifier: Notifier, cursor: str | None, burst: BurstConfig | None = None, log=None
) -> tuple[dict[str, dict[str, bool]], str]:
    """Alert on what turned critical or hot since the state in `cursor` (the keys alerted and still so); a
    component or pool that recovers leaves the state, so its next turn alerts again. Returns (sent, new cursor)."""
    before = parse_cursor(cursor)
    with app_db.transaction() as session:
        critical = health_rows.critical_components(session)
        hot = event_rows.read_hot_pools(session.connection(), utcnow(), burst or BurstConfig()).to_dict("records")
    new_critical = [
        {**c, "summary": summary(c["details"])} for c in critical if c["component"] not in before.get("critical", [])
    ]
    new_hot = [p for p in hot if pool_key(p) not in before.get("hot", [])]
    sent = {}
    if new_critical:
        sent["component_critical"] = notifier.components_critical(new_critical, log)
    if new_hot:
        sent["interruption_burst"] = notifier.interruption_bursts(new_hot, log)
    state = {"critical": sorted(c["component"] for c in critical), "hot": sorted(pool_key(p) for p in hot)}
    return sent, json.dumps(state)


@dg.sensor(
    name="alert_notifications_sensor",
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Alerts once when a component turns critical (component_health) and when a spot pool turns hot "
    "in a burst of interruption warnings (default burst rule), again only after it recovers and turns again "
    "(Slack / webhook; off unless configured).",
)
def alert_notifications_sensor(
    context: dg.SensorEvaluationContext, app_db: AppDatabase, notifier: Notifier
) -> dg.SensorResult:
    if not notifier.enabled():
        return dg.SensorResult(skip_reason=dg.SkipReason("notifications are not configured (see README)"))
    sent, cursor = notify_new_alerts(app_db, notifier, context.cursor, log=context.log)
    return dg.SensorResult(cursor=cursor, skip_reason=None if sent else dg.SkipReason("nothing turned critical or hot"))
