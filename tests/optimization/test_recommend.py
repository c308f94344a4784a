"""Recommendations: compatibility, risk-adjusted costs, thresholds, diversification, skips."""

from __future__ import annotations

from collections import Counter

import pandas as pd
import pytest

from benchmarks.bench_optimization import naive_recommend, synthetic_fleet
from spot_pipelines.core.errors import ValidationError
from spot_pipelines.core.optimization import HOURS_PER_MONTH, RecommendConfig, recommend
from tests.support.factories import catalog, on_demand

AZ = "use1-az1"


def market(itype: str, price: float, p: float = 0.02, az: str = AZ) -> dict:
    return {
        "region": "us-east-1",
        "availability_zone_id": az,
        "instance_type": itype,
        "product_description": "Linux/UNIX",
        "spot_price": price,
        "p_interruption": p,
        "horizon_hours": 24,
        "model_version": 7,
    }


def instance(
    iid: str,
    itype: str,
    lifecycle: str = "on-demand",
    tags: dict | None = None,
    az: str = AZ,
    platform: str = "Linux/UNIX",
    state: str = "running",
    account: int = 1,
) -> dict:
    return {
        "account_id": account,
        "instance_id": iid,
        "region": "us-east-1",
        "availability_zone_id": az,
        "instance_type": itype,
        "lifecycle": lifecycle,
        "state": state,
        "platform": platform,
        "architecture": None,
        "tags": tags or {},
    }


def run(instances, markets, **config):
    return recommend(pd.DataFrame(instances), catalog(), on_demand(), pd.DataFrame(markets), RecommendConfig(**config))


def by_id(result) -> dict[str, dict]:
    return {r["instance_id"]: r for r in result.recommendations.to_dict("records")}


def test_move_to_spot_picks_the_cheapest_compatible_risk_adjusted_market():
    markets = [
        market("m5.large", 0.040),
        market("m6i.large", 0.035),
        market("m6a.large", 0.030, p=0.20),
        market("c5.large", 0.010),  # too little memory (4 GiB < 8 GiB)
        market("m6g.large", 0.005),  # arm64
        market("t3.large", 0.004),  # burstable
        market("m5.2xlarge", 0.020),  # 8 vCPUs > 2 × 2
        market("m6i.large", 0.001, az="use1-az2"),  # another AZ ID
    ]
    result = run([instance("i-a", "m5.large")], markets, restart_cost_usd=0.0, restart_cost_on_demand_hours=10.0)
    rec = by_id(result)["i-a"]
    assert rec["action"] == "move_to_spot"
    # m6a is cheapest on price but P=0.20/day × restart cost (10 h × $0.096) makes it dearer than m6i.
    p_hour = 1 - (1 - 0.20) ** (1 / 24)
    assert 0.030 + p_hour * 0.96 > 0.035 + (1 - (1 - 0.02) ** (1 / 24)) * 0.96
    assert rec["target_instance_type"] == "m6i.large" and rec["target_market"] == "spot"
    assert [c["instance_type"] for c in rec["candidates"]] == ["m6i.large", "m6a.large", "m5.large"]
    expected = 0.035 + (1 - (1 - 0.02) ** (1 / 24)) * 0.96
    assert rec["recommended_hourly_cost"] == pytest.approx(expected)
    assert rec["monthly_savings_usd"] == pytest.approx(round((0.096 - expected) * HOURS_PER_MONTH, 2))
    assert rec["model_version"] == 7
    assert "Move to m6i.large spot in use1-az1" in rec["reason"] and "saves $" in rec["reason"]


def test_minimum_discount_and_interruption_ceiling_keep_instances_on_demand():
    markets = [market("m5.large", 0.090), market("m6i.large", 0.050, p=0.6)]
    result = run([instance("i-a", "m5.large"), instance("i-b", "r5.large")], markets, min_discount_pct=20)
    recs = by_id(result)
    assert recs["i-a"]["action"] == "stay_on_demand"
    assert "below the 20% minimum discount" in recs["i-a"]["reason"]
    assert recs["i-a"]["target_instance_type"] is None and recs["i-a"]["monthly_savings_usd"] == 0
    assert recs["i-b"]["action"] == "stay_on_demand"
    assert recs["i-b"]["reason"].startswith("no compatible spot market")
    # Lowering the bar turns the first one into a move.
    assert by_id(run([instance("i-a", "m5.large")], markets, min_discount_pct=5))["i-a"]["action"] == "move_to_spot"


