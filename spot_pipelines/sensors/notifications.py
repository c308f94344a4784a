"""notifications_sensor / execution_failure_notifications_sensor: tell the team when a run made something to
approve or executed recommendations (the Notifier is off unless configured by env)."""

import dagster as dg
from sqlalchemy import select

from spot_pipelines.db import execution as execution_rows
from spot_pipelines.db import optimization as opt
from spot_pipelines.db.accounts import account_names
from spot_pipelines.resources.app_database import AppDatabase
from spot_pipelines.resources.notifications import Notifier


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
