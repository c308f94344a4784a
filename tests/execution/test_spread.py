"""Spread, don't pile: one shape's instances move to at most a share of any one pool (pure core logic)."""

from __future__ import annotations

from collections import Counter

import pytest

from spot_pipelines.core.execution import ExecutionError, Pool, spread_across_pools

AZS = {"use1-az1", "use1-az2", "use1-az4"}
POOLS = [
    Pool("m6i.large", "use1-az1"),
    Pool("m6i.large", "use1-az2"),
    Pool("m5a.large", "use1-az1"),
    Pool("m6a.large", "use1-az4"),
    Pool("m7i.large", "use1-az2"),
]


def ids(n: int) -> list[str]:
    return [f"i-{k}" for k in range(n)]


def test_four_identical_instances_never_land_in_one_pool():
    plan = spread_across_pools(ids(4), POOLS, AZS)
    pools = Counter(plan.values())
    assert max(pools.values()) == 1 and len(pools) == 4  # 20% of 4 rounds down: at least one per pool
    assert len({p.availability_zone_id for p in plan.values()}) == 3  # every allowed AZ ID used


def test_no_pool_takes_more_than_the_share_and_the_rest_stay_put():
    plan = spread_across_pools(ids(10), POOLS, AZS)
    taken = Counter(p for p in plan.values() if p)
    assert max(taken.values()) == 2  # 20% of 10
    assert sum(taken.values()) == 10 and None not in plan.values()
    plan = spread_across_pools(ids(20), POOLS[:3], AZS)  # three pools: 4 each (20%), eight stay
    assert Counter(plan.values()) == {POOLS[0]: 4, POOLS[1]: 4, POOLS[2]: 4, None: 8}


def test_consecutive_picks_alternate_az_ids_best_pools_first():
    plan = spread_across_pools(ids(3), POOLS, AZS)
    assert [p.availability_zone_id for p in plan.values()] == ["use1-az1", "use1-az2", "use1-az4"]
    assert list(plan.values())[:2] == [POOLS[0], POOLS[1]]


def test_fewer_than_three_pools_share_evenly():
    plan = spread_across_pools(ids(5), POOLS[:2], AZS)
    assert Counter(plan.values()) == {POOLS[0]: 3, POOLS[1]: 2}


def test_only_the_az_ids_the_subnets_allow():
    plan = spread_across_pools(ids(4), POOLS, {"use1-az2"})
    assert set(plan.values()) == {POOLS[1], POOLS[4]}
    assert spread_across_pools(ids(2), POOLS, {"use1-az9"}) == {"i-0": None, "i-1": None}


@pytest.mark.parametrize("share", [0, -0.1, 1.5])
def test_a_bad_share_is_refused_naming_the_field(share):
    with pytest.raises(ExecutionError, match="max_share: must be in"):
        spread_across_pools(ids(2), POOLS, AZS, max_share=share)
