"""Seeded synthetic spot price histories, per (AZ ID, instance type, product).

The AWS emulator answers DescribeSpotPriceHistory with one constant dummy price, so benchmarks,
tests and the demo get their histories here. The model follows AWS's smoothed spot pricing
(since Nov 2017): a base price of on-demand × (1 − advisor savings), a slow multi-week drift,
rare week-long step changes up or down, a handful of small changes per market and day.

Everything is a pure function of (seed, market, instant): no state and no call-order
dependence, so any subset of markets or days comes out the same however it is asked for.
Vectorized with numpy (a full all-region day, ~280,000 rows, in well under a second).
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from functools import cache

import numpy as np
import pandas as pd

from spot_pipelines.core.bundled_data import bundled_advisor, bundled_on_demand_rows

EPOCH = date(2017, 11, 1)  # day 0 of the model: AWS's smoothed spot pricing
SECONDS_PER_DAY = 86_400
DEFAULT_PRODUCTS = ("Linux/UNIX",)
# Regional on-demand premium over us-east-1 (the bundled on-demand snapshot is us-east-1 only).
REGION_PREMIUM = {
    "us-east-1": 1.0,
    "us-east-2": 1.0,
    "us-west-2": 1.0,
    "us-west-1": 1.17,
    "ca-central-1": 1.1,
    "sa-east-1": 1.55,
    "af-south-1": 1.3,
    "me-south-1": 1.25,
}
# Availability zones per region (most regions have 3; a few have more).
ZONE_COUNT = {"us-east-1": 6, "us-west-2": 4, "ap-northeast-1": 4, "ap-northeast-2": 4}
_DIRECTIONS = {
    "east": "e",
    "west": "w",
    "north": "n",
    "south": "s",
    "central": "c",
    "northeast": "ne",
    "southeast": "se",
    "northwest": "nw",
    "southwest": "sw",
}
# Price changes per market and day (≈ 280,000 rows for a full all-region Linux day).
MEAN_CHANGES = 4.6

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer over a uint64 array (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        x = x ^ (x >> np.uint64(30))
        x = x * _M1
        x = x ^ (x >> np.uint64(27))
        x = x * _M2
        return x ^ (x >> np.uint64(31))


def _uniform(key: np.ndarray, *salts) -> np.ndarray:
    """Deterministic uniforms in [0, 1) from a market key and integer salts (scalars or arrays)."""
    h = key
    with np.errstate(over="ignore"):
        for salt in salts:
            h = _mix(h ^ (np.asarray(salt).astype(np.uint64) * _GOLDEN + _GOLDEN))
    return (h >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def _stable_key(*parts: str) -> int:
    return int.from_bytes(hashlib.blake2b("|".join(parts).encode(), digest_size=8).digest(), "little")


def zone_id_prefix(region: str) -> str:
    """AWS's AZ ID prefix: us-east-1 → use1, ap-southeast-2 → apse2, eu-central-1 → euc1."""
    geo, *middle, number = region.split("-")
    return geo + "".join(_DIRECTIONS.get(m, m[:1]) for m in middle) + number


def synthetic_zones(region: str) -> list[tuple[str, str]]:
    """(zone name, zone ID) pairs; names map to IDs with a per-region rotation, as in real accounts."""
    count = ZONE_COUNT.get(region, 3)
    offset = zlib.crc32(region.encode()) % count
    prefix = zone_id_prefix(region)
    return [(f"{region}{chr(ord('a') + i)}", f"{prefix}-az{(i + offset) % count + 1}") for i in range(count)]


@cache
def bundled_on_demand() -> dict[str, float]:
    """us-east-1 Linux on-demand USD/hour by instance type, from the bundled Price List snapshot."""
    return {row["instance_type"]: float(row["usd_per_hour"]) for row in bundled_on_demand_rows()}


@dataclass(frozen=True)
class MarketSet:
    """Columnar markets: one entry per (region, AZ, type, product) with its base spot price."""

    region: pd.Categorical
    availability_zone: pd.Categorical
    availability_zone_id: pd.Categorical
    instance_type: pd.Categorical
    product_description: pd.Categorical
    base_price: np.ndarray
    key: np.ndarray  # uint64, stable per (seed, AZ ID, type, product)

    def __len__(self) -> int:
        return len(self.base_price)

    @classmethod
    def build(cls, markets: Iterable[tuple[str, str, str, str, str, float]], seed: int = 0) -> MarketSet:
        """From (region, az, az_id, instance_type, product_description, base_price) tuples."""
        rows = list(markets)
        cols = list(zip(*rows)) if rows else [()] * 6
        keys = np.array(
            [_stable_key(str(seed), az_id, itype, product) for _, _, az_id, itype, product, _ in rows], dtype=np.uint64
        )
        return cls(
            *(pd.Categorical(list(c)) for c in cols[:5]), base_price=np.asarray(cols[5], dtype=np.float64), key=keys
        )


