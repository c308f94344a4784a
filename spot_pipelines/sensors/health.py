"""component_health_schedule (every few minutes), and failure alerts: every failed run of this Dagster instance becomes one `system_logs` row (component
run_failure) with the run, its job, the assets it targeted, the partition and the error (redacted).

A run that Dagster's retry daemon will re-launch (tagged `dagster/will_retry=true`) is not final: its
retry alerts if it fails too. If that retry never starts within RETRY_GRACE, unretried_failure_alert_sensor
alerts for the original run instead, so a failure is never silently swallowed.
"""

from datetime import datetime, timedelta

import dagster as dg
from sqlalchemy import select

from spot_pipelines.assets.health import component_health_job
from spot_pipelines.core.clock import utcnow
from spot_pipelines.db.system_log import SystemLog, write_system_log
from spot_pipelines.resources.app_database import AppDatabase

COMPONENT = "run_failure"
MAX_ERROR_CHARS = 4000
# Tags Dagster itself sets: will_retry on a failed run when run_retries is enabled in dagster.yaml,
# auto_retry_run_id on that run when the daemon launches its retry, parent_run_id on the retry.
WILL_RETRY_TAG = "dagster/will_retry"
AUTO_RETRY_RUN_ID_TAG = "dagster/auto_retry_run_id"
PARENT_RUN_ID_TAG = "dagster/parent_run_id"
# The retry daemon launches a retry within seconds of the failure; one not started after this never will.
RETRY_GRACE = timedelta(minutes=10)
LOOKBACK = timedelta(days=1)


component_health_schedule = dg.ScheduleDefinition(
    name="component_health_schedule",
    job=component_health_job,
    cron_schedule="*/5 * * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Checks every component every five minutes (and right after each successful discovery).",
)


def root_cause(error) -> str:
    """`RuntimeError: boom` from Dagster's wrapper (`DagsterExecutionStepExecutionError` → cause)."""
    while getattr(error, "cause", None) is not None:
        error = error.cause
    message = (error.message or "").strip().splitlines()
    return message[0][:500] if message else error.cls_name or "error"


def planned_assets(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    """The assets the run planned to materialize (for runs without an explicit asset selection)."""
    try:
        planned = dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED
        records = instance.get_records_for_run(run_id, of_type=planned).records
        return sorted(
            {
                r.event_log_entry.dagster_event.asset_key.to_user_string()
                for r in records
                if r.event_log_entry.dagster_event and r.event_log_entry.dagster_event.asset_key
            }
        )
    except Exception:
        return []


def run_error_message(instance: dg.DagsterInstance, run_id: str) -> str:
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.RUN_FAILURE).records
    event = records[-1].event_log_entry.dagster_event if records else None
    return (event.message if event else None) or "run failed"


def failure_details(instance: dg.DagsterInstance, run: dg.DagsterRun, run_error: str) -> tuple[str, dict]:
    """(message, details) of one failed run: which run, which assets, which steps failed and why."""
    assets = sorted(key.to_user_string() for key in (run.asset_selection or set())) or planned_assets(
        instance, run.run_id
    )
    steps = []
    try:
        for event in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_FAILURE):
            dagster_event = event.dagster_event
            data = dagster_event.event_specific_data if dagster_event else None
            error = data.error if data else None
            text = dagster_event.message if dagster_event else event.user_message
            steps.append(
                {
                    "step": event.step_key,
                    "cause": root_cause(error) if error else text or "",
                    "error": (error.to_string() if error else text or "")[:MAX_ERROR_CHARS],
                }
            )
    except Exception as exc:  # the event log is unavailable: still record the run failure
        steps.append({"step": None, "cause": "", "error": f"step failures unavailable ({type(exc).__name__})"})
    first = next((s["cause"] for s in steps if s["cause"]), run_error)
    what = ", ".join(assets) if assets else run.job_name
    partition = run.tags.get("dagster/partition")
    message = f"run {run.run_id[:8]} of {what}" + (f" [{partition}]" if partition else "") + f" failed: {first}"
    return message[:2000], {
        "run_id": run.run_id,
        "job_name": run.job_name,
        "assets": assets,
        "partition": partition,
        "failed_steps": steps,
        "run_error": run_error[:MAX_ERROR_CHARS],
        "will_retry": run.tags.get(WILL_RETRY_TAG) == "true",
        "tags": {
            k: v
            for k, v in run.tags.items()
            if k.startswith(("spot_pipelines/", "dagster/schedule", "dagster/sensor", "dagster/backfill"))
        },
    }


