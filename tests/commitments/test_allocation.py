"""The allocation as AWS applies it and the fleet-bill delta, on known answers computed by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from spot_pipelines.core import commitments as cm
from spot_pipelines.core.clock import utcnow
from tests.commitments.support import book, fleet, instance, leaving, rate, ri, sp

MONTH = cm.HOURS_PER_MONTH


def run(frame, changes, b):
    return cm.evaluate(frame, changes, b, utcnow())


def by_id(frame, key="instance_id"):
    return {r[key]: r for r in frame.to_dict("records")}


@pytest.mark.parametrize("zonal", [True, False], ids=["zonal RI", "regional RI"])
def test_four_m5_xlarge_with_an_ri_for_two(zonal):
    """Covered or not, moving one of four leaves three, of which the RI still covers two: the bill falls by a full
    on-demand price ($0.192/h). The covered one's RI is taken by an uncovered one (i-3)."""
    f = fleet(*(instance(f"i-{k}", "m5.xlarge") for k in range(1, 5)))
    ev = run(f, leaving(f, "i-1", "i-3"), book([ri("ri-1", "m5.xlarge", 2, zonal=zonal)]))
    cov = by_id(ev.coverage)
    assert [cov[f"i-{k}"]["covered_fraction"] for k in range(1, 5)] == [1.0, 1.0, 0.0, 0.0]
    assert cov["i-1"]["covered_by"] == "RI ri-1" and cov["i-3"]["covered_by"] is None
    ch = by_id(ev.changes)
    assert ch["i-3"]["bill_change_usd_per_hour"] == pytest.approx(-0.192)
    assert ch["i-1"]["bill_change_usd_per_hour"] == pytest.approx(-0.192)
    assert ch["i-1"]["absorbed_by"] == "i-3" and ch["i-3"]["absorbed_by"] is None
    assert ch["i-1"]["bill_change_monthly_usd"] == pytest.approx(-0.192 * MONTH)
    assert ev.commitments["unused_usd_per_hour"].tolist() == [0.0]


def test_two_m5_xlarge_both_covered_moving_one_saves_nothing_on_the_bill():
    f = fleet(instance("i-1", "m5.xlarge"), instance("i-2", "m5.xlarge"))
    ev = run(f, leaving(f, "i-1"), book([ri("ri-1", "m5.xlarge", 2)]))
    ch = ev.changes.iloc[0]
    assert ch["bill_change_usd_per_hour"] == pytest.approx(0.0)
    assert ch["unabsorbed_usd_per_hour"] == pytest.approx(0.192)
    assert ch["absorbed_by"] is None


def test_an_m5_2xlarge_is_covered_by_two_m5_xlarge_regional_ris_through_size_flexibility():
    f = fleet(instance("i-big", "m5.2xlarge", az="use1-az2"))
    ev = run(f, leaving(f, "i-big"), book([ri("ri-a", "m5.xlarge", 1, usd_per_hour=0.12), ri("ri-b", "m5.xlarge", 1)]))
    cov = ev.coverage.iloc[0]
    assert cov["covered_fraction"] == pytest.approx(1.0)
    assert cov["covered_by"] == "RI ri-a, ri-b"
    # 16 normalized units from 2 × 8; each RI's effective $/h: 0.12 and 0.6 × 0.192 = 0.1152.
    assert cov["effective_hourly_cost"] == pytest.approx(0.12 + 0.1152)
    assert ev.changes.iloc[0]["bill_change_usd_per_hour"] == pytest.approx(0.0)


def test_one_m5_xlarge_ri_covers_half_an_m5_2xlarge_and_smaller_sizes_first():
    f = fleet(instance("i-big", "m5.2xlarge"), instance("i-small", "m5.large"))
    ev = run(f, leaving(f, "i-big", "i-small"), book([ri("ri-a", "m5.xlarge", 1)]))
    cov = by_id(ev.coverage)
    # 8 units: the m5.large (4 units) first, the other 4 cover a quarter of the m5.2xlarge (16 units).
    assert cov["i-small"]["covered_fraction"] == 1.0
    assert cov["i-big"]["covered_fraction"] == pytest.approx(0.25)
    ch = by_id(ev.changes)
    assert ch["i-big"]["bill_change_usd_per_hour"] == pytest.approx(-0.75 * 0.384)
    # The m5.large leaving frees 4 units, which cover another quarter of the m5.2xlarge: -0.096 + ... = -0.096.
    assert ch["i-small"]["bill_change_usd_per_hour"] == pytest.approx(-0.25 * 0.384)
    assert ch["i-small"]["absorbed_by"] == "i-big"


