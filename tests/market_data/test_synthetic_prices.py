"""The seeded synthetic price generator: deterministic, subset-independent, realistic in shape."""

from __future__ import annotations

from datetime import timedelta

import numpy as np

from spot_pipelines.demo.synthetic_prices import (
    aws_records,
    base_spot_price,
    default_markets,
    spot_history_day,
    synthetic_zones,
    zone_id_prefix,
)
from tests.support.market_data import DAY, DAY_START


def test_same_seed_same_history_and_subsets_agree():
    full = default_markets(regions=["us-east-1", "eu-west-1"], seed=1)
    sub = default_markets(regions=["eu-west-1"], instance_types=["m5.large"], seed=1)
    a, b = spot_history_day(full, DAY), spot_history_day(sub, DAY)
    part = a[(a["region"] == "eu-west-1") & (a["instance_type"] == "m5.large")].reset_index(drop=True)
    assert part["price"].tolist() == b["price"].tolist() and part["ts"].tolist() == b["ts"].tolist()
    other = spot_history_day(default_markets(regions=["eu-west-1"], instance_types=["m5.large"], seed=2), DAY)
    assert other["price"].tolist() != b["price"].tolist()


def test_prices_are_positive_near_base_and_drift_slowly():
    markets = default_markets(regions=["us-east-1"], instance_types=["m5.large"], seed=3)
    days = [spot_history_day(markets, DAY + timedelta(days=i)) for i in range(60)]
    base = base_spot_price("us-east-1", "m5.large")
    prices = np.concatenate([d["price"].to_numpy() for d in days])
    assert (prices > 0).all() and 0.5 * base < np.median(prices) < 1.5 * base
    # Within a day prices barely move; across weeks they wander (drift and rare steps).
    one_zone = [d[d["availability_zone_id"] == d["availability_zone_id"].iloc[0]] for d in days]
    intraday = np.median([d["price"].std() / d["price"].mean() for d in one_zone])
    daily_means = np.array([d["price"].mean() for d in one_zone])
    assert intraday < 0.05 and daily_means.std() / daily_means.mean() > intraday


def test_day_open_is_the_previous_days_last_change_and_matches_aws_records():
    markets = default_markets(regions=["us-east-1"], instance_types=["c5.large"], seed=4)
    today, yesterday = spot_history_day(markets, DAY), spot_history_day(markets, DAY - timedelta(days=1))
    last = yesterday.sort_values("ts").groupby("availability_zone_id", observed=True)["price"].last()
    opening = today[today["is_day_open"]].set_index("availability_zone_id")["price"]
    assert opening.sort_index().tolist() == last.sort_index().tolist()
    records = aws_records(markets, DAY_START, DAY_START + timedelta(days=1))
    assert len(records) == len(today)  # the window's changes plus one carried-in record per market
    assert (records["ts"] < DAY_START).sum() == len(opening)
    assert records["ts"].is_monotonic_decreasing


def test_full_day_size_is_about_280k_rows():
    day = spot_history_day(default_markets(), DAY)
    assert 240_000 < len(day) < 320_000


def test_zone_ids():
    assert zone_id_prefix("us-east-1") == "use1" and zone_id_prefix("ap-southeast-2") == "apse2"
    assert sorted(i for _, i in synthetic_zones("eu-central-1")) == ["euc1-az1", "euc1-az2", "euc1-az3"]