def base_spot_price(region: str, instance_type: str) -> float | None:
    """on-demand × (1 − savings/100) from the bundled data; None when a type is not priced there."""
    on_demand = bundled_on_demand().get(instance_type)
    entry = bundled_advisor()["spot_advisor"].get(region, {}).get("Linux", {}).get(instance_type)
    if on_demand is None or entry is None:
        return None
    return on_demand * REGION_PREMIUM.get(region, 1.12) * (1 - entry["s"] / 100)


def default_markets(
    regions: Sequence[str] | None = None,
    instance_types: Sequence[str] | None = None,
    products: Sequence[str] = DEFAULT_PRODUCTS,
    seed: int = 0,
    zones: dict[str, list[tuple[str, str]]] | None = None,
) -> MarketSet:
    """Markets of the bundled data: every advisor region and priced type (or the given subsets).

    `zones` overrides the synthetic (name, ID) pairs per region, e.g. with what an emulator reports.
    """
    advisor = bundled_advisor()["spot_advisor"]
    chosen = sorted(advisor) if regions is None else list(regions)
    wanted = None if instance_types is None else set(instance_types)
    out = []
    for region in chosen:
        region_zones = (zones or {}).get(region) or synthetic_zones(region)
        types = sorted(advisor.get(region, {}).get("Linux", {}))
        for itype in types:
            if wanted is not None and itype not in wanted:
                continue
            base = base_spot_price(region, itype)
            if base is None:
                continue
            for az, az_id in region_zones:
                # Zones differ a little: ±8 % around the regional price.
                factor = 0.92 + 0.16 * (_stable_key("az", az_id, itype) % 10_000) / 10_000
                for product in products:
                    out.append((region, az, az_id, itype, product, base * factor))
    return MarketSet.build(out, seed=seed)


def _day_index(day: date) -> int:
    return (day - EPOCH).days


def _change_count(key: np.ndarray, d: int, mean_changes: float) -> np.ndarray:
    span = max(1, int(round(2 * mean_changes - 1)))  # uniform on 1..span, mean ≈ mean_changes
    return 1 + (_uniform(key, d, 1) * span).astype(np.int64)


def _change_seconds(key: np.ndarray, d: int, j: np.ndarray) -> np.ndarray:
    # Never at 00:00:00 exactly: the day's opening price is always the previous day's last change.
    return 1 + (_uniform(key, d, 100 + j) * (SECONDS_PER_DAY - 1)).astype(np.int64)


def _price_at(markets: MarketSet, idx: np.ndarray, d: int, seconds: np.ndarray) -> np.ndarray:
    """The price set at second `seconds` of day `d` for markets `idx` (pure function of its inputs)."""
    key = markets.key[idx]
    t = d + seconds / SECONDS_PER_DAY  # days since EPOCH
    two_pi = 2 * np.pi
    drift = (
        1
        + (0.03 + 0.05 * _uniform(key, 11))
        * np.sin(two_pi * t / (20 + 40 * _uniform(key, 12)) + two_pi * _uniform(key, 13))
        + (0.01 + 0.02 * _uniform(key, 14))
        * np.sin(two_pi * t / (3 + 5 * _uniform(key, 15)) + two_pi * _uniform(key, 16))
    )
    # Rare steps: a market-specific week is sometimes 10–30 % up, or 10–15 % down.
    week = np.floor((t + 7 * _uniform(key, 17)) / 7).astype(np.int64)
    roll = _uniform(key, week, 18)
    size = _uniform(key, week, 19)
    step = np.where(roll < 0.05, 1.10 + 0.20 * size, np.where(roll < 0.08, 0.90 - 0.05 * size, 1.0))
    noise = 1 + 0.01 * (_uniform(key, d, seconds, 20) - 0.5)
    price = markets.base_price[idx] * drift * step * noise
    return np.maximum(np.round(price, 6), 0.0001)


