"""Net savings benchmark (issue 13): recommendations for 10,000 instances with 500 Reserved Instances and 20
Savings Plans (4 billing families of 5 accounts), against

1. today's list-price recommendations on the same fleet (target: net within 3× its time), and
2. a per-instance re-allocation loop: for every instance that changes market, the pool's whole allocation
   re-run without it (with it, for a return to on-demand) in each stretch of the month with one set of
   commitments (target: ours ≥ 20× faster). The loop is timed on a random sample of the changes and scaled
   linearly (all of them would take minutes); the note says how big the sample is.

Run alone: `python -m benchmarks.bench_commitments [--quick]`.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd

from benchmarks.bench_optimization import synthetic_fleet
from benchmarks.common import result_row
from spot_pipelines.core import commitments as cm
from spot_pipelines.core.clock import utcnow

FAMILIES = 4  # billing families of 5 accounts each (accounts 1-20)


def pools() -> dict[int, str]:
    return {a: f"family:{(a - 1) % FAMILIES}" for a in range(1, 21)}


def synthetic_book(fleet: dict[str, pd.DataFrame], n_ris: int, n_sps: int, seed: int = 5) -> cm.Book:
    """RIs on types the fleet runs on demand (30% zonal, 1-4 instances, 5% ending this month), Compute and EC2
    Instance Savings Plans with a rate for every (region, type) of the fleet at 25-40% off on-demand."""
    rng = np.random.default_rng(seed)
    now = utcnow()
    inst = fleet["instances"]
    od_inst = inst[inst["lifecycle"] == "on-demand"].reset_index(drop=True)
    pick = od_inst.iloc[rng.integers(0, len(od_inst), n_ris)].reset_index(drop=True)
    zonal = rng.random(n_ris) < 0.3
    ends = np.where(rng.random(n_ris) < 0.05, rng.uniform(24, 700, n_ris), rng.uniform(800, 20_000, n_ris))
    price = dict(zip(fleet["on_demand"]["instance_type"], fleet["on_demand"]["usd_per_hour"]))
    reserved = pd.DataFrame(
        {
            "commitment_id": [f"ri-{i:05d}" for i in range(n_ris)],
            "account_id": pick["account_id"],
            "region": pick["region"],
            "scope": np.where(zonal, cm.ZONAL, cm.REGIONAL),
            "availability_zone_id": np.where(zonal, pick["availability_zone_id"], None),
            "instance_type": pick["instance_type"],
            "product_description": cm.LINUX,
            "tenancy": "default",
            "instance_count": rng.integers(1, 5, n_ris),
            "offering_class": "standard",
            "start": now - timedelta(days=100),
            "end": [now + timedelta(hours=float(h)) for h in ends],
            "usd_per_hour": pick["instance_type"].map(price) * 0.6,
        }
    )
    reserved["pool"] = reserved["account_id"].map(pools())
    compute = rng.random(n_sps) < 0.7
    some = inst.iloc[rng.integers(0, len(inst), n_sps)].reset_index(drop=True)
    plans = pd.DataFrame(
        {
            "commitment_id": [f"sp-{i:03d}" for i in range(n_sps)],
            "account_id": rng.integers(1, 21, n_sps),
            "plan_type": np.where(compute, cm.COMPUTE_SP, cm.EC2_INSTANCE_SP),
            "region": np.where(compute, None, some["region"]),
            "instance_family": np.where(compute, None, some["instance_type"].str.split(".").str[0]),
            "commitment_usd_per_hour": rng.uniform(2.0, 12.0, n_sps).round(2),
            "term_years": np.where(rng.random(n_sps) < 0.5, 1.0, 3.0),
            "start": now - timedelta(days=30),
            "end": now + timedelta(days=300),
        }
    )
    plans["pool"] = plans["account_id"].map(pools())
    shapes = inst[["region", "instance_type"]].drop_duplicates()
    rates = pd.concat(
        [
            shapes.assign(
                commitment_id=pid,
                product_description=cm.LINUX,
                usd_per_hour=(shapes["instance_type"].map(price) * rng.uniform(0.6, 0.75, len(shapes))).round(6),
            )
            for pid in plans["commitment_id"]
        ],
        ignore_index=True,
    )[cm.RATE_COLUMNS]
    return cm.Book(reserved[[*cm.RI_COLUMNS, "pool"]], plans[[*cm.SP_COLUMNS, "pool"]], rates)


def naive_bill_changes(fleet: pd.DataFrame, changes: pd.DataFrame, book: cm.Book, now) -> np.ndarray:
    """The per-instance loop: for each change, the pool's allocation re-run with the instance gone (or added),
    in every stretch of the month; the monthly change of the pool's on-demand bill."""
    window = evaluate_segments(book, now)
    out = np.zeros(len(changes))
    shape_keys = cm.SHAPE
    for i, change in enumerate(changes.to_dict("records")):
        pool = change["pool"]
        members = fleet[fleet["pool"] == pool]
        shapes = (
            pd.concat([members, pd.DataFrame([change])])
            .groupby(shape_keys, sort=True)
            .agg(od=("od", "max"))
            .reset_index()
        )
        counts = members.groupby(shape_keys).size()
        units = np.array([counts.get(tuple(k), 0) for k in shapes[shape_keys].itertuples(index=False)], float)
        col = shapes.index[(shapes[shape_keys] == pd.Series({k: change[k] for k in shape_keys})).all(axis=1)][0]
        after = units.copy()
        after[col] += change["delta"]
        shapes = shapes.assign(
            family=shapes["instance_type"].str.split(".").str[0], nf=cm.normalization_factor(shapes["instance_type"])
        )
        od = shapes["od"].to_numpy()
        for start, hours in window:
            active = book.active_at(start)
            mine = cm.Book(
                active.reserved[active.reserved["pool"] == pool],
                active.savings_plans[active.savings_plans["pool"] == pool],
                active.rates,
            )
            before_bill = cm.allocate_pool(shapes, units[None, :], mine).remaining[0] @ od
            after_bill = cm.allocate_pool(shapes, after[None, :], mine).remaining[0] @ od
            out[i] += (after_bill - before_bill) * hours
    return out


