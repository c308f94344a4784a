"""A filtered spot_price_history run replaces exactly what it fetched (issue 10 item 5), through
`dg.materialize` against moto with emulated prices, on SQLite and the real Postgres."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import pytest
from sqlalchemy import insert, update

from spot_pipelines.assets.market_data import spot_price_history
from spot_pipelines.core import market_data as md
from spot_pipelines.core.errors import ValidationError
from spot_pipelines.db import market_data as market
from spot_pipelines.db.engine import get_engine
from tests.market_data.test_assets import _materialize, _stored_prices
from tests.support.market_data import DAY, TYPES, stubbed_apis

FULL = {"ops": {"spot_price_history": {"config": {"regions": ["us-east-1"]}}}}


def _filtered(*families: str) -> dict:
    return {
        "ops": {
            "spot_price_history": {
                "config": {"regions": ["us-east-1"], "all_instance_types": False, "instance_families": list(families)}
            }
        }
    }


def _run(db_url, config, **kwargs):
    return _materialize(
        [spot_price_history], db_url, stubbed_apis(), run_config=config, partition_key=DAY.isoformat(), **kwargs
    )


def _tamper_m5(db_url, day_open_ts) -> None:
    """Make the stored m5.large rows differ from what AWS answers, and add one AWS never sent."""
    t = market.SpotPrice.__table__
    with get_engine(db_url).begin() as conn:
        conn.execute(update(t).where(t.c.instance_type == "m5.large").values(price=t.c.price + 1))
        conn.execute(
            insert(t).values(
                day=DAY,
                ts=day_open_ts + timedelta(seconds=7),
                region="us-east-1",
                availability_zone="us-east-1a",
                availability_zone_id="use1-stale",
                instance_type="m5.large",
                product_description="Linux/UNIX",
                price=9.0,
                is_day_open=False,
            )
        )


def test_family_rerun_replaces_only_that_familys_rows(prices, db_url):
    assert _run(db_url, FULL).success
    full = _stored_prices(db_url)
    assert set(full["instance_type"]) == set(TYPES)
    _tamper_m5(db_url, pd.Timestamp(full["ts"].min()).to_pydatetime())

    result = _run(db_url, _filtered("m5"))
    assert result.success
    after = _stored_prices(db_url)
    others = ~full["instance_type"].str.startswith("m5.")
    # The types the re-run did not ask for are byte-for-byte what the full run stored.
    pd.testing.assert_frame_equal(
        after[~after["instance_type"].str.startswith("m5.")].reset_index(drop=True),
        full[others].reset_index(drop=True),
        check_exact=True,
    )
    # The m5 slice is AWS's answer again: tampered prices and the stray row are gone.
    m5_large = after[after["instance_type"] == "m5.large"].reset_index(drop=True)
    pd.testing.assert_frame_equal(
        m5_large, full[full["instance_type"] == "m5.large"].reset_index(drop=True), check_exact=True
    )
    assert set(after["instance_type"]) > set(TYPES)  # the family's other types came in too
    assert after["availability_zone_id"].ne("use1-stale").all()
    metadata = result.asset_materializations_for_node("spot_price_history")[0].metadata
    assert metadata["dagster/row_count"].value == int(after["instance_type"].str.startswith("m5.").sum())


def test_unknown_family_is_refused_and_nothing_changes(prices, db_url):
    assert _run(db_url, FULL).success
    before = _stored_prices(db_url)
    result = _run(db_url, _filtered("m5", "zz9"), raise_on_error=False)
    assert not result.success
    message = result.failure_data_for_node("spot_price_history").error.message
    assert "config instance_families: ['zz9'] match no instance type" in message
    assert "nothing fetched or written" in message
    assert "m5'" not in message  # only the unknown family is named
    pd.testing.assert_frame_equal(before, _stored_prices(db_url), check_exact=True)


def test_types_of_families_refuses_a_family_the_catalog_lacks():
    catalog = ["m7g.large", "m7g.xlarge", "c5.large"]
    assert md.types_of_families(["M7G", "c5."], catalog) == ["c5.large", "m7g.large", "m7g.xlarge"]
    with pytest.raises(ValidationError) as err:
        md.types_of_families(["m7g", "m7gx", "zz9"], catalog)
    assert err.value.field == "instance_families" and "['m7gx', 'zz9']" in str(err.value)
