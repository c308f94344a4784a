"""Recommendations carry list and net savings; the action's threshold is on net; the reason says it in words."""

from __future__ import annotations

import pandas as pd
import pytest

from spot_pipelines.core import commitments as cm
from spot_pipelines.core.clock import utcnow
from spot_pipelines.core.optimization import HOURS_PER_MONTH, RecommendConfig, recommend
from tests.commitments.support import book, rate, ri, sp
from tests.optimization.test_recommend import instance, market
from tests.support.factories import catalog, on_demand

SPOT = 0.06  # m6i.xlarge spot: P 0.02/day, restart $0.10 + 2 h × $0.192


def run(instances, b, **config):
    markets = pd.DataFrame([market("m6i.xlarge", SPOT)])
    force = cm.InForce(b, {1: "p1"}, utcnow())
    return recommend(pd.DataFrame(instances), catalog(), on_demand(), markets, RecommendConfig(**config), force)


def by_id(result):
    return {r["instance_id"]: r for r in result.recommendations.to_dict("records")}


def test_without_commitments_net_equals_list():
    recs = by_id(run([instance("i-1", "m5.xlarge")], cm.Book.empty()))
    rec = recs["i-1"]
    assert rec["action"] == "move_to_spot"
    assert rec["net_monthly_savings_usd"] == rec["list_monthly_savings_usd"] == rec["monthly_savings_usd"] > 0
    assert rec["commitment_covered_fraction"] == 0.0


def test_four_m5_xlarge_with_an_ri_for_two_all_move_and_each_saves_list():
    recs = by_id(run([instance(f"i-{k}", "m5.xlarge") for k in range(1, 5)], book([ri("ri-1", "m5.xlarge", 2)])))
    assert {r["action"] for r in recs.values()} == {"move_to_spot"}
    covered = recs["i-1"]
    assert covered["commitment_covered_fraction"] == 1.0 and recs["i-3"]["commitment_covered_fraction"] == 0.0
    assert covered["net_monthly_savings_usd"] == pytest.approx(covered["list_monthly_savings_usd"], abs=0.01)
    assert "100% covered by RI ri-1: the freed commitment covers i-3 instead" in covered["reason"]


def test_a_fully_covered_instance_stays_on_demand_and_says_why():
    recs = by_id(run([instance("i-1", "m5.xlarge")], book([ri("ri-1", "m5.xlarge", 1)])))
    rec = recs["i-1"]
    assert rec["action"] == "stay_on_demand" and rec["target_instance_type"] is None
    assert rec["monthly_savings_usd"] == 0.0
    assert rec["list_monthly_savings_usd"] > 0 > rec["net_monthly_savings_usd"]
    risk_adjusted = SPOT + (1 - (1 - 0.02) ** (1 / 24)) * (0.10 + 2 * 0.192)
    assert rec["net_monthly_savings_usd"] == pytest.approx(-risk_adjusted * HOURS_PER_MONTH, abs=0.01)
    assert rec["reason"].startswith(
        "stays on-demand: 100% covered by RI ri-1; moving it would leave $0.1920/h of it unused; net $"
    )


def test_a_commitment_expiring_mid_month_makes_net_half_of_list_and_the_threshold_uses_net():
    half = book([ri("ri-1", "m5.xlarge", 1, ends_in_hours=HOURS_PER_MONTH / 2)])
    rec = by_id(run([instance("i-1", "m5.xlarge")], half, min_discount_pct=20))["i-1"]
    risk_adjusted = SPOT + (1 - (1 - 0.02) ** (1 / 24)) * (0.10 + 2 * 0.192)
    assert rec["net_monthly_savings_usd"] == pytest.approx(
        (0.192 * HOURS_PER_MONTH / 2) - risk_adjusted * HOURS_PER_MONTH, abs=0.05
    )
    # 0.192/2 − 0.06… ≈ 16% of on-demand: below 20% it stays, with 10% it moves.
    assert rec["action"] == "stay_on_demand"
    rec = by_id(run([instance("i-1", "m5.xlarge")], half, min_discount_pct=10))["i-1"]
    assert rec["action"] == "move_to_spot" and rec["monthly_savings_usd"] == rec["net_monthly_savings_usd"]


def test_the_reason_gives_the_one_year_savings_plan_break_even_and_under_use():
    plans = [sp("sp-1", 0.01)]
    rates = [rate("sp-1", "m5.xlarge", 0.121), rate("sp-1", "c5.xlarge", 0.107)]
    b = book(sps=plans, rates=rates)
    b = cm.Book(b.reserved, b.savings_plans, b.rates, utilization={"p1": {"savings_plans": 62.0}})
    rec = by_id(run([instance("i-1", "m5.xlarge")], b))["i-1"]
    p_hour = (0.121 - SPOT) / (0.10 + 2 * 0.192)
    assert f"beats spot above P(interruption/day) {1 - (1 - p_hour) ** 24:.1%}" in rec["reason"]
    assert "savings plans already run at 62% utilization" in rec["reason"]


def test_a_stated_gap_reaches_the_reason():
    b = cm.Book.empty()
    b = cm.Book(b.reserved, b.savings_plans, b.rates, gaps={"p1": ["savingsplans:DescribeSavingsPlans denied"]})
    rec = by_id(run([instance("i-1", "m5.xlarge")], b))["i-1"]
    assert "net savings assume what could be read: savingsplans:DescribeSavingsPlans denied" in rec["reason"]
