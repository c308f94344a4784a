"""Make moto answer DescribeSpotPriceHistory with the seeded synthetic history.

moto returns one constant dummy price (0.00001, timestamped 2006) for every type. Within this
process — `mock_aws()` or a `ThreadedMotoServer` started here — `emulate_spot_prices()` replaces
that answer with `demo.synthetic_prices`: the StartTime/EndTime window (clipped at now: no
future prices) plus the last change before it (so StartTime = EndTime = now answers the price in
force), ProductDescriptions, InstanceTypes and the availability-zone filter, pages of MaxResults
with NextToken, and the emulated region's own AZ names and IDs. A moto server in
another process is not affected.

    with emulate_spot_prices(seed=7, instance_types=["m5.large", "c6g.xlarge"]):
        ...  # boto3 calls against moto see realistic, reproducible price histories
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from typing import Any
from unittest import mock

import pandas as pd
from moto.core.responses import ActionResult
from moto.ec2.responses.spot_instances import SpotInstances

from spot_pipelines.core.clock import utcnow
from spot_pipelines.demo.synthetic_prices import DEFAULT_PRODUCTS, MEAN_CHANGES, MarketSet, aws_records, default_markets

# When a request names no instance types: a small, common set keeps the emulator quick.
DEMO_INSTANCE_TYPES = (
    "m5.large",
    "m5.xlarge",
    "m5.2xlarge",
    "c5.large",
    "c5.xlarge",
    "c5.2xlarge",
    "r5.large",
    "r5.xlarge",
    "m6i.large",
    "m6i.xlarge",
    "c6i.xlarge",
    "m6g.large",
    "m6g.xlarge",
    "c6g.xlarge",
    "r6g.large",
    "m7g.large",
    "c7g.xlarge",
    "t3.medium",
    "t3.large",
    "t4g.medium",
)
MAX_RESULTS = 1000


def _parse_time(value: Any, default: datetime) -> datetime:
    if value in (None, ""):
        return default
    if isinstance(value, datetime):
        ts = value
    else:
        ts = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)


class SpotPriceEmulator:
    """The patched handler's state: seed, default types and products, and a market cache."""

    def __init__(
        self,
        seed: int = 0,
        instance_types: Sequence[str] | None = None,
        products: Sequence[str] = DEFAULT_PRODUCTS,
        mean_changes: float = MEAN_CHANGES,
    ):
        self.seed = seed
        self.instance_types = tuple(instance_types or DEMO_INSTANCE_TYPES)
        self.products = tuple(products)
        self.mean_changes = mean_changes
        self.calls = 0
        self._lock = threading.Lock()
        self._markets = lru_cache(maxsize=256)(self._build_markets)
        self._patch = mock.patch.object(SpotInstances, "describe_spot_price_history", self._handler())

    def _build_markets(
        self, region: str, zones: tuple[tuple[str, str], ...], types: tuple[str, ...], products: tuple[str, ...]
    ) -> MarketSet:
        return default_markets(
            regions=[region], instance_types=types, products=products, seed=self.seed, zones={region: list(zones)}
        )

    def records(
        self,
        region: str,
        zones: Sequence[tuple[str, str]],
        start: datetime,
        end: datetime,
        instance_types: Sequence[str] = (),
        products: Sequence[str] = (),
    ) -> pd.DataFrame:
        markets = self._markets(
            region,
            tuple(sorted(zones)),
            tuple(sorted(instance_types or self.instance_types)),
            tuple(sorted(products or self.products)),
        )
        if not len(markets):
            return pd.DataFrame(columns=["ts", "availability_zone", "instance_type", "product_description", "price"])
        return aws_records(markets, start, end, self.mean_changes)

    def _handler(self):
        emulator = self

        def describe_spot_price_history(response: SpotInstances) -> ActionResult:
            with emulator._lock:
                emulator.calls += 1
            now = utcnow()
            # AWS knows no price after now: a window reaching into the future ends now.
            end = min(_parse_time(response._get_param("EndTime"), now), now)
            start = min(_parse_time(response._get_param("StartTime"), end - timedelta(days=1)), end)
            filters = response._filters_from_querystring()
            zones = [(z.name, z.zone_id) for z in response.ec2_backend.describe_availability_zones()]
            wanted_zones = filters.get("availability-zone")
            if wanted_zones:
                zones = [z for z in zones if z[0] in wanted_zones]
            frame = emulator.records(
                response.region,
                zones,
                start,
                end,
                response._get_param("InstanceTypes", []) or filters.get("instance-type", []),
                response._get_param("ProductDescriptions", []),
            )
            page_size = int(response._get_param("MaxResults") or MAX_RESULTS)
            offset = int(response._get_param("NextToken") or 0)
            page = frame.iloc[offset : offset + page_size]
            history = [
                {
                    "AvailabilityZone": az,
                    "InstanceType": itype,
                    "ProductDescription": product,
                    "SpotPrice": f"{price:.6f}",
                    "Timestamp": ts.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
                }
                for ts, az, itype, product, price in zip(
                    page["ts"],
                    page["availability_zone"],
                    page["instance_type"],
                    page["product_description"],
                    page["price"],
                )
            ]
            result: dict[str, Any] = {"SpotPriceHistory": history}
            if offset + page_size < len(frame):
                result["NextToken"] = str(offset + page_size)
            return ActionResult(result)

        return describe_spot_price_history

    def start(self) -> SpotPriceEmulator:
        self._patch.start()
        return self

    def stop(self) -> None:
        self._patch.stop()

    def __enter__(self) -> SpotPriceEmulator:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def emulate_spot_prices(
    seed: int = 0,
    instance_types: Sequence[str] | None = None,
    products: Sequence[str] = DEFAULT_PRODUCTS,
    mean_changes: float = MEAN_CHANGES,
) -> SpotPriceEmulator:
    """Patch moto's DescribeSpotPriceHistory in this process. Use as a context manager, or call
    `.start()` now and `.stop()` when done (e.g. for a demo's lifetime).

    `instance_types` are answered when a request names none (default: a small common set);
    a request's own InstanceTypes are always answered when the bundled data prices them.
    """
    return SpotPriceEmulator(seed=seed, instance_types=instance_types, products=products, mean_changes=mean_changes)
