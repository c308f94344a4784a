"""A region in run config that botocore does not know fails the run at once, naming the field."""

from __future__ import annotations

import dagster as dg
import pytest
from sqlalchemy import func, select

from spot_pipelines.assets.market_data import on_demand_prices, spot_price_history
from spot_pipelines.db import market_data as market
from spot_pipelines.db.engine import session_factory
from spot_pipelines.resources.app_database import AppDatabase
from tests.support.market_data import DAY, stubbed_apis


@pytest.mark.parametrize("asset, partition", [(spot_price_history, DAY.isoformat()), (on_demand_prices, None)])
def test_a_bogus_region_in_run_config_fails_once_without_writing(aws, sqlite_url, asset, partition):
    instance = dg.DagsterInstance.ephemeral()
    config = {"ops": {asset.key.path[-1]: {"config": {"regions": ["us-east-1", "us-east-9"]}}}}
    result = dg.materialize(
        [asset],
        resources={"app_db": AppDatabase(url=sqlite_url), "market_apis": stubbed_apis()},
        instance=instance,
        run_config=config,
        partition_key=partition,
        raise_on_error=False,
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure).step_failure_data.error
    assert "config regions: 'us-east-9' is not an AWS region (did you mean us-east-2" in failure.message
    assert not any(e.event_type_value == "STEP_RESTARTED" for e in result.all_events)  # no retries
    with session_factory(sqlite_url)() as session:
        for model in (market.SpotPrice, market.OnDemandPrice):
            assert session.scalar(select(func.count()).select_from(model)) == 0
