"""daily_commitments_schedule: reads the accounts table, never AWS."""

import dagster as dg
from sqlalchemy import select

from spot_pipelines.assets.commitments import commitments_job
from spot_pipelines.db import accounts
from spot_pipelines.db.accounts import Account
from spot_pipelines.partitions import AWS_ACCOUNTS_PARTITION
from spot_pipelines.resources.app_database import AppDatabase


@dg.schedule(
    name="daily_commitments_schedule",
    job=commitments_job,
    cron_schedule="30 2 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Reads every validated account's Reserved Instances and Savings Plans each day, after rediscovery.",
)
def daily_commitments_schedule(context: dg.ScheduleEvaluationContext, app_db: AppDatabase):
    day = context.scheduled_execution_time.strftime("%Y-%m-%d")
    existing = set(context.instance.get_dynamic_partitions(AWS_ACCOUNTS_PARTITION))
    with app_db.transaction() as session:
        names = session.scalars(select(Account.name).where(Account.status != accounts.PENDING).order_by(Account.name))
        return [
            dg.RunRequest(
                run_key=f"commitments-{name}-{day}", partition_key=name, tags={"spot_pipelines/trigger": "daily"}
            )
            for name in names
            if name in existing
        ]