def test_windows_regional_ris_are_not_size_flexible():
    f = fleet(instance("i-w", "m5.2xlarge", platform=cm.WINDOWS))
    ev = run(f, leaving(f, "i-w"), book([ri("ri-w", "m5.xlarge", 2, platform=cm.WINDOWS)]))
    assert ev.coverage.iloc[0]["covered_fraction"] == 0.0
    assert ev.commitments.iloc[0]["unused_usd_per_hour"] == pytest.approx(2 * 0.6 * 0.192)


def test_a_compute_savings_plan_of_50_cents_across_two_families_highest_discount_first():
    """m5.xlarge at $0.134 (30.2% off $0.192) before c5.xlarge at $0.119 (30.0% off $0.17): two m5 use $0.268,
    the remaining $0.232 covers 0.232 / 0.119 = 1.94958 c5 units. Moving an m5 frees $0.134, enough for the rest
    of the c5 usage: the bill falls by the whole uncovered 0.05042 × $0.17 and $0.128/h goes unused."""
    f = fleet(
        instance("i-m1", "m5.xlarge"),
        instance("i-m2", "m5.xlarge"),
        instance("i-c1", "c5.xlarge"),
        instance("i-c2", "c5.xlarge"),
    )
    rates = [rate("sp-1", "m5.xlarge", 0.134), rate("sp-1", "c5.xlarge", 0.119)]
    ev = run(f, leaving(f, "i-m1", "i-c2"), book(sps=[sp("sp-1", 0.50)], rates=rates))
    cov = by_id(ev.coverage)
    c5_units = 0.232 / 0.119
    assert cov["i-m1"]["covered_fraction"] == cov["i-m2"]["covered_fraction"] == 1.0
    assert cov["i-c1"]["covered_fraction"] == 1.0
    assert cov["i-c2"]["covered_fraction"] == pytest.approx(c5_units - 1, abs=1e-6)
    assert cov["i-m1"]["covered_by"] == "Savings Plan sp-1"
    uncovered = (2 - c5_units) * 0.17
    ch = by_id(ev.changes)
    assert ch["i-m1"]["bill_change_usd_per_hour"] == pytest.approx(-uncovered)
    assert ch["i-m1"]["absorbed_by"] == "i-c2"
    # The partly covered c5 leaving: the plan's $0.119 × 0.94958 goes to nothing else, the uncovered 0.05042 goes.
    assert ch["i-c2"]["bill_change_usd_per_hour"] == pytest.approx(-uncovered)
    assert ev.commitments.iloc[0]["unused_usd_per_hour"] == pytest.approx(0.0, abs=1e-9)


def test_an_ec2_instance_plan_applies_before_a_compute_plan_and_only_to_its_family():
    f = fleet(instance("i-m", "m5.xlarge"), instance("i-c", "c5.xlarge"))
    plans = [sp("sp-compute", 0.119), sp("sp-ec2", 0.5, plan_type=cm.EC2_INSTANCE_SP, family="m5")]
    rates = [
        rate("sp-ec2", "m5.xlarge", 0.12),
        rate("sp-compute", "m5.xlarge", 0.134),
        rate("sp-compute", "c5.xlarge", 0.119),
    ]
    ev = run(f, leaving(f, "i-m"), book(sps=plans, rates=rates))
    cov = by_id(ev.coverage)
    assert cov["i-m"]["covered_by"] == "Savings Plan sp-ec2"
    assert cov["i-c"]["covered_by"] == "Savings Plan sp-compute"
    groups = by_id(ev.commitments, "commitment_ids")
    assert groups["sp-ec2"]["unused_usd_per_hour"] == pytest.approx(0.38)
    assert groups["sp-compute"]["unused_usd_per_hour"] == pytest.approx(0.0)
    assert ev.changes.iloc[0]["bill_change_usd_per_hour"] == pytest.approx(0.0)


