import dagster as dg
from sqlalchemy import insert

from spot_pipelines.core.clock import utcnow
from spot_pipelines.db.accounts import Account
from spot_pipelines.db.engine import get_engine
from spot_pipelines.partitions import AWS_ACCOUNTS_PARTITION
from spot_pipelines.resources.app_database import AppDatabase
from spot_pipelines.sensors.discovery import account_onboarding_sensor, plan_onboarding


def test_plan_adds_connected_accounts_once_each():
    plan = plan_onboarding([(3, "a"), (5, "b")], None, {"a", "b", "c"}, {"c"}, cursor=0)
    assert plan.add_partitions == ["a", "b"] and plan.delete_partitions == []
    assert plan.runs == [("a", "onboard-a-3"), ("b", "onboard-b-5")] and plan.cursor == 5


def test_cursor_never_passes_a_pending_account():
    plan = plan_onboarding([(5, "b")], min_pending_id=4, all_names={"a", "b"}, existing_partitions=set(), cursor=2)
    assert plan.cursor == 3  # account 4 is still pending: the next tick looks at ids > 3 again


def test_removed_accounts_lose_their_partition():
    plan = plan_onboarding([], None, {"a"}, {"a", "gone"}, cursor=9)
    assert plan.delete_partitions == ["gone"] and plan.runs == [] and plan.cursor == 9


def rows(url, *accounts):
    now = utcnow()
    with get_engine(url).begin() as conn:
        conn.execute(
            insert(Account),
            [
                {
                    "name": name,
                    "aws_account_id": str(111122223333 + i),
                    "auth_method": "role",
                    "status": status,
                    "role_arn": f"arn:aws:iam::{111122223333 + i}:role/R",
                    "created_at": now,
                    "updated_at": now,
                }
                for i, (name, status) in enumerate(accounts)
            ],
        )  # one row per AWS account


def tick(url, instance, cursor=None):
    context = dg.build_sensor_context(instance=instance, cursor=cursor, resources={"app_db": AppDatabase(url=url)})
    return account_onboarding_sensor(context)


def test_sensor_tick_contract(db_url):
    rows(db_url, ("alpha", "connected"), ("beta", "pending"), ("gamma", "connected"))
    instance = dg.DagsterInstance.ephemeral()
    first = tick(db_url, instance)
    assert {r.partition_key for r in first.run_requests} == {"alpha", "gamma"}
    assert {r.run_key for r in first.run_requests} == {"onboard-alpha-1", "onboard-gamma-3"}
    assert sorted(first.dynamic_partitions_requests[0].partition_keys) == ["alpha", "gamma"]
    assert first.cursor == "1"  # held below pending beta (id 2)

    instance.add_dynamic_partitions(AWS_ACCOUNTS_PARTITION, ["alpha", "gamma"])
    with get_engine(db_url).begin() as conn:
        conn.execute(Account.__table__.update().where(Account.name == "beta").values(status="connected"))
        conn.execute(Account.__table__.update().where(Account.name.in_(["alpha", "gamma"])).values(status="active"))
    second = tick(db_url, instance, first.cursor)
    assert [(r.partition_key, r.run_key) for r in second.run_requests] == [("beta", "onboard-beta-2")]
    assert second.dynamic_partitions_requests[0].partition_keys == ["beta"]
    assert second.cursor == "2"


def test_sensor_drops_partitions_of_removed_accounts(db_url):
    rows(db_url, ("alpha", "active"))
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(AWS_ACCOUNTS_PARTITION, ["alpha", "removed"])
    result = tick(db_url, instance, "5")
    assert result.run_requests == []
    assert result.dynamic_partitions_requests[0].partition_keys == ["removed"]
