"""Small, seeded, realistic-looking market data for the optimization tests.

Prices drift slowly with a few changes a day and rare spikes; interruption events are drawn from a
hidden hazard that rises with the price/on-demand ratio and with spikes, so a model can learn them
and the advisor band (a per-type regional aggregate) is only a partial signal.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from spot_pipelines.core.clock import utcnow

END = utcnow().replace(hour=0, minute=0, second=0, microsecond=0)  # the data ends at today's UTC midnight
REGION = "us-east-1"
AZS = {"use1-az1": "us-east-1a", "use1-az2": "us-east-1b", "use1-az4": "us-east-1c"}
CATALOG = pd.DataFrame(
    [
        # instance_type, family, vcpu, memory_gib, architecture, on-demand usd/h
        ("m5.large", "m5", 2, 8.0, "x86_64", 0.096),
        ("m5.xlarge", "m5", 4, 16.0, "x86_64", 0.192),
        ("m5.2xlarge", "m5", 8, 32.0, "x86_64", 0.384),
        ("m6i.large", "m6i", 2, 8.0, "x86_64", 0.096),
        ("m6i.xlarge", "m6i", 4, 16.0, "x86_64", 0.192),
        ("m6a.large", "m6a", 2, 8.0, "x86_64", 0.0864),
        ("m6a.xlarge", "m6a", 4, 16.0, "x86_64", 0.1728),
        ("c5.large", "c5", 2, 4.0, "x86_64", 0.085),
        ("c5.xlarge", "c5", 4, 8.0, "x86_64", 0.17),
        ("r5.large", "r5", 2, 16.0, "x86_64", 0.126),
        ("m6g.large", "m6g", 2, 8.0, "arm64", 0.077),
        ("m6g.xlarge", "m6g", 4, 16.0, "arm64", 0.154),
        ("t3.large", "t3", 2, 8.0, "x86_64", 0.0832),
    ],
    columns=["instance_type", "family", "vcpu", "memory_gib", "architecture", "usd_per_hour"],
)


def catalog() -> pd.DataFrame:
    return CATALOG.drop(columns="usd_per_hour").assign(source="test")


def on_demand() -> pd.DataFrame:
    return CATALOG[["instance_type", "usd_per_hour"]].assign(region=REGION, operating_system="Linux")


def market_data(
    days: int = 30, seed: int = 0, end: datetime = END, types: list[str] | None = None, event_scale: float = 1.0
) -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    types = types or list(CATALOG["instance_type"])
    od = dict(zip(CATALOG["instance_type"], CATALOG["usd_per_hour"]))
    start = end - timedelta(days=days)
    rows, events, base_ratio = [], [], {}
    for itype in types:
        type_ratio = rng.uniform(0.25, 0.75)
        for az_id, az in AZS.items():
            ratio = float(np.clip(type_ratio + rng.normal(0, 0.08), 0.15, 0.95))
            base_ratio[(itype, az_id)] = ratio
            price = od[itype] * ratio
            for d in range(days):
                day0 = start + timedelta(days=d)
                rows.append((day0, az_id, az, itype, round(price, 6), True))
                spike = rng.random() < 0.04
                n_changes = rng.poisson(1.5 + 4 * (ratio > 0.6))
                times = np.sort(rng.uniform(60, 86_000, n_changes))
                for k, t in enumerate(times):
                    if spike and k == 0:
                        price = price * rng.uniform(1.3, 1.8)
                    else:
                        price = float(np.clip(price * np.exp(rng.normal(0, 0.03)), od[itype] * 0.1, od[itype]))
                        price = 0.7 * price + 0.3 * od[itype] * ratio
                    rows.append((day0 + timedelta(seconds=float(t)), az_id, az, itype, round(price, 6), False))
                # Hidden hazard for the next day: high ratio and spikes raise it.
                end_ratio = price / od[itype]
                hazard = 1 / (1 + np.exp(-(-5.0 + 6.0 * (end_ratio - 0.4) + 2.5 * spike)))
                if d + 1 < days and rng.random() < min(1.0, hazard * event_scale):
                    t = start + timedelta(days=d + 1, seconds=float(rng.uniform(0, 86_000)))
                    events.append((f"ev-{itype}-{az_id}-{d}", "spot_interruption_warning", t, REGION, az_id, itype))
    prices = pd.DataFrame(
        rows, columns=["ts", "availability_zone_id", "availability_zone", "instance_type", "price", "is_day_open"]
    )
    prices["region"] = REGION
    prices["product_description"] = "Linux/UNIX"
    prices["day"] = prices["ts"].dt.floor("D").dt.date
    type_mean = pd.Series(base_ratio).groupby(level=0).mean()
    advisor = pd.DataFrame(
        {
            "day": (end - timedelta(days=1)).date(),
            "region": REGION,
            "operating_system": "Linux",
            "instance_type": type_mean.index,
            "interruption_band": np.clip(((type_mean.to_numpy() - 0.25) / 0.1).astype(int), 0, 4),
            "savings_pct": np.round(100 * (1 - type_mean.to_numpy())).astype(int),
        }
    )
    ev = pd.DataFrame(
        events, columns=["event_id", "event_type", "event_time", "region", "availability_zone_id", "instance_type"]
    )
    return {"prices": prices, "on_demand": on_demand(), "advisor": advisor, "events": ev, "catalog": catalog()}