def test_a_commitment_expiring_mid_month_counts_until_it_ends():
    f = fleet(instance("i-1", "m5.xlarge"))
    ev = run(f, leaving(f, "i-1"), book([ri("ri-1", "m5.xlarge", 1, ends_in_hours=MONTH / 2)]))
    assert [h for _, h in ev.segments] == pytest.approx([MONTH / 2, MONTH / 2], abs=1e-3)
    ch = ev.changes.iloc[0]
    assert ch["bill_change_usd_per_hour"] == pytest.approx(0.0)  # covered now
    assert ch["bill_change_monthly_usd"] == pytest.approx(-0.192 * MONTH / 2, abs=1e-3)  # on-demand once the RI ends


def test_a_billing_family_shares_its_commitments_and_other_pools_do_not():
    f = fleet(instance("i-member", "m5.xlarge", pool="family:acme"), instance("i-alone", "m5.xlarge", pool="solo"))
    ev = run(f, leaving(f, "i-member", "i-alone"), book([ri("ri-payer", "m5.xlarge", 1, pool="family:acme")]))
    cov = by_id(ev.coverage)
    assert cov["i-member"]["covered_fraction"] == 1.0 and cov["i-alone"]["covered_fraction"] == 0.0
    ch = by_id(ev.changes)
    assert ch["i-member"]["bill_change_usd_per_hour"] == pytest.approx(0.0)
    assert ch["i-alone"]["bill_change_usd_per_hour"] == pytest.approx(-0.192)


def test_joining_on_demand_takes_unused_commitment_first():
    f = fleet(instance("i-1", "m5.xlarge"))
    back = fleet(instance("i-spot", "m5.xlarge"), instance("i-spot2", "c5.xlarge")).assign(delta=1)
    ev = run(f, back, book([ri("ri-1", "m5.xlarge", 2)]))
    ch = by_id(ev.changes)
    assert ch["i-spot"]["bill_change_usd_per_hour"] == pytest.approx(0.0)  # the RI's idle half covers it
    assert ch["i-spot2"]["bill_change_usd_per_hour"] == pytest.approx(0.17)


def test_a_fleet_without_commitments_saves_list():
    f = fleet(instance("i-1", "m5.xlarge"), instance("i-2", "c5.xlarge"))
    ev = run(f, leaving(f, "i-1", "i-2"), cm.Book.empty())
    assert ev.changes["bill_change_usd_per_hour"].tolist() == pytest.approx([-0.192, -0.17])
    assert ev.coverage["covered_fraction"].tolist() == [0.0, 0.0]


def test_the_matrix_evaluation_equals_re_allocating_the_pool_per_instance():
    """On a random fleet with zonal, regional, size-flexible RIs, both kinds of Savings Plans, expiries within the
    month and billing families: the same monthly bill change for every move and every return as the loop."""
    from benchmarks.bench_commitments import naive_bill_changes, pools, synthetic_book
    from benchmarks.bench_optimization import synthetic_fleet

    data = synthetic_fleet(400, seed=3, n_regions=2)
    b = synthetic_book(data, 60, 6, seed=9)
    od = data["on_demand"].drop_duplicates("instance_type").set_index("instance_type")["usd_per_hour"]
    inst = data["instances"].assign(
        pool=lambda f: f["account_id"].map(pools()),
        od=lambda f: f["instance_type"].map(od),
        product_description=cm.LINUX,
    )
    on_demand = inst[inst["lifecycle"] == "on-demand"]
    changes = pd.concat(
        [on_demand.assign(delta=-1), inst[inst["lifecycle"] == "spot"].head(40).assign(delta=1)], ignore_index=True
    )
    now = utcnow()
    ev = cm.evaluate(on_demand, changes, b, now)
    assert len(ev.segments) > 1 and (ev.coverage["covered_fraction"] > 0).sum() > 20
    sample = changes.sample(30, random_state=1)
    expected = naive_bill_changes(on_demand, sample, b, now)
    got = ev.changes["bill_change_monthly_usd"].to_numpy()[sample.index]
    assert got == pytest.approx(expected, abs=1e-6)
    assert (np.abs(got + sample["od"].to_numpy() * MONTH) > 0.01).any()  # some moves are not worth list


def test_pools_read_by_account_name_or_billing_family():
    names = {3: "payments-prod"}
    assert cm.pool_label("account:3", names) == "account payments-prod"
    assert cm.pool_label("account:9", names) == "account 9"  # an account gone since: its id, not a blank
    assert cm.pool_label("family:org-1", names) == "billing family org-1"
