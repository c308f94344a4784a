"""The per-account daily schedules: one run per validated account that has its partition, keyed by the day."""

from datetime import timedelta

import dagster as dg
import pytest

from spot_pipelines.core.clock import utcnow
from spot_pipelines.definitions import defs
from spot_pipelines.partitions import AWS_ACCOUNTS_PARTITION
from spot_pipelines.resources.app_database import AppDatabase
from spot_pipelines.sensors.commitments import daily_commitments_schedule
from spot_pipelines.sensors.discovery import nightly_rediscovery_schedule
from tests.support.accounts import add_account


@pytest.mark.parametrize(
    "schedule, prefix, trigger",
    [(nightly_rediscovery_schedule, "rediscover", "nightly"), (daily_commitments_schedule, "commitments", "daily")],
    ids=["rediscovery", "commitments"],
)
def test_one_run_per_validated_account_with_a_partition(db_url, schedule, prefix, trigger):
    for i, (name, status) in enumerate(
        [("prod", "active"), ("dev", "failed"), ("new", "connected"), ("waiting", "pending"), ("gone", "active")]
    ):
        add_account(db_url, name, f"11112222{i:04d}", status=status)
    when = utcnow() - timedelta(days=1)
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(AWS_ACCOUNTS_PARTITION, ["prod", "dev", "new", "waiting"])  # "gone": removed
        with dg.build_schedule_context(
            instance=instance,
            scheduled_execution_time=when,
            repository_def=defs.get_repository_def(),
            resources={"app_db": AppDatabase(url=db_url)},
        ) as context:
            requests = schedule.evaluate_tick(context).run_requests

    day = when.strftime("%Y-%m-%d")
    assert [(r.partition_key, r.run_key) for r in requests] == [
        (name, f"{prefix}-{name}-{day}") for name in ("dev", "new", "prod")
    ]
    assert {r.tags["spot_pipelines/trigger"] for r in requests} == {trigger}
