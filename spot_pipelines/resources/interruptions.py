"""SpotInterruptionQueue: the SQS queue EventBridge feeds with EC2 interruption and state-change events."""

import re

import boto3
import dagster as dg

from spot_pipelines.resources.credential_vault import aws_config
from spot_pipelines.settings import settings

QUEUE_URL_ENV = "SPOT_INTERRUPTION_QUEUE_URL"
_QUEUE_REGION = re.compile(r"://sqs[.-]([a-z]{2}(?:-[a-z]+)+-\d)\.")


class SpotInterruptionQueue(dg.ConfigurableResource):
    """The SQS queue of EC2 EventBridge events; `SPOT_INTERRUPTION_QUEUE_URL` when `queue_url` is unset.

    Uses the platform's own AWS identity (not an onboarded account's). Nothing connects at load time.
    """

    queue_url: str | None = None
    region: str | None = None
    time_budget_s: float = 40.0
    # Long polling as Karpenter and the Node Termination Handler do: the tick waits on SQS for the
    # next event until its budget, so an event is stored seconds after it was queued, not at the next tick.
    # None: SPOT_INTERRUPTION_WAIT_S (default 20).
    wait_time_s: int | None = None
    max_messages: int = 20_000
    visibility_timeout_s: int = 300
    rediscovery_min_interval_s: float = 600.0  # at most one interruption-triggered discovery per account

    def resolved_url(self) -> str | None:
        return self.queue_url or settings().interruption_queue_url

    def resolved_region(self, url: str) -> str:
        match = _QUEUE_REGION.search(url)
        return self.region or (match.group(1) if match else None) or settings().aws_region or "us-east-1"

    def resolved_wait_s(self) -> int:
        return settings().interruption_wait_s if self.wait_time_s is None else self.wait_time_s

    def client(self, url: str):
        return boto3.client("sqs", region_name=self.resolved_region(url), config=aws_config(max_attempts=5))
