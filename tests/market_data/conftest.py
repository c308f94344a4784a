"""Fixtures of the market-data tests: moto with the seeded price emulator."""

from __future__ import annotations

import boto3
import pytest

from spot_pipelines.demo.price_emulation import emulate_spot_prices
from tests.support.market_data import TYPES


@pytest.fixture
def prices(aws):
    """moto (in-process) answering DescribeSpotPriceHistory with the seeded history."""
    with emulate_spot_prices(seed=11, instance_types=TYPES) as emulator:
        yield emulator


@pytest.fixture
def ec2():
    return lambda region: boto3.client("ec2", region_name=region)
