"""MarketDataAPIs: EC2, the Price List API and the Spot Advisor feed, with the platform's own AWS identity."""

import threading

import boto3
import dagster as dg
from pydantic import PrivateAttr

from spot_pipelines.core import market_data as md
from spot_pipelines.resources.credential_vault import HOME_REGION, aws_config


class MarketDataAPIs(dg.ConfigurableResource):
    """Where market data comes from: EC2 and the Price List API with the platform's default boto3
    credentials (adaptive retries), and the public Spot Advisor feed. Nothing connects at load."""

    advisor_feed_url: str = md.ADVISOR_FEED_URL
    advisor_timeout_s: float = 10.0
    price_list_region: str = md.PRICE_LIST_REGION
    max_attempts: int = 10

    _session: boto3.Session | None = PrivateAttr(default=None)
    _clients: dict = PrivateAttr(default_factory=dict)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    def _client(self, service: str, region: str):
        # boto3 sessions are not thread-safe for client creation; clients are (and are reused
        # across the days of a backfill).
        with self._lock:
            if self._session is None:
                self._session = boto3.Session()
            client = self._clients.get((service, region))
            if client is None:
                client = self._session.client(service, region_name=region, config=aws_config(self.max_attempts))
                self._clients[(service, region)] = client
            return client

    def ec2(self, region: str = HOME_REGION):
        return self._client("ec2", region)

    def pricing(self):
        return self._client("pricing", self.price_list_region)

    def advisor_feed(self) -> bytes:
        return md.download_feed(self.advisor_feed_url, timeout=self.advisor_timeout_s)