def evaluate_segments(book: cm.Book, now) -> list:
    """The stretches of the month with one set of commitments, as cm.evaluate cuts them."""
    empty = pd.DataFrame(columns=[*cm.SHAPE, "instance_id", "od", "delta"])
    return cm.evaluate(empty.assign(od=[]), empty, book, now).segments


def bench_net_savings(quick: bool, log=print) -> list[dict[str, Any]]:
    from spot_pipelines.core.optimization import RecommendConfig, recommend

    n, n_ris, n_sps = (2_000, 100, 8) if quick else (10_000, 500, 20)
    fleet = synthetic_fleet(n)
    book = synthetic_book(fleet, n_ris, n_sps)
    force = cm.InForce(book, pools(), utcnow())
    config = RecommendConfig()
    recommend(**fleet, config=config)  # warm-up
    list_runs, net_runs = [], []
    for _ in range(3):
        t0 = time.perf_counter()
        recommend(**fleet, config=config)
        list_runs.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        result = recommend(**fleet, config=config, commitments=force)
        net_runs.append(time.perf_counter() - t0)
    list_s, net_s = min(list_runs), min(net_runs)
    recs = result.recommendations
    kept = int(((recs["action"] == "stay_on_demand") & (recs["commitment_covered_fraction"] > 0)).sum())
    differ = int((recs["net_monthly_savings_usd"] - recs["list_monthly_savings_usd"]).abs().ge(1).sum())

    # The evaluation alone (what the loop does) on the same changes.
    inst = fleet["instances"]
    od = fleet["on_demand"].set_index("instance_type")["usd_per_hour"]
    od = od[~od.index.duplicated()]
    running = inst.assign(
        pool=inst["account_id"].map(pools()), od=inst["instance_type"].map(od), product_description=cm.LINUX
    )
    od_fleet = running[running["lifecycle"] == "on-demand"]
    changes = od_fleet.assign(delta=-1)
    t0 = time.perf_counter()
    ev = cm.evaluate(od_fleet, changes, book, force.now)
    ours_s = time.perf_counter() - t0
    sample = np.random.default_rng(3).choice(len(changes), size=min(len(changes), 2 if quick else 4), replace=False)
    t0 = time.perf_counter()
    naive = naive_bill_changes(od_fleet, changes.iloc[sample], book, force.now)
    loop_s = (time.perf_counter() - t0) * len(changes) / len(sample)
    same = np.allclose(naive, ev.changes["bill_change_monthly_usd"].to_numpy()[sample], atol=1e-6)
    segments = len(ev.segments)
    log(f"net savings: list {list_s:.2f} s, net {net_s:.2f} s; evaluate {ours_s:.2f} s vs loop ~{loop_s:.0f} s")
    return [
        result_row(
            f"net-savings recommendations, {n:,} instances, {n_ris} RIs, {n_sps} SPs vs list-price recommend",
            net_s,
            list_s,
            "s",
            f"best of {len(net_runs)}; ratio = list/net (≥ 0.33 means within 3×); {kept} kept on-demand by "
            f"commitments, {differ} rows where net differs from list by ≥ $1/month; {segments} stretches of the month",
            target=">= 0.33x (net within 3x of list)",
        ),
        result_row(
            f"fleet-bill change of {len(changes):,} on-demand moves vs per-instance re-allocation loop",
            ours_s,
            loop_s,
            "s",
            f"loop timed on {len(sample)} sampled moves and scaled linearly; results equal on the sample: {same}",
            target=">= 20x",
        ),
    ]


def run(quick: bool = False, log=print) -> list[dict[str, Any]]:
    return bench_net_savings(quick, log)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    print(json.dumps(run(parser.parse_args().quick), indent=2))


if __name__ == "__main__":
    main()
