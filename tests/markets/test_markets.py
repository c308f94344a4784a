"""Price analytics on markets whose statistics are known by construction."""

from __future__ import annotations

import math
from datetime import timedelta

import dagster as dg
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from sqlalchemy import insert

from spot_pipelines.core.clock import utcnow
from spot_pipelines.core.errors import ValidationError
from spot_pipelines.core.markets import AnalyticsConfig, price_analytics
from tests.support.factories import on_demand

NOW = utcnow()
MIDNIGHT = NOW.replace(hour=0, minute=0, second=0, microsecond=0)


def row(ts, price, itype="m5.large", az="use1-az1") -> dict:
    return {
        "ts": ts,
        "day": ts.date(),
        "region": "us-east-1",
        "availability_zone": "us-east-1a",
        "availability_zone_id": az,
        "instance_type": itype,
        "product_description": "Linux/UNIX",
        "price": price,
        "is_day_open": False,
    }


def history() -> pd.DataFrame:
    start = MIDNIGHT - timedelta(days=91)
    return pd.DataFrame(
        [
            # m5.large (on-demand 0.096): 0.02 until 84 hours before the window's end, then 0.05.
            row(start, 0.02),
            row(MIDNIGHT - timedelta(hours=84), 0.05),
            # Only two days old, and a type with no on-demand price.
            row(MIDNIGHT - timedelta(days=2), 0.03, az="use1-az2"),
            row(start, 0.01, itype="x9.large"),
        ]
    )


def by_key(table: pd.DataFrame) -> dict:
    return {(r["instance_type"], r["availability_zone_id"], r["window_days"]): r for r in table.to_dict("records")}


def test_percentiles_volatility_and_cheap_hours_over_each_window():
    t = by_key(price_analytics(history(), on_demand(), as_of=NOW))
    week = t[("m5.large", "use1-az1", 7)]
    assert week["hours"] == 168
    assert week["p50"] == pytest.approx(0.035)  # half the hours at 0.02, half at 0.05
    assert week["p95"] == pytest.approx(0.05)
    # 40% of 0.096 is 0.0384: the 84 hours at 0.02 are below it.
    assert week["share_below"] == pytest.approx(0.5)
    # 167 hourly log changes, one of them log(2.5).
    n = 167
    assert week["volatility"] == pytest.approx(math.log(2.5) * math.sqrt((1 / n) * (1 - 1 / n)))
    month = t[("m5.large", "use1-az1", 30)]
    assert month["hours"] == 720 and month["p50"] == pytest.approx(0.02)
    assert month["share_below"] == pytest.approx((720 - 84) / 720)
    assert t[("m5.large", "use1-az1", 90)]["hours"] == 2160


def test_a_young_market_counts_only_its_own_hours_and_a_missing_on_demand_price_gives_no_share():
    t = by_key(price_analytics(history(), on_demand(), as_of=NOW))
    young = t[("m5.large", "use1-az2", 90)]
    assert young["hours"] == 48 and young["p50"] == pytest.approx(0.03) and young["volatility"] == 0
    unknown = t[("x9.large", "use1-az1", 7)]
    assert np.isnan(unknown["on_demand"]) and np.isnan(unknown["share_below"])
    with pytest.raises(ValidationError, match="below_pct"):
        AnalyticsConfig(below_pct=0)


@pytest.fixture
def seeded(sqlite_url, monkeypatch):
    from spot_pipelines.db.engine import session_factory
    from spot_pipelines.db.market_data import OnDemandPrice, SpotPrice

    with session_factory(sqlite_url)() as session, session.begin():
        session.execute(insert(SpotPrice), history().to_dict("records"))
        session.execute(
            insert(OnDemandPrice), on_demand().assign(source="bundled_snapshot", as_of=NOW).to_dict("records")
        )
    monkeypatch.setenv("DATABASE_URL", sqlite_url)
    return sqlite_url


def test_markets_show_prints_each_az_id_and_window(seeded):
    from spot_pipelines.cli import main

    result = CliRunner().invoke(main, ["markets", "show", "m5.large", "--region", "us-east-1"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "on-demand $0.0960/h" in lines[0]
    assert any(line.split()[:6] == ["use1-az1", "Linux/UNIX", "7", "168", "0.0350", "0.0500"] for line in lines)
    assert any(line.split()[:3] == ["use1-az2", "Linux/UNIX", "90"] for line in lines)
    none = CliRunner().invoke(main, ["markets", "show", "m5.large", "--region", "eu-west-1"])
    assert none.exit_code == 0 and "no spot price history stored for m5.large in eu-west-1" in none.output


def test_the_asset_reports_a_table(seeded):
    from spot_pipelines.assets.markets import spot_market_analytics
    from spot_pipelines.resources.app_database import AppDatabase

    result = dg.materialize(
        [spot_market_analytics], resources={"app_db": AppDatabase(url=seeded)}, instance=dg.DagsterInstance.ephemeral()
    )
    [event] = result.get_asset_materialization_events()
    meta = event.materialization.metadata
    assert meta["dagster/row_count"].value == 9 and meta["markets"].value == 3
    assert meta["no_on_demand_price"].value == 3
    cheapest = [r.data["instance_type"] for r in meta["cheapest_30d"].value.records]
    assert cheapest == ["x9.large", "m5.large", "m5.large"]


def test_markets_show_json_parses_and_carries_the_same_figures(seeded):
    import json

    from spot_pipelines.cli import main

    result = CliRunner().invoke(main, ["markets", "show", "m5.large", "--region", "us-east-1", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert (out["instance_type"], out["region"], out["below_pct"]) == ("m5.large", "us-east-1", 40.0)
    day_start = NOW.replace(hour=0, minute=0, second=0, microsecond=0)
    assert out["windows_end"] in {day_start.isoformat(), (day_start + timedelta(days=1)).isoformat()}  # midnight
    rows = {(r["availability_zone_id"], r["window_days"]): r for r in out["markets"]}
    # The known answers of the analytics test above, through the JSON.
    week = rows[("use1-az1", 7)]
    assert (week["hours"], week["p50"], week["p95"], week["share_below"]) == (168, pytest.approx(0.035), 0.05, 0.5)
    assert rows[("use1-az2", 90)]["hours"] == 48
    # Written back out, it reads the same: plain JSON types only.
    assert json.loads(json.dumps(out)) == out
    none = CliRunner().invoke(main, ["markets", "show", "m5.large", "--region", "eu-west-1", "--json"])
    assert none.exit_code == 0 and json.loads(none.output)["markets"] == []
