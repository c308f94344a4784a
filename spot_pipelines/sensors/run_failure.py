"""run_failure_alert_sensor: every failed run of this code location becomes a `system_logs` row
with the run, its job, the assets it targeted, the partition and the error (redacted)."""

import dagster as dg

from spot_pipelines.resources.app_database import AppDatabase
from spot_pipelines.system_log import write_system_log

COMPONENT = "run_failure"
MAX_ERROR_CHARS = 4000


def root_cause(error) -> str:
    """`RuntimeError: boom` from Dagster's wrapper (`DagsterExecutionStepExecutionError` → cause)."""
    while getattr(error, "cause", None) is not None:
        error = error.cause
    message = (error.message or "").strip().splitlines()
    return message[0][:500] if message else error.cls_name or "error"


def planned_assets(context: dg.RunFailureSensorContext) -> list[str]:
    """The assets the run planned to materialize (for runs without an explicit asset selection)."""
    try:
        records = context.instance.get_records_for_run(
            context.dagster_run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED).records
        return sorted({r.event_log_entry.dagster_event.asset_key.to_user_string() for r in records
                       if r.event_log_entry.dagster_event and r.event_log_entry.dagster_event.asset_key})
    except Exception:
        return []


def failure_details(context: dg.RunFailureSensorContext) -> tuple[str, dict]:
    """(message, details) of one failed run: which run, which assets, which steps failed and why."""
    run = context.dagster_run
    assets = sorted(key.to_user_string() for key in (run.asset_selection or set())) or planned_assets(context)
    steps = []
    try:
        for event in context.get_step_failure_events():
            error = event.event_specific_data.error if event.event_specific_data else None
            steps.append({"step": event.step_key, "cause": root_cause(error) if error else event.message or "",
                          "error": (error.to_string() if error else event.message or "")[:MAX_ERROR_CHARS]})
    except Exception as exc:  # the event log is unavailable: still record the run failure
        steps.append({"step": None, "cause": "", "error": f"step failures unavailable ({type(exc).__name__})"})
    run_error = context.failure_event.message or "run failed"
    first = next((s["cause"] for s in steps if s["cause"]), run_error)
    what = ", ".join(assets) if assets else run.job_name
    partition = run.tags.get("dagster/partition")
    message = f"run {run.run_id[:8]} of {what}" + (f" [{partition}]" if partition else "") + f" failed: {first}"
    return message[:2000], {
        "run_id": run.run_id, "job_name": run.job_name, "assets": assets, "partition": partition,
        "failed_steps": steps, "run_error": run_error[:MAX_ERROR_CHARS],
        "tags": {k: v for k, v in run.tags.items() if k.startswith(("spot_pipelines/", "dagster/schedule",
                                                                     "dagster/sensor", "dagster/backfill"))},
    }


@dg.run_failure_sensor(
    name="run_failure_alert_sensor",
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Writes a system_logs row (component run_failure) for every failed run: run, assets, error.",
)
def run_failure_alert_sensor(context: dg.RunFailureSensorContext, app_db: AppDatabase) -> None:
    message, details = failure_details(context)
    with app_db.session() as session, session.begin():
        write_system_log(session, COMPONENT, "ERROR", message, details=details, run_id=context.dagster_run.run_id)
