"""A planted secret (in SQS messages and the Redis URL) never reaches the app database's operations tables."""

import json

import boto3
import dagster as dg
from sqlalchemy import text

from spot_pipelines.assets import refresh_component_health
from spot_pipelines.core.interruptions import eventbridge_event
from spot_pipelines.db.engine import get_engine
from spot_pipelines.resources.app_database import AppDatabase
from spot_pipelines.resources.kubernetes import KubernetesResource
from spot_pipelines.resources.redis import RedisResource
from spot_pipelines.sensors.interruptions import SpotInterruptionQueue, spot_interruption_sensor
from tests.support.accounts import NOW, add_account

AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


def test_a_planted_secret_never_reaches_storage(sqlite_url, aws, encryption_key, monkeypatch):
    monkeypatch.setenv("REDIS_URL", f"redis://user:{encryption_key[:20]}@127.0.0.1:1/0")  # unreachable, with a password
    add_account(sqlite_url, "prod", "111122223333")
    sqs = boto3.client("sqs", region_name="us-east-1")
    url = sqs.create_queue(QueueName="q")["QueueUrl"]
    monkeypatch.setenv("SPOT_INTERRUPTION_QUEUE_URL", url)
    planted = [
        f"oops {AWS_SECRET}",
        f"key={encryption_key}",
        json.dumps(
            {
                **eventbridge_event(
                    "spot_interruption_warning",
                    event_id="x",
                    account="111122223333",
                    region="us-east-1",
                    instance_id="i-0abc123def4567890",
                    time_=NOW,
                ),
                "detail-type": f"leak {encryption_key}",
            }
        ),
    ]
    for body in planted:
        sqs.send_message(QueueUrl=url, MessageBody=body)

    instance = dg.DagsterInstance.ephemeral()
    spot_interruption_sensor(
        dg.build_sensor_context(
            instance=instance,
            resources={"app_db": AppDatabase(url=sqlite_url), "interruption_queue": SpotInterruptionQueue()},
        )
    )
    refresh_component_health(
        AppDatabase(url=sqlite_url), instance, redis=RedisResource(), kubernetes=KubernetesResource(), timeout_s=2
    )

    dump = []
    with get_engine(sqlite_url).connect() as conn:
        for table in ("system_logs", "dead_letters", "component_health", "component_health_state"):
            dump += [str(tuple(row)) for row in conn.execute(text(f"SELECT * FROM {table}"))]
    blob = "\n".join(dump)
    assert blob.count("[REDACTED]") >= 3
    assert AWS_SECRET not in blob and encryption_key not in blob and encryption_key[:20] not in blob
