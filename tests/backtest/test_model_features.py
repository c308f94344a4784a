"""recommend_model with the placement-score and rebalance features: the walk-forward fits get the stored placement
history and events, only what was stored before each day, and a placement score that tells interrupted pools from
calm ones (where prices and the advisor do not) is what makes the model worth serving.

Known answers are worked out here from the synthetic inputs, not by the replay."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

import spot_pipelines.core.backtest as backtest
from spot_pipelines.core.backtest import BacktestConfig, run_backtest
from spot_pipelines.core.optimization import HOURS_PER_MONTH, RecommendConfig
from tests.backtest.test_core import DAYS, HOURS, LOOKBACK, OD, RESTART, START, fleet
from tests.backtest.test_model import (
    A_RATIO,
    B_RATIO,
    FIRST,
    OTHER_AZS,
    OTHER_TYPES,
    REGION,
    TRAINING_DAYS,
    pool_prices,
    safe_advisor,
    warning,
)
from tests.support.factories import catalog, on_demand

CONFIG = BacktestConfig(window_days=DAYS, lookback_days=LOOKBACK, model_training_days=TRAINING_DAYS)


def scored(at, az: str, itype: str, score: int) -> dict:
    """A stored placement score of a configuration holding `itype` (and two types the fleet cannot use)."""
    types = ",".join(sorted({itype, "m6g.large", "m6g.xlarge"}))
    return {
        "config_key": f"{az}-{types}",
        "region": REGION,
        "availability_zone_id": az,
        "instance_types": types,
        "target_capacity": 1,
        "score": score,
        "fetched_at": at,
    }


def tight_pools_get_interrupted():
    """Every pool is calm in price (one record a day) and advisor band 0. Each day each pool of the other AZs is
    tight (30%, drawn afresh daily) or not; AWS scores it 1-3 when tight, 7-10 when not, and a tight pool is warned
    the next day with probability 0.7 (a calm one 0.02). In use1-az1, A (m5.large, the cheaper) is calm and never
    warned before the window, then scored 1 from the day before it on and warned every day of it at 12:05; B
    (m6i.large) is scored 10 throughout and never warned. Rebalance recommendations come with each warning."""
    rng = np.random.default_rng(3)
    parts, events, placement = [], [], []
    n_days = TRAINING_DAYS + DAYS
    for itype in OTHER_TYPES:
        for az in OTHER_AZS:
            parts.append(pool_prices(az, itype, rng.uniform(0.25, 0.45), False))
            for d in range(n_days):
                tight = rng.random() < 0.3
                score = int(rng.integers(1, 4)) if tight else int(rng.integers(7, 11))
                placement.append(scored(FIRST + timedelta(days=d, hours=int(rng.integers(0, 23))), az, itype, score))
                if d + 1 < n_days and rng.random() < (0.7 if tight else 0.02):
                    at = FIRST + timedelta(days=d + 1, hours=int(rng.integers(0, 24)), minutes=5)
                    events.append(warning(at, az, itype))
                    events.append(
                        {**warning(at - timedelta(minutes=3), az, itype), "event_type": "rebalance_recommendation"}
                    )
    parts += [pool_prices("use1-az1", "m5.large", A_RATIO, False), pool_prices("use1-az1", "m6i.large", B_RATIO, False)]
    for d in range(n_days):
        day = FIRST + timedelta(days=d)
        placement.append(
            scored(day + timedelta(hours=6), "use1-az1", "m5.large", 1 if day >= START - timedelta(days=1) else 9)
        )
        placement.append(scored(day + timedelta(hours=6), "use1-az1", "m6i.large", 10))
    events += [warning(START + timedelta(days=d, hours=12, minutes=5), "use1-az1", "m5.large") for d in range(DAYS)]
    advisor = safe_advisor()
    return pd.concat(parts, ignore_index=True), advisor, pd.DataFrame(events), pd.DataFrame(placement)


@pytest.fixture(scope="module")
def world():
    return tight_pools_get_interrupted()


def replay(world, placement):
    price_rows, advisor, events, _ = world
    return run_backtest(
        fleet(1), catalog(), on_demand(), price_rows, advisor, events, start=START, config=CONFIG, placement=placement
    )


def test_the_walk_forward_fit_sees_only_placement_scores_and_events_stored_before_each_day(world, monkeypatch):
    seen = {"train": [], "score": []}
    real_frame, real_score = backtest.training_frame, backtest.score_markets

    def spy_frame(prices, on_demand, advisor, events, *, start, end, config, placement):
        seen["train"].append((start, end, placement, events))
        return real_frame(prices, on_demand, advisor, events, start=start, end=end, config=config, placement=placement)

    def spy_score(prices, on_demand, advisor, events, *, as_of, window_days, placement):
        seen["score"].append((as_of, placement, events))
        return real_score(prices, on_demand, advisor, events, as_of=as_of, window_days=window_days, placement=placement)

    monkeypatch.setattr(backtest, "training_frame", spy_frame)
    monkeypatch.setattr(backtest, "score_markets", spy_score)
    placement = world[3]
    replay(world, placement)
    [(start, end, fit_placement, fit_events)] = seen["train"]  # one refit, on day 0
    assert (start, end) == (START - timedelta(days=TRAINING_DAYS), START)
    # Exactly the stored scores fetched in [start, end): worked out from the input here.
    want = placement[(placement["fetched_at"] >= start) & (placement["fetched_at"] < end)]
    assert len(fit_placement) == len(want) > 0 and fit_placement["fetched_at"].max() < START
    assert set(fit_events["event_type"]) == {"spot_interruption_warning", "rebalance_recommendation"}
    assert fit_events["event_time"].max() < START
    assert [as_of for as_of, _, _ in seen["score"]] == [START + timedelta(days=d) for d in range(DAYS)]
    for as_of, day_placement, day_events in seen["score"]:
        assert day_placement["fetched_at"].max() < as_of and day_events["event_time"].max() < as_of
        assert day_placement["fetched_at"].max() >= as_of - timedelta(days=1)  # the day before's scores are there


def test_placement_scores_make_the_model_worth_serving_and_without_them_it_falls_back(world):
    result = replay(world, world[3])
    p = result.policies.set_index("policy")
    [fit] = result.model_fits.to_dict("records")
    assert fit["risk"] == "model" and fit["label_source"] == "observed_interruptions", fit["reason"]
    assert fit["brier"] < 0.9 * fit["baseline_brier"]
    assert (result.model_days, result.prior_days) == (DAYS, 0)
    # The model reads A's score of 1: the instance goes to B on day 0 and stays; B is never warned.
    model_cost = B_RATIO * OD * HOURS + RESTART
    assert p.at["recommend_model", "total_cost_usd"] == pytest.approx(model_cost)
    assert (p.at["recommend_model", "moves"], p.at["recommend_model", "interruptions"]) == (1, 0)
    # The prior (band 0, no warning of A seen) takes A until its observed warning rate passes the 25% ceiling.
    p_band = 1 - (1 - 0.025) ** (1 / 30)
    prior_p = [1 - (1 - p_band) * (1 - d / (24 * LOOKBACK)) ** 24 for d in range(DAYS)]
    leave = next(d for d, p_d in enumerate(prior_p) if p_d > RecommendConfig.max_p_interruption)
    prior_cost = A_RATIO * OD * 24 * leave + B_RATIO * OD * 24 * (DAYS - leave) + RESTART * (1 + leave + 1)
    assert p.at["recommend", "total_cost_usd"] == pytest.approx(prior_cost)
    assert result.model_worth_usd_per_instance_month == pytest.approx(
        (prior_cost - model_cost) * HOURS_PER_MONTH / HOURS
    )

    # The same history with no placement score stored: prices, band and events say nothing the prior does not, so
    # the fit only ties the advisor baseline, is refused, and every day stays on the prior.
    blind = replay(world, None)
    [fit] = blind.model_fits.to_dict("records")
    assert fit["risk"] == "prior" and fit["reason"].startswith("blocked: Brier"), fit["reason"]
    assert (blind.model_days, blind.prior_days) == (0, DAYS)
    assert blind.model_worth_usd_per_instance_month == 0
