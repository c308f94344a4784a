"""Price analytics per spot market over trailing windows: p50/p95, volatility, share of cheap hours.

Every statistic is over the hours of the window, each hour priced at the price in force at its start (the last
recorded change at or before it; hours before a market's first record are left out). Volatility is the standard
deviation of the hourly log price changes. `share_below` is the share of those hours whose price was below
`below_pct` % of the type's list on-demand price; a market without an on-demand price has none (NaN), never 0.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from spot_pipelines.core.errors import ValidationError
from spot_pipelines.core.risk import MARKET_KEY, _day_start, epoch_seconds, market_codes, operating_system

HOUR = 3600
WINDOWS = (7, 30, 90)
COLUMNS = [
    *MARKET_KEY,
    "window_days",
    "hours",
    "p50",
    "p95",
    "volatility",
    "on_demand",
    "share_below",
]
CHUNK = 2_000  # markets per hourly grid: 2,000 × 2,160 h of float64 is ~35 MB


@dataclass(frozen=True)
class AnalyticsConfig:
    below_pct: float = 40.0  # share of hours below this % of on-demand
    windows: tuple[int, ...] = WINDOWS

    def __post_init__(self):
        if not 0 < self.below_pct <= 100:
            raise ValidationError("below_pct", f"must be in (0, 100], got {self.below_pct}")
        if not self.windows or min(self.windows) < 1:
            raise ValidationError("windows", f"must be positive day counts, got {list(self.windows)}")


def price_analytics(
    prices: pd.DataFrame, on_demand: pd.DataFrame, *, as_of: datetime, config: AnalyticsConfig = AnalyticsConfig()
) -> pd.DataFrame:
    """One row per market and window ending at `as_of`'s day start (whole days). `prices`: spot_price_history
    rows from the longest window's start on (earlier rows carry a price into it)."""
    end = int(_day_start(as_of).timestamp())
    longest = max(config.windows)
    n_hours = 24 * longest
    if prices.empty:
        return pd.DataFrame(columns=COLUMNS)
    codes, markets = market_codes(prices)
    ts = epoch_seconds(prices["ts"])
    order = np.lexsort((ts, codes))
    codes, ts, price = codes[order], ts[order], prices["price"].to_numpy(np.float64)[order]
    markets = markets[MARKET_KEY].assign(on_demand=_on_demand(markets, on_demand))
    hour_s = end - n_hours * HOUR + np.arange(n_hours, dtype=np.int64) * HOUR
    parts = []
    for lo in range(0, len(markets), CHUNK):
        ids = np.arange(lo, min(lo + CHUNK, len(markets)))
        grid = _grid(codes, ts, price, ids, hour_s)
        parts.append(_stats(grid, markets.iloc[ids].reset_index(drop=True), config))
    return pd.concat(parts, ignore_index=True)[COLUMNS]


def _on_demand(markets: pd.DataFrame, on_demand: pd.DataFrame) -> np.ndarray:
    od = on_demand[["region", "instance_type", "operating_system", "usd_per_hour"]].drop_duplicates(
        ["region", "instance_type", "operating_system"], keep="last"
    )
    keyed = markets.assign(operating_system=operating_system(markets["product_description"]))
    merged = keyed.merge(od, on=["region", "instance_type", "operating_system"], how="left")
    return merged["usd_per_hour"].where(merged["usd_per_hour"] > 0).to_numpy(np.float64)


def _grid(codes, ts, price, ids: np.ndarray, hour_s: np.ndarray) -> np.ndarray:
    """(markets, hours): the price in force at each hour's start (NaN before the market's first record)."""
    span = np.int64(2**40)
    base = int(min(ts.min(), hour_s[0]))
    key = codes * span + (ts - base)
    query = (ids[:, None] * span + (hour_s - base)[None, :]).ravel()
    idx = np.searchsorted(key, query, side="right") - 1
    ok = (idx >= 0) & (codes[np.maximum(idx, 0)] == np.repeat(ids, len(hour_s)))
    return np.where(ok, price[np.maximum(idx, 0)], np.nan).reshape(len(ids), len(hour_s))


def _stats(grid: np.ndarray, markets: pd.DataFrame, config: AnalyticsConfig) -> pd.DataFrame:
    od = markets["on_demand"].to_numpy(np.float64)
    out = []
    for days in config.windows:
        g = grid[:, -24 * days :]
        hours = (~np.isnan(g)).sum(axis=1)
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows: a market with no hour here
            p50, p95 = np.nanpercentile(g, [50, 95], axis=1)
            volatility = np.nanstd(np.diff(np.log(g), axis=1), axis=1)
            below = np.where(np.isnan(g), 0, g < od[:, None] * config.below_pct / 100).sum(axis=1)
            share = np.where(np.isnan(od) | (hours == 0), np.nan, below / np.maximum(hours, 1))
        out.append(
            markets.assign(
                window_days=days,
                hours=hours,
                p50=p50,
                p95=p95,
                volatility=np.where(hours > 1, volatility, np.nan),
                share_below=share,
            )[hours > 0]
        )
    return pd.concat(out, ignore_index=True)


def window_start(as_of: datetime, config: AnalyticsConfig = AnalyticsConfig()) -> datetime:
    """Where the longest window starts, plus a day of history to carry a price into it."""
    return _day_start(as_of) - timedelta(days=max(config.windows) + 1)
