"""Past interruption warnings for the demo fleet's spot instances, sent the way AWS delivers them:
EventBridge events on an SQS queue, which `spot_interruption_sensor` drains."""

from __future__ import annotations

import json
import os
from datetime import timedelta

import boto3
import numpy as np

from spot_pipelines.core.bundled_data import bundled_advisor
from spot_pipelines.core.clock import utcnow
from spot_pipelines.core.interruptions import eventbridge_event
from spot_pipelines.demo.fleet import DEMO_ACCOUNTS, session_in

QUEUE_NAME = "spot-pipelines-ec2-events"
# Daily probability of a warning by Spot Advisor band (<5%, 5-10%, 10-15%, 15-20%, >20% a month),
# scaled up so a two-week demo shows a handful of warnings.
DAILY_RATE_BY_BAND = (0.01, 0.03, 0.05, 0.08, 0.12)


def create_queue() -> str:
    url = boto3.client("sqs", region_name="us-east-1").create_queue(QueueName=QUEUE_NAME)["QueueUrl"]
    os.environ["SPOT_INTERRUPTION_QUEUE_URL"] = url  # the sensor (here and under `dagster dev`) reads it
    return url


def linux_bands() -> dict[tuple[str, str], int]:
    """(region, instance type) → the bundled Spot Advisor band for Linux."""
    feed = bundled_advisor()["spot_advisor"]
    return {(region, itype): v["r"] for region, by_os in feed.items() for itype, v in by_os.get("Linux", {}).items()}


def send_past_warnings(queue_url: str, days: int, seed: int) -> int:
    """Draw warnings per spot instance and day at its market's band rate; returns how many were sent."""
    bands = linux_bands()
    rng = np.random.default_rng(seed)
    today = utcnow().replace(hour=0, minute=0, second=0, microsecond=0)
    sqs = boto3.client("sqs", region_name="us-east-1")
    sent = 0
    for account in DEMO_ACCOUNTS:
        for region in account.regions:
            ec2 = session_in(account, region).client("ec2", region_name=region)
            for reservation in ec2.describe_instances()["Reservations"]:
                for instance in reservation["Instances"]:
                    if instance.get("InstanceLifecycle") != "spot":
                        continue
                    rate = DAILY_RATE_BY_BAND[bands.get((region, instance["InstanceType"]), 2)]
                    for day in np.flatnonzero(rng.random(days) < rate):
                        when = today - timedelta(days=days - int(day)) + timedelta(seconds=int(rng.integers(86_400)))
                        event = eventbridge_event(
                            "spot_interruption_warning",
                            event_id=f"demo-{instance['InstanceId']}-{day}",
                            account=account.aws_account_id,
                            region=region,
                            instance_id=instance["InstanceId"],
                            time_=when,
                            zone=instance["Placement"]["AvailabilityZone"],
                        )
                        sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps(event))
                        sent += 1
    return sent
