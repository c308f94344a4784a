"""account_onboarding_sensor and nightly_rediscovery_schedule: they read the accounts table,
never AWS (a sensor tick has a 60 s budget)."""

from dataclasses import dataclass

import dagster as dg
from sqlalchemy import func, select

from spot_pipelines.assets.discovery import discovery_job
from spot_pipelines.db import accounts
from spot_pipelines.db.accounts import Account
from spot_pipelines.partitions import AWS_ACCOUNTS_PARTITION, aws_accounts_partitions, daily_account_runs
from spot_pipelines.resources.app_database import AppDatabase

BATCH = 1000


@dataclass(frozen=True)
class OnboardingPlan:
    add_partitions: list[str]
    delete_partitions: list[str]
    runs: list[tuple[str, str]]  # (partition key, run key)
    cursor: int


def plan_onboarding(
    connected: list[tuple[int, str]],
    min_pending_id: int | None,
    all_names: set[str],
    existing_partitions: set[str],
    cursor: int,
) -> OnboardingPlan:
    """What one tick does, given `connected` accounts with id > cursor (ordered by id).

    The cursor never passes a still-pending account: when it is validated later, its lower id
    is still ahead of the cursor. Run keys contain the row id, so re-adding a removed account
    under the same name discovers it again while a repeated tick requests nothing twice.
    """
    runs = [(name, f"onboard-{name}-{account_id}") for account_id, name in connected]
    new_cursor = connected[-1][0] if connected else cursor
    if min_pending_id is not None:
        new_cursor = min(new_cursor, max(cursor, min_pending_id - 1))
    return OnboardingPlan(
        add_partitions=sorted({name for _, name in connected} - existing_partitions),
        delete_partitions=sorted(existing_partitions - all_names),
        runs=runs,
        cursor=new_cursor,
    )


@dg.sensor(
    name="account_onboarding_sensor",
    job=discovery_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Adds newly connected accounts to the account partitions and discovers each once.",
)
def account_onboarding_sensor(context: dg.SensorEvaluationContext, app_db: AppDatabase) -> dg.SensorResult:
    cursor = int(context.cursor or 0)
    with app_db.transaction() as session:
        connected = list(
            session.execute(
                select(Account.id, Account.name)
                .where(Account.status == accounts.CONNECTED, Account.id > cursor)
                .order_by(Account.id)
                .limit(BATCH)
            ).tuples()
        )
        min_pending = session.scalar(select(func.min(Account.id)).where(Account.status == accounts.PENDING))
        names = set(session.scalars(select(Account.name)))
    existing = set(context.instance.get_dynamic_partitions(AWS_ACCOUNTS_PARTITION))
    plan = plan_onboarding(connected, min_pending, names, existing, cursor)
    requests = []
    if plan.add_partitions:
        requests.append(aws_accounts_partitions.build_add_request(plan.add_partitions))
    if plan.delete_partitions:
        requests.append(aws_accounts_partitions.build_delete_request(plan.delete_partitions))
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(run_key=run_key, partition_key=key, tags={"spot_pipelines/trigger": "onboarding"})
            for key, run_key in plan.runs
        ],
        dynamic_partitions_requests=requests,
        cursor=str(plan.cursor),
    )


@dg.schedule(
    name="nightly_rediscovery_schedule",
    job=discovery_job,
    cron_schedule="0 2 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Re-discovers every validated account each night (active and failed ones alike).",
)
def nightly_rediscovery_schedule(context: dg.ScheduleEvaluationContext, app_db: AppDatabase):
    with app_db.transaction() as session:
        names = accounts.validated_account_names(session)
    return daily_account_runs(context, names, run_key_prefix="rediscover", trigger="nightly")