def test_groups_are_diversified_round_robin_over_at_least_three_pools():
    markets = [
        market("m5.xlarge", 0.070),
        market("m6i.xlarge", 0.060),
        market("m6a.xlarge", 0.065),
        market("m5.2xlarge", 0.170),
    ]  # 11% off: below the minimum
    group = {"aws:autoscaling:groupName": "web"}
    result = run([instance(f"i-{k}", "m5.xlarge", tags=group) for k in range(6)], markets)
    recs = result.recommendations
    assert set(recs["action"]) == {"diversify"}
    assert recs["target_instance_type"].value_counts().to_dict() == {"m6i.xlarge": 2, "m6a.xlarge": 2, "m5.xlarge": 2}
    assert recs["group_key"].iloc[0] == "1:aws:autoscaling:groupName=web"
    # With only two qualifying pools a group member is simply moved.
    two = run([instance("i-x", "m5.xlarge", tags=group)], markets[:2])
    assert by_id(two)["i-x"]["action"] == "move_to_spot"


def test_spot_instances_stay_return_or_move_by_their_own_pool():
    markets = [market("m5.large", 0.030), market("r5.large", 0.120, p=0.01)]
    good = run([instance("i-s", "m5.large", lifecycle="spot")], markets)
    assert good.recommendations.empty and good.unchanged == 1
    # Its own pool became expensive and risky; nothing compatible qualifies: back to on-demand.
    bad = run([instance("i-r", "r5.large", lifecycle="spot")], markets)
    rec = by_id(bad)["i-r"]
    assert rec["action"] == "return_to_on_demand"
    assert rec["target_market"] == "on-demand" and rec["target_instance_type"] == "r5.large"
    assert rec["recommended_hourly_cost"] == pytest.approx(0.126)
    assert "return to on-demand" in rec["reason"]
    # A spot instance in a risky pool with a better compatible pool moves there.
    risky = [market("m5.large", 0.030, p=0.5), market("m6i.large", 0.032)]
    moved = by_id(run([instance("i-m", "m5.large", lifecycle="spot")], risky))["i-m"]
    assert moved["action"] == "diversify" and moved["target_instance_type"] == "m6i.large"
    assert "no longer qualifies" in moved["reason"]


def test_unpriceable_instances_are_skipped_with_reasons_never_priced_at_zero():
    markets = [market("m5.large", 0.030)]
    instances = [
        instance("i-unknown", "zz9.mega"),  # not in the catalog
        instance("i-win", "m5.large", platform="Windows"),  # no Windows on-demand price
        instance("i-spot", "m6i.large", lifecycle="spot"),  # its own market has no price
        instance("i-stopped", "m5.large", state="stopped"),  # not running: not considered
        instance("i-ok", "m5.large"),
    ]
    result = run(instances, markets)
    reasons = dict(zip(result.skipped["instance_id"], result.skipped["reason"]))
    assert reasons["i-unknown"].startswith("instance type zz9.mega is not in the instance type catalog")
    assert reasons["i-win"].startswith("no on-demand price for m5.large (Windows)")
    assert reasons["i-spot"].endswith("no spot price history for its own market")
    assert "i-stopped" not in reasons and "i-stopped" not in set(result.recommendations["instance_id"])
    assert list(result.recommendations["instance_id"]) == ["i-ok"]
    assert (result.recommendations["on_demand_hourly_cost"] > 0).all()
    # A zero or missing spot price never becomes a candidate.
    zero = run([instance("i-ok", "m5.large")], [market("m5.large", 0.0)])
    assert by_id(zero)["i-ok"]["action"] == "stay_on_demand"


def test_allowed_families_restrict_candidates():
    markets = [market("m6i.large", 0.030), market("m6a.large", 0.020)]
    result = run([instance("i-a", "m5.large")], markets, allowed_families={"m5": ["m6i"]})
    assert by_id(result)["i-a"]["target_instance_type"] == "m6i.large"


