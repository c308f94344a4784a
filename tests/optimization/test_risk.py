"""Risk features and scores: agreement with a per-market reference, skips, order independence."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

from benchmarks.bench_optimization import naive_scores
from spot_pipelines.core.errors import ValidationError
from spot_pipelines.core.risk import MARKET_KEY, score_markets
from tests.support.factories import END, market_data

FEATURE_COLUMNS = [
    "spot_price",
    "price_mean",
    "volatility",
    "changes_per_day",
    "mean_abs_change_pct",
    "spike_ratio_7d",
    "hours_since_change",
]


@pytest.fixture(scope="module")
def data():
    return market_data(days=21, seed=3)


def test_vectorized_features_match_a_per_market_reference(data):
    window = 14
    prices = data["prices"][data["prices"]["ts"] >= END - timedelta(days=window)]
    ours = score_markets(
        prices, data["on_demand"], data["advisor"], data["events"], as_of=END, window_days=window
    ).scores.set_index(MARKET_KEY)
    ref = naive_scores(prices, as_of=END, window_days=window)
    ours = ours.loc[ref.index]
    assert len(ours) == len(ref) == 39
    for col in FEATURE_COLUMNS:
        # Timestamps are handled at whole-second resolution: hours agree to a second.
        atol = 1 / 3600 if col == "hours_since_change" else 1e-9
        np.testing.assert_allclose(ours[col].to_numpy(), ref[col].to_numpy(), rtol=1e-9, atol=atol, err_msg=col)


def test_scores_are_bounded_banded_and_order_independent(data):
    args = (data["on_demand"], data["advisor"], data["events"])
    a = score_markets(data["prices"], *args, as_of=END).scores
    shuffled = data["prices"].sample(frac=1.0, random_state=1)
    b = score_markets(shuffled, *args, as_of=END).scores
    key = lambda f: f.sort_values(MARKET_KEY).reset_index(drop=True)  # noqa: E731
    pd.testing.assert_frame_equal(key(a), key(b))
    assert a["score"].between(0, 1).all()
    assert set(a["risk_band"]) <= {"very_low", "low", "medium", "high", "very_high"}
    assert (a["window_end"] == END).all() and (a["window_start"] == END - timedelta(days=14)).all()
    # Observed warnings raise the score of the markets they hit, all else equal.
    hit = a[a["observed_interruptions"] > 0]
    assert len(hit) > 0
    none = score_markets(data["prices"], data["on_demand"], data["advisor"], None, as_of=END).scores
    merged = hit.merge(none, on=MARKET_KEY, suffixes=("", "_none"))
    assert (merged["score"] > merged["score_none"]).all()


def test_markets_without_history_or_on_demand_price_are_skipped_with_a_reason(data):
    prices = data["prices"].copy()
    odd = prices[prices["instance_type"] == "m5.large"].assign(instance_type="x9.unknown")
    prices = pd.concat([prices, odd])
    on_demand = data["on_demand"]
    # A market whose only rows are older than the window has no price in it.
    stale = data["prices"][data["prices"]["instance_type"] == "c5.large"]
    stale = stale.assign(instance_type="c5.stale", ts=stale["ts"] - timedelta(days=60))
    prices = pd.concat([prices, stale])
    result = score_markets(prices, on_demand, data["advisor"], None, as_of=END)
    reasons = result.skipped.set_index(["instance_type", "availability_zone_id"])["reason"]
    assert reasons[("x9.unknown", "use1-az1")] == "no on-demand price for x9.unknown in us-east-1"
    assert "x9.unknown" not in set(result.scores["instance_type"])
    assert not (result.scores["on_demand_price"] <= 0).any() and not (result.scores["spot_price"] <= 0).any()
    # c5.stale never appears in the window's rows, so it is not a market of this window at all.
    assert "c5.stale" not in set(result.scores["instance_type"])


def test_a_market_whose_rows_all_fall_before_the_window_is_skipped():
    data = market_data(days=3, seed=1, types=["m5.large"])
    late = market_data(days=3, seed=2, types=["c5.large"], end=END - timedelta(days=30))["prices"]
    result = score_markets(
        pd.concat([data["prices"], late]), data["on_demand"], data["advisor"], None, as_of=END, window_days=7
    )
    assert set(result.scores["instance_type"]) == {"m5.large"}
    assert set(result.skipped["instance_type"]) == {"c5.large"}
    assert set(result.skipped["reason"]) == {"no spot price history in or before the window"}


def test_bad_prices_and_windows_are_rejected_naming_the_field(data):
    bad = data["prices"].copy()
    bad.loc[bad.index[3], "price"] = 0.0
    with pytest.raises(ValidationError, match="spot_price_history.price: 1 row"):
        score_markets(bad, data["on_demand"], data["advisor"], None, as_of=END)
    with pytest.raises(ValidationError, match="window_days"):
        score_markets(data["prices"], data["on_demand"], data["advisor"], None, as_of=END, window_days=1)
    with pytest.raises(ValidationError, match="missing column"):
        score_markets(data["prices"].drop(columns="price"), data["on_demand"], data["advisor"], None, as_of=END)


def test_empty_history_scores_nothing(data):
    result = score_markets(data["prices"].iloc[:0], data["on_demand"], data["advisor"], None, as_of=END)
    assert result.scores.empty and result.skipped.empty


def _edge_frame() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """A 3-day window: a single point at its very start; a market with a row before the window, a tie and a row
    at its end; a type whose on-demand price is missing."""
    start = END - timedelta(days=3)
    rows = [
        ("m5.large", "use1-az1", start, 0.1),  # a single price point, exactly at the window start
        ("m5.large", "use1-az2", start - timedelta(seconds=1), 0.1),  # before the window: carries no price
        ("m5.large", "use1-az2", END - timedelta(days=2), 0.2),
        ("m5.large", "use1-az2", END - timedelta(days=2), 0.3),  # same second: the later row is in force
        ("m5.large", "use1-az2", END, 0.9),  # at the window's end: outside it
        ("c5.large", "use1-az1", start + timedelta(hours=1), 0.05),
    ]
    prices = pd.DataFrame(
        {
            "ts": pd.to_datetime([r[2] for r in rows], utc=True),
            "region": "us-east-1",
            "availability_zone_id": [r[1] for r in rows],
            "instance_type": [r[0] for r in rows],
            "product_description": "Linux/UNIX",
            "price": [r[3] for r in rows],
        }
    )
    on_demand = pd.DataFrame(
        {
            "region": "us-east-1",
            "instance_type": ["m5.large", "c5.large"],
            "operating_system": "Linux",
            "usd_per_hour": [1.0, np.nan],
        }
    )
    advisor = on_demand[["region", "instance_type", "operating_system"]].assign(interruption_band=1, savings_pct=50)
    return prices, on_demand, advisor


def test_window_edges_ties_single_points_and_a_missing_on_demand_price():
    prices, on_demand, advisor = _edge_frame()
    result = score_markets(prices, on_demand, advisor, None, as_of=END, window_days=3)
    got = result.scores.set_index("availability_zone_id")
    assert list(got.index) == ["use1-az1", "use1-az2"]  # markets in order of first appearance
    single, moved = got.loc["use1-az1"], got.loc["use1-az2"]
    assert single["spot_price"] == 0.1 and single["changes_per_day"] == 0.0
    assert single["price_mean"] == pytest.approx(0.1)
    assert single["hours_since_change"] == 72.0  # no change: hours since its first row, capped at the window
    # The row before the window makes its first row a change (0.1 -> 0.2); the tie is a second one (-> 0.3).
    assert moved["spot_price"] == 0.3 and moved["price_mean"] == pytest.approx(0.3)
    assert moved["changes_per_day"] == pytest.approx(2 / 3)
    assert moved["mean_abs_change_pct"] == pytest.approx(75.0)
    assert moved["hours_since_change"] == 48.0
    # A missing on-demand price skips the market: it is never priced against zero.
    assert set(result.skipped["instance_type"]) == {"c5.large"}
    assert (result.scores["on_demand_price"] > 0).all() and (result.scores["price_to_on_demand"] > 0).all()


def test_categorical_keys_score_like_strings_and_a_row_missing_a_key_is_in_no_market(data):
    args = (data["on_demand"], data["advisor"], data["events"])
    plain = score_markets(data["prices"], *args, as_of=END).scores
    as_categories = data["prices"].astype({k: "category" for k in MARKET_KEY})
    pd.testing.assert_frame_equal(score_markets(as_categories, *args, as_of=END).scores, plain)
    # A row without an instance type (inside the window) is no market's: the others score as if it were not there.
    keyless = data["prices"].iloc[-1:].assign(instance_type=None, price=99.0)
    mixed = pd.concat([data["prices"].iloc[:5], keyless, data["prices"].iloc[5:]], ignore_index=True)
    pd.testing.assert_frame_equal(score_markets(mixed, *args, as_of=END).scores, plain)
