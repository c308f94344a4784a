"""daily_commitments_schedule: reads the accounts table, never AWS."""

import dagster as dg

from spot_pipelines.assets.commitments import commitments_job
from spot_pipelines.db import accounts
from spot_pipelines.partitions import daily_account_runs
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
    with app_db.transaction() as session:
        names = accounts.validated_account_names(session)
    return daily_account_runs(context, names, run_key_prefix="commitments", trigger="daily")