def retry_expected(run: dg.DagsterRun) -> bool:
    """The retry daemon will re-launch this run: tagged will_retry=true and launched from a code location.
    Runs from `dagster job execute` or `dg.materialize` have no remote origin, and the daemon cannot
    retry those ("Run does not have an external job origin"), whatever the tag says."""
    return run.tags.get(WILL_RETRY_TAG) == "true" and run.remote_job_origin is not None


def retry_launched(instance: dg.DagsterInstance, run: dg.DagsterRun) -> bool:
    return AUTO_RETRY_RUN_ID_TAG in run.tags or bool(
        instance.get_run_ids(filters=dg.RunsFilter(tags={PARENT_RUN_ID_TAG: run.run_id}), limit=1)
    )


def unretried_failures(
    instance: dg.DagsterInstance, now: datetime, grace: timedelta = RETRY_GRACE
) -> list[dg.DagsterRun]:
    """Failed runs (of the last LOOKBACK) that were left to the retry daemon, ended more than `grace`
    before `now`, and still have no retry. Includes runs the daemon then re-tagged will_retry=false."""
    records = instance.get_run_records(
        filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.FAILURE], updated_after=now - LOOKBACK)
    )
    cutoff = (now - grace).timestamp()
    return [
        r.dagster_run
        for r in records
        if WILL_RETRY_TAG in r.dagster_run.tags
        and r.dagster_run.remote_job_origin is not None
        and (r.end_time or r.update_timestamp.timestamp()) <= cutoff
        and not retry_launched(instance, r.dagster_run)
    ]


@dg.run_failure_sensor(
    name="run_failure_alert_sensor",
    default_status=dg.DefaultSensorStatus.RUNNING,
    # Runs started with `dagster job execute -m …` / `dagster asset materialize -m …` carry no code-location
    # origin: a sensor that watches only its own location never sees them.
    monitor_all_code_locations=True,
    description="Writes a system_logs row (component run_failure) for every failed run of the instance: run, "
    "assets, error. A run the retry daemon will re-launch alerts only through its retry.",
)
def run_failure_alert_sensor(context: dg.RunFailureSensorContext, app_db: AppDatabase) -> None:
    run = context.dagster_run
    if retry_expected(run):
        context.log.info(f"run {run.run_id} will be retried; unretried_failure_alert_sensor alerts if it is not")
        return
    message, details = failure_details(context.instance, run, context.failure_event.message or "run failed")
    with app_db.transaction() as session:
        write_system_log(session, COMPONENT, "ERROR", message, details=details, run_id=run.run_id)


@dg.sensor(
    name="unretried_failure_alert_sensor",
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=120,
    description=f"Alerts (system_logs, component run_failure) for a failed run tagged dagster/will_retry=true "
    f"whose automatic retry did not start within {RETRY_GRACE.seconds // 60} minutes.",
)
def unretried_failure_alert_sensor(context: dg.SensorEvaluationContext, app_db: AppDatabase) -> dg.SkipReason:
    overdue = unretried_failures(context.instance, utcnow(), RETRY_GRACE)
    with app_db.transaction() as session:
        alerted = (
            set(
                session.scalars(
                    select(SystemLog.run_id).where(
                        SystemLog.component == COMPONENT, SystemLog.run_id.in_([r.run_id for r in overdue])
                    )
                )
            )
            if overdue
            else set()
        )
        new = [run for run in overdue if run.run_id not in alerted]
        for run in new:
            message, details = failure_details(context.instance, run, run_error_message(context.instance, run.run_id))
            message = f"{message[:1900]} (no automatic retry started within {RETRY_GRACE.seconds // 60} min)"
            write_system_log(
                session, COMPONENT, "ERROR", message, details={**details, "retry_missing": True}, run_id=run.run_id
            )
    return dg.SkipReason(
        f"{len(new)} failed run(s) alerted whose retry never started"
        if new
        else "every failed run awaiting a retry is within its grace period or retried"
    )
