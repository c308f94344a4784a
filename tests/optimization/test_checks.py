"""The asset checks' logic: each passes on what recommend() and predictions produce, and fails on broken data."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from spot_pipelines.core.ml import out_of_range_probabilities, unpredicted_markets
from spot_pipelines.core.optimization import unaccounted_instances, unprofitable_moves, zero_priced
from spot_pipelines.core.risk import MARKET_KEY
from tests.optimization.test_recommend import instance, market, run

FLEET = [
    instance("i-od", "m5.large"),
    instance("i-spot-ok", "m5.large", lifecycle="spot"),
    instance("i-unknown", "zz9.mega"),
    instance("i-stopped", "m5.large", state="stopped"),
]
MARKETS = [market("m5.large", 0.030), market("m6i.large", 0.032)]


def fleet_and_result():
    return pd.DataFrame(FLEET), run(FLEET, MARKETS)


def test_recommend_output_passes_every_recommendation_check():
    fleet, result = fleet_and_result()
    assert result.unchanged == 1 and len(result.skipped) == 1  # the three cases the check accounts for
    assert unaccounted_instances(fleet, result) == []
    assert unprofitable_moves(result.recommendations) == []
    assert zero_priced(result.recommendations) == []


def test_an_instance_dropped_without_a_reason_fails_the_accounting_check():
    fleet, result = fleet_and_result()
    dropped = dataclasses.replace(result, recommendations=result.recommendations.iloc[0:0])
    assert unaccounted_instances(fleet, dropped) == ["i-od (on-demand): no recommendation and no skip reason"]
    no_reason = dataclasses.replace(result, skipped=result.skipped.assign(reason=""))
    assert unaccounted_instances(fleet, no_reason) == ["i-unknown (on-demand): no recommendation and no skip reason"]
    # A spot instance silently dropped: the unchanged count no longer adds up.
    miscounted = dataclasses.replace(result, unchanged=0)
    assert unaccounted_instances(fleet, miscounted) == ["1 spot instances without a row, but 0 counted unchanged"]


def test_a_move_that_does_not_save_fails_and_a_zero_price_fails():
    _, result = fleet_and_result()
    recs = result.recommendations
    assert list(recs["action"]) == ["move_to_spot"]
    assert unprofitable_moves(recs.assign(net_monthly_savings_usd=0.0)) == ["i-od: net $0.0/month"]
    assert unprofitable_moves(recs.assign(net_monthly_savings_usd=None)) == ["i-od: net $None/month"]
    # A stay with no saving is fine: only moves must save.
    assert unprofitable_moves(recs.assign(action="stay_on_demand", net_monthly_savings_usd=0.0)) == []
    assert zero_priced(recs.assign(recommended_hourly_cost=0.0)) == ["i-od: recommended_hourly_cost"]
    assert zero_priced(recs.assign(on_demand_hourly_cost=np.nan, current_hourly_cost=-1.0)) == [
        "i-od: on_demand_hourly_cost, current_hourly_cost"
    ]


def test_prediction_checks_fail_on_out_of_range_or_missing_markets():
    scores = pd.DataFrame([market(t, 0.03) for t in ("m5.large", "m6i.large", "c5.large")])[MARKET_KEY]
    good = scores.assign(p_interruption=[0.0, 0.5, 1.0])
    assert out_of_range_probabilities(good) == 0 and unpredicted_markets(scores, good, MARKET_KEY) == 0
    assert out_of_range_probabilities(good.assign(p_interruption=[-0.1, 1.2, np.nan])) == 3
    assert unpredicted_markets(scores, good.iloc[:1], MARKET_KEY) == 2