def _changes(markets: MarketSet, day: date, mean_changes: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(market index, second of day, price) of every change on `day`, sorted by market then time."""
    d = _day_index(day)
    n = _change_count(markets.key, d, mean_changes)
    idx = np.repeat(np.arange(len(markets)), n)
    starts = np.repeat(np.cumsum(n) - n, n)
    j = np.arange(len(idx)) - starts
    seconds = _change_seconds(markets.key[idx], d, j)
    order = np.lexsort((seconds, idx))
    idx, seconds = idx[order], seconds[order]
    unique = np.ones(len(idx), dtype=bool)
    unique[1:] = (idx[1:] != idx[:-1]) | (seconds[1:] != seconds[:-1])
    idx, seconds = idx[unique], seconds[unique]
    return idx, seconds, _price_at(markets, idx, d, seconds)


def _last_change(markets: MarketSet, day: date, mean_changes: float) -> tuple[np.ndarray, np.ndarray]:
    """(second of day, price) of each market's last change on `day`, without building the whole day."""
    d = _day_index(day)
    n = _change_count(markets.key, d, mean_changes)
    last = np.zeros(len(markets), dtype=np.int64)
    for j in range(int(n.max(initial=0))):
        s = _change_seconds(markets.key, d, np.full(len(markets), j))
        last = np.where(j < n, np.maximum(last, s), last)
    return last, _price_at(markets, np.arange(len(markets)), d, last)


def _frame(
    markets: MarketSet,
    idx: np.ndarray,
    ts: pd.DatetimeIndex,
    price: np.ndarray,
    day: date | None,
    is_day_open: np.ndarray | None,
) -> pd.DataFrame:
    frame = {}
    if day is not None:
        frame["day"] = np.full(len(idx), day, dtype=object)
    frame["ts"] = ts
    for col in ("region", "availability_zone", "availability_zone_id", "instance_type", "product_description"):
        cat: pd.Categorical = getattr(markets, col)
        frame[col] = pd.Categorical.from_codes(cat.codes[idx], categories=cat.categories)
    frame["price"] = price
    if is_day_open is not None:
        frame["is_day_open"] = is_day_open
    return pd.DataFrame(frame)


def _midnight(day: date) -> pd.Timestamp:
    return pd.Timestamp(datetime(day.year, day.month, day.day, tzinfo=timezone.utc))


def spot_history_day(markets: MarketSet, day: date, mean_changes: float = MEAN_CHANGES) -> pd.DataFrame:
    """One day as `spot_price_history` stores it: the day-open price at 00:00 UTC, then each change."""
    midnight = _midnight(day)
    _, open_price = _last_change(markets, day - timedelta(days=1), mean_changes)
    idx, seconds, price = _changes(markets, day, mean_changes)
    all_idx = np.concatenate([np.arange(len(markets)), idx])
    all_seconds = np.concatenate([np.zeros(len(markets), dtype=np.int64), seconds])
    ts = midnight + pd.to_timedelta(all_seconds, unit="s")
    is_open = np.concatenate([np.ones(len(markets), dtype=bool), np.zeros(len(idx), dtype=bool)])
    return _frame(markets, all_idx, pd.DatetimeIndex(ts), np.concatenate([open_price, price]), day, is_open)


def aws_records(markets: MarketSet, start: datetime, end: datetime, mean_changes: float = MEAN_CHANGES) -> pd.DataFrame:
    """What DescribeSpotPriceHistory returns for [start, end): every change in the window plus,
    per market, the last change before `start` (the price in force when the window opens).

    Columns: ts, region, availability_zone, availability_zone_id, instance_type, product_description, price;
    newest first, as AWS orders them.
    """
    start_ts, end_ts = pd.Timestamp(start).tz_convert("UTC"), pd.Timestamp(end).tz_convert("UTC")
    frames = []
    day = start_ts.date() - timedelta(days=1)
    while _midnight(day) < end_ts:
        idx, seconds, price = _changes(markets, day, mean_changes)
        ts = _midnight(day) + pd.to_timedelta(seconds, unit="s")
        frames.append(_frame(markets, idx, pd.DatetimeIndex(ts), price, None, None).assign(_m=idx))
        day += timedelta(days=1)
    allc = pd.concat(frames, ignore_index=True)
    before = allc[allc["ts"] < start_ts]
    opening = before.loc[before.groupby("_m", observed=True)["ts"].idxmax()] if len(before) else before
    window = allc[(allc["ts"] >= start_ts) & (allc["ts"] < end_ts)]
    out = pd.concat([opening, window], ignore_index=True).drop(columns="_m")
    return out.sort_values("ts", ascending=False, kind="stable").reset_index(drop=True)