def test_no_instances_and_bad_config():
    assert run([], [market("m5.large", 0.03)]).recommendations.empty
    with pytest.raises(ValidationError, match="min_discount_pct"):
        RecommendConfig(min_discount_pct=120)
    with pytest.raises(ValidationError, match="max_p_interruption"):
        RecommendConfig(max_p_interruption=0)


def test_vectorized_result_matches_a_per_instance_loop_on_a_realistic_fleet():
    fleet = synthetic_fleet(600, seed=4, n_regions=2)
    config = RecommendConfig()
    ours = recommend(**fleet, config=config).recommendations.set_index("instance_id")
    loop = pd.DataFrame(naive_recommend(fleet, config)).set_index("instance_id")
    standalone = ours[(ours["current_lifecycle"] == "on-demand") & ours["group_key"].isna()]
    joined = standalone.join(loop, rsuffix="_loop")
    assert len(joined) > 100
    assert ((joined["action"] == "move_to_spot") == (joined["action_loop"] == "move_to_spot")).all()
    moved = joined[joined["action"] == "move_to_spot"]
    assert (moved["target_instance_type"] == moved["target"]).all()
    assert moved["monthly_savings_usd"].to_numpy() == pytest.approx(
        moved["monthly_savings_usd_loop"].to_numpy(), abs=0.011
    )


def test_without_any_predictions_everything_stays_on_demand_or_is_skipped():
    cols = [
        "region",
        "availability_zone_id",
        "instance_type",
        "product_description",
        "spot_price",
        "p_interruption",
        "horizon_hours",
        "model_version",
    ]
    result = recommend(
        pd.DataFrame([instance("i-a", "m5.large"), instance("i-s", "m5.large", lifecycle="spot")]),
        catalog(),
        on_demand(),
        pd.DataFrame(columns=cols),
    )
    assert by_id(result)["i-a"]["action"] == "stay_on_demand"
    assert list(result.skipped["instance_id"]) == ["i-s"]
    only_unknown = run([instance("i-u", "zz.x")], [market("m5.large", 0.03)])
    assert only_unknown.recommendations.empty and list(only_unknown.skipped["instance_id"]) == ["i-u"]


CHEAP = [("m5.large", 0.030), ("m6i.large", 0.031), ("m6a.large", 0.029), ("m5.xlarge", 0.050), ("m6i.xlarge", 0.052)]


def targets(result) -> Counter:
    moved = result.recommendations[result.recommendations["action"] == "move_to_spot"]
    return Counter(zip(moved["account_id"], moved["target_instance_type"], moved["target_availability_zone_id"]))


def test_identical_instances_spread_so_no_pool_takes_more_than_its_share():
    fleet = [instance(f"i-{k:02d}", "m5.large") for k in range(10)]
    result = run(fleet, [market(t, p) for t, p in CHEAP])
    pools = targets(result)
    assert len(pools) == 5 and max(pools.values()) == 2  # 20% of 10 per pool, all five pools used
    assert (result.recommendations["action"] == "move_to_spot").all()


def test_beyond_every_pools_share_instances_stay_on_demand_saying_why():
    fleet = [instance(f"i-{k:02d}", "m5.large") for k in range(20)]
    result = run(fleet, [market(t, p) for t, p in CHEAP[:3]])
    assert sorted(targets(result).values()) == [4, 4, 4]  # three pools: 20% of 20 each
    stays = result.recommendations[result.recommendations["action"] == "stay_on_demand"]
    assert len(stays) == 8 and (stays["monthly_savings_usd"] == 0).all()
    assert stays["reason"].str.contains("3 qualifying spot pools already take their 20% share").all()


def test_with_fewer_pools_than_the_minimum_they_share_evenly_and_accounts_spread_apart():
    fleet = [instance(f"i-a{k}", "m5.large") for k in range(5)] + [instance("i-b0", "m5.large", account=2)]
    result = run(fleet, [market(t, p) for t, p in CHEAP[:2]])
    pools = targets(result)
    assert sorted(v for (acct, *_), v in pools.items() if acct == 1) == [2, 3]
    assert [v for (acct, *_), v in pools.items() if acct == 2] == [1]  # its own shape group, best pool
    with pytest.raises(ValidationError, match="max_pool_share"):
        RecommendConfig(max_pool_share=0)
