"""spot_interruption_sensor: drains the SQS queue EventBridge feeds with EC2 interruption warnings,
rebalance recommendations and state changes; records each event once, dead-letters what it cannot
read, and requests re-discovery of every affected account.

The sensor reads SQS and the app database only (never scans AWS accounts): one tick drains up to
`max_messages` and then long-polls (`wait_time_s`, up to SQS's 20 s) for new events until
`time_budget_s`, well inside the 60 s sensor budget; events are stored as they arrive.
"""

import json

import dagster as dg

from spot_pipelines.assets.discovery import discovery_job
from spot_pipelines.assets.interruptions import spot_interruption_events_job
from spot_pipelines.core.aws_errors import describe
from spot_pipelines.core.clock import unix_now, utcnow
from spot_pipelines.core.interruptions import DrainResult, RediscoveryPlan, drain_queue, event_digest, plan_rediscovery
from spot_pipelines.db.interruptions import store_interruption_messages
from spot_pipelines.db.system_log import write_system_log
from spot_pipelines.partitions import AWS_ACCOUNTS_PARTITION
from spot_pipelines.resources.app_database import AppDatabase
from spot_pipelines.resources.interruptions import QUEUE_URL_ENV, SpotInterruptionQueue

COMPONENT = "spot_interruption_sensor"


def parse_cursor(cursor: str | None) -> dict:
    try:
        state = json.loads(cursor) if cursor else {}
    except ValueError:
        return {}
    return state if isinstance(state, dict) else {}


def plan_runs(
    result: DrainResult, state: dict, existing_partitions: set[str], *, now_s: float, min_interval_s: float
) -> tuple[list[dg.RunRequest], RediscoveryPlan]:
    """Run requests for a drained tick: re-discovery of affected accounts (at most one per account
    per interval, see `plan_rediscovery`) and one refresh of the events asset when events arrived."""
    plan = plan_rediscovery(
        result.affected_accounts, state, existing_partitions, now_s=now_s, min_interval_s=min_interval_s
    )
    requests = [
        dg.RunRequest(
            job_name=discovery_job.name,
            partition_key=name,
            run_key=run_key,
            tags={"spot_pipelines/trigger": "spot_interruption", "spot_pipelines/events": str(n)},
        )
        for name, run_key, n in plan.requests
    ]
    all_ids = [i for ids in result.affected_accounts.values() for i in ids]
    if all_ids:
        requests.append(
            dg.RunRequest(
                job_name=spot_interruption_events_job.name,
                run_key=f"interruption-events-{event_digest(all_ids)}",
                tags={"spot_pipelines/trigger": "spot_interruption"},
            )
        )
    return requests, plan


def summary(result: DrainResult) -> dict:
    return {
        "received": result.received,
        "recorded": result.recorded,
        "duplicates": result.duplicates,
        "dead_lettered": result.dead_lettered,
        "dead_letter_reasons": result.dead_letter_reasons,
        "deleted": result.deleted,
        "delete_failures": result.delete_failures,
        "affected_accounts": sorted(result.affected_accounts),
        "stopped_by": result.stopped_by,
        "seconds": round(result.seconds, 3),
        "error": result.error,
    }


@dg.sensor(
    name="spot_interruption_sensor",
    jobs=[discovery_job, spot_interruption_events_job],
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Records EC2 spot interruption warnings, rebalance recommendations and state changes "
    "from SQS (once per event id), dead-letters malformed messages, and re-discovers affected accounts.",
)
def spot_interruption_sensor(
    context: dg.SensorEvaluationContext, app_db: AppDatabase, interruption_queue: SpotInterruptionQueue
) -> dg.SensorResult:
    url = interruption_queue.resolved_url()
    if not url:
        return dg.SensorResult(
            skip_reason=dg.SkipReason(f"{QUEUE_URL_ENV} is not set: no SQS queue of EC2 interruption events to read")
        )

    def store(messages):
        with app_db.transaction() as session:
            return store_interruption_messages(session, messages, received_at=utcnow())

    result = drain_queue(
        interruption_queue.client(url),
        url,
        store,
        time_budget_s=interruption_queue.time_budget_s,
        max_messages=interruption_queue.max_messages,
        visibility_timeout=interruption_queue.visibility_timeout_s,
        wait_time_s=interruption_queue.resolved_wait_s(),
        describe_error=describe,
    )
    existing = set(context.instance.get_dynamic_partitions(AWS_ACCOUNTS_PARTITION))
    requests, plan = plan_runs(
        result,
        parse_cursor(context.cursor),
        existing,
        now_s=unix_now(),
        min_interval_s=interruption_queue.rediscovery_min_interval_s,
    )
    cursor = json.dumps(plan.state, sort_keys=True)
    details = {
        **summary(result),
        "rediscovery_requested": [name for name, _, _ in plan.requests],
        "rediscovery_deferred": plan.deferred,
        "accounts_without_partition": plan.without_partition,
    }

    if result.received or result.error:
        level = "ERROR" if result.error else "WARNING" if result.dead_lettered or plan.without_partition else "INFO"
        message = (
            f"spot interruption queue: {result.recorded} events recorded, {result.duplicates} duplicates, "
            f"{result.dead_lettered} dead-lettered, {len(plan.requests)} re-discoveries requested"
            + (f", {len(plan.deferred)} deferred (interval)" if plan.deferred else "")
        )
        if result.error:
            message += f"; stopped by an SQS error: {result.error}"
        with app_db.transaction() as session:
            write_system_log(session, COMPONENT, level, message, details=details)
        (context.log.error if result.error else context.log.info)(message)

    if not requests:
        reason = (
            f"SQS error: {result.error}"
            if result.error
            else "queue empty"
            if not result.received
            else f"no new events ({result.duplicates} duplicates, {result.dead_lettered} dead-lettered)"
        )
        return dg.SensorResult(skip_reason=dg.SkipReason(reason), cursor=cursor)
    return dg.SensorResult(run_requests=requests, cursor=cursor)
