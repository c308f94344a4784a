"""recommend_model: the replay on the interruption model fit walk-forward, against the prior-driven recommend.

Known answers are worked out here from the synthetic prices and warnings, not by the replay."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

from spot_pipelines.core.backtest import BacktestConfig, run_backtest
from spot_pipelines.core.errors import ValidationError
from spot_pipelines.core.optimization import HOURS_PER_MONTH, RecommendConfig
from tests.backtest.test_core import DAYS, HOURS, LOOKBACK, OD, RESTART, START, fleet, prices, replay, warnings_every
from tests.support.factories import CATALOG, catalog, on_demand

REGION = "us-east-1"
TRAINING_DAYS = 40
FIRST = START - timedelta(days=TRAINING_DAYS)
OD_OF = dict(zip(CATALOG["instance_type"], CATALOG["usd_per_hour"]))
# Pools the fleet (m5.large in use1-az1) cannot move to (same AZ ID only): the model's training examples.
OTHER_TYPES = ["m5.large", "m6i.large", "m6a.large", "m5.xlarge", "m6i.xlarge", "m6a.xlarge", "c5.large", "r5.large"]
OTHER_AZS = ["use1-az2", "use1-az3", "use1-az4", "use1-az5"]
A_RATIO, B_RATIO = 0.26, 0.30  # A: m5.large in use1-az1, the cheaper; B: m6i.large in use1-az1 (on demand 0.096 too)


def pool_prices(az: str, itype: str, ratio: float, moving: bool) -> pd.DataFrame:
    """From FIRST to the window's end. A moving pool alternates between 0.9 and 1.1 x its ratio of on-demand every
    2 hours (so its mean over any whole day is the ratio exactly); a calm one has one record a day at its ratio."""
    n_hours = 24 * (TRAINING_DAYS + DAYS)
    hours = np.arange(0, n_hours, 2 if moving else 24)
    level = np.where((hours // 2) % 2 == 0, 0.9, 1.1) if moving else np.ones(len(hours))
    return pd.DataFrame(
        {
            "ts": [FIRST + timedelta(hours=int(h)) for h in hours],
            "region": REGION,
            "availability_zone": az,
            "availability_zone_id": az,
            "instance_type": itype,
            "product_description": "Linux/UNIX",
            "price": OD_OF[itype] * ratio * level,
        }
    )


def warning(at, az: str, itype: str) -> dict:
    return {
        "event_type": "spot_interruption_warning",
        "event_time": at,
        "region": REGION,
        "availability_zone_id": az,
        "instance_type": itype,
    }


def safe_advisor() -> pd.DataFrame:
    """The Spot Advisor calling every type safe (band 0), published the day before the data starts."""
    return pd.DataFrame(
        {
            "day": (FIRST - timedelta(days=1)).date(),
            "region": REGION,
            "operating_system": "Linux",
            "instance_type": list(OD_OF),
            "interruption_band": 0,
            "savings_pct": 70,
        }
    )


def moving_pools_get_interrupted():
    """Every pool of the region is advisor band 0 (the advisor calls it safe). In the other AZs, the pools whose
    price moves every 2 hours got a warning every day; the calm ones never did. In use1-az1, A moves like them
    but has no warning of its own before the window, so the prior (band 0, no observed warning) takes it as the
    cheapest; in the window it is warned every day at 12:05. B, calm, is never warned."""
    rng = np.random.default_rng(7)
    parts, events = [], []
    for k, itype in enumerate(OTHER_TYPES):
        for j, az in enumerate(OTHER_AZS):
            moving = (k + j) % 2 == 0
            parts.append(pool_prices(az, itype, rng.uniform(0.25, 0.45), moving))
            if moving:
                for d in range(TRAINING_DAYS + DAYS):
                    at = FIRST + timedelta(days=d, hours=int(rng.integers(0, 24)), minutes=5)
                    events.append(warning(at, az, itype))
    parts += [pool_prices("use1-az1", "m5.large", A_RATIO, True), pool_prices("use1-az1", "m6i.large", B_RATIO, False)]
    events += [warning(START + timedelta(days=d, hours=12, minutes=5), "use1-az1", "m5.large") for d in range(DAYS)]
    advisor = safe_advisor()
    return pd.concat(parts, ignore_index=True), advisor, pd.DataFrame(events)


def test_the_model_avoids_a_pool_the_advisor_calls_safe_and_its_worth_is_the_restarts_it_saves():
    price_rows, advisor, events = moving_pools_get_interrupted()
    result = run_backtest(
        fleet(1),
        catalog(),
        on_demand(),
        price_rows,
        advisor,
        events,
        start=START,
        config=BacktestConfig(window_days=DAYS, lookback_days=LOOKBACK, model_training_days=TRAINING_DAYS),
    )
    p = result.policies.set_index("policy")
    # One fit, on day 0 (refit every 7 days), on observed warnings; it beats the advisor baseline, so it prices
    # every day of the window.
    [fit] = result.model_fits.to_dict("records")
    assert fit["risk"] == "model" and fit["label_source"] == "observed_interruptions"
    assert fit["day"] == START and fit["brier"] < fit["baseline_brier"]
    assert (result.model_days, result.prior_days) == (DAYS, 0)
    # The model expects A to be interrupted: the instance moves to B on day 0 and stays; B is never warned.
    model_cost = B_RATIO * OD * HOURS + RESTART
    assert p.at["recommend_model", "total_cost_usd"] == pytest.approx(model_cost)
    assert (p.at["recommend_model", "moves"], p.at["recommend_model", "interruptions"]) == (1, 0)
    # The prior takes A on day 0 (cheaper, band 0, no warning seen) and keeps it while its P(interruption within a
    # day), from the band and the warned hours in the 336 h lookback (one more each day), stays within the 25%
    # ceiling; A is interrupted each of those days, and on the first day over the ceiling the instance moves to B.
    p_band = 1 - (1 - 0.025) ** (1 / 30)  # band 0: under 5% a month, 2.5% taken
    prior_p = [1 - (1 - p_band) * (1 - d / (24 * LOOKBACK)) ** 24 for d in range(DAYS)]
    leave = next(d for d, p_d in enumerate(prior_p) if p_d > RecommendConfig.max_p_interruption)
    assert leave == 4  # the premise: A's warnings cost the prior four restarts before it moves
    prior_cost = A_RATIO * OD * 24 * leave + B_RATIO * OD * 24 * (DAYS - leave) + RESTART * (1 + leave + 1)
    assert p.at["recommend", "total_cost_usd"] == pytest.approx(prior_cost)
    assert (p.at["recommend", "moves"], p.at["recommend", "interruptions"]) == (2, leave)
    worth = (prior_cost - model_cost) * HOURS_PER_MONTH / HOURS
    assert worth > 0
    assert result.model_worth_usd_per_instance_month == pytest.approx(worth)
    assert p.at["recommend", "interruptions_per_1000_instance_hours"] == pytest.approx(1000 * leave / HOURS)
    assert p.at["recommend_model", "interruptions_per_1000_instance_hours"] == 0


def test_with_too_little_data_every_day_falls_back_to_the_prior_and_costs_the_same():
    # One market with 14 days of history: too few warning market-days for observed labels before any refit.
    config = BacktestConfig(window_days=DAYS, lookback_days=LOOKBACK, model_retrain_days=2)
    result, p = replay(prices(("m5.large", 0.3 * OD)), events=warnings_every(5), config=config)
    assert (result.model_days, result.prior_days) == (0, DAYS)
    fits = result.model_fits
    assert fits["day"].tolist() == [START + timedelta(days=d) for d in (0, 2, 4, 6)]
    # Too few observed warnings for observed labels: weak advisor-band labels, which cannot beat their own source.
    assert (fits["risk"] == "prior").all() and (fits["label_source"] == "advisor_band_weak").all()
    assert fits["reason"].str.startswith("blocked: Brier").all()
    cols = ["total_cost_usd", "moves", "interruptions", "flips_per_instance_month"]
    assert p.loc["recommend_model", cols].tolist() == p.loc["recommend", cols].tolist()
    assert result.model_worth_usd_per_instance_month == 0


def test_a_retrain_period_below_one_day_names_the_field():
    with pytest.raises(ValidationError, match="model_retrain_days"):
        BacktestConfig(model_retrain_days=0)


def test_a_training_window_too_short_for_the_model_names_the_field():
    # The model's features need 14 days, its labels a day after them, and its holdout two days: 17 at least.
    config = BacktestConfig(window_days=DAYS, lookback_days=LOOKBACK, model_training_days=16)
    with pytest.raises(ValidationError, match="model_training_days: must be at least 17"):
        replay(prices(("m5.large", 0.3 * OD)), config=config)
