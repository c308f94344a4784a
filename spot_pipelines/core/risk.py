"""Interruption-risk features and scores per spot market, vectorized (numpy over a market × day panel).

A *market* is (region, availability_zone_id, instance_type, product_description). Price rows are
sorted by (market, ts) once; every per-day statistic is one `ufunc.reduceat` over contiguous runs,
and every trailing-window feature is a difference of cumulative sums along the day axis. No Python
loop runs per market or per row.

Inputs are plain DataFrames shaped like the app tables:

- prices: ts (UTC), region, availability_zone_id, instance_type, product_description, price
  [, availability_zone, is_day_open]
- on_demand: region, instance_type, operating_system, usd_per_hour
- advisor: region, operating_system, instance_type, interruption_band, savings_pct [, day]
- events: event_type, event_time, region, availability_zone_id, instance_type
- placement: spot_placement_scores rows: region, availability_zone_id, instance_types (comma-separated), score,
  fetched_at

Interruption warnings are the events that count as interruptions (`observed_interruptions`, and the model's
labels in core.ml). Rebalance recommendations are a separate, weaker signal (AWS sends them when a pool's risk
rises, often with no interruption after): they are counted apart as `observed_rebalances`, a feature only,
never a warning. `placement_score` is AWS's AZ-level spot placement score (1-10) of the market's pool stored
within the window, NaN where AWS gave none: never a made-up score.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd

from spot_pipelines.core.errors import ValidationError

MARKET_KEY = ["region", "availability_zone_id", "instance_type", "product_description"]
POOL_KEY = MARKET_KEY[:3]  # a capacity pool: what warnings, rebalances and placement scores are about
WINDOW_DAYS = 14  # default trailing window of the score
FEATURES = [
    "price_to_on_demand",
    "volatility",
    "changes_per_day",
    "mean_abs_change_pct",
    "spike_ratio_7d",
    "hours_since_change",
    "advisor_band",
    "advisor_savings_pct",
    "observed_interruptions",
    "observed_rebalances",
    "placement_score",
]
# Spot Advisor bands (<5%, 5-10%, 10-15%, 15-20%, >20% interruptions per month): a representative rate.
BAND_MONTHLY_RATE = np.array([0.025, 0.075, 0.125, 0.175, 0.30])
RISK_BANDS = np.array(["very_low", "low", "medium", "high", "very_high"])
INTERRUPTION_EVENT = "spot_interruption_warning"
REBALANCE_EVENT = "rebalance_recommendation"  # a weaker signal: a feature, never an interruption or a label
DAY = 86_400
SPIKE_DAYS = 7


def operating_system(product_description: pd.Series) -> pd.Series:
    """'Linux/UNIX', 'Linux/UNIX (Amazon VPC)' → Linux; 'Windows…' → Windows; others kept verbatim."""
    text = product_description.astype(str)
    return pd.Series(
        np.where(text.str.startswith("Linux/UNIX"), "Linux", np.where(text.str.startswith("Windows"), "Windows", text)),
        index=product_description.index,
    )


def epoch_seconds(values: pd.Series) -> np.ndarray:
    """UTC epoch seconds (int64) of a datetime column; naive values are taken as UTC.

    Reads the integer representation directly: converting datetime64 units in numpy costs
    far more than one integer division. A datetime column's integers are UTC already (aware or
    naive), so only other columns (strings, objects) are parsed: to_datetime would copy it."""
    arr = values.array
    if not isinstance(arr, pd.arrays.DatetimeArray):
        arr = pd.to_datetime(values, utc=True).array
    per_second = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}[arr.unit]
    ints = arr.asi8
    return ints // per_second if per_second != 1 else ints.copy()


def _day_start(moment: datetime) -> datetime:
    moment = moment.astimezone(timezone.utc)
    return datetime(moment.year, moment.month, moment.day, tzinfo=timezone.utc)


@dataclass
class MarketPanel:
    """Per-(market, day) statistics: arrays of shape (n_markets, n_days)."""

    markets: pd.DataFrame  # MARKET_KEY (+ availability_zone), row i = market i
    start: datetime  # midnight UTC of day 0
    n_days: int
    last_price: np.ndarray  # price in force at the end of the day (forward-filled; NaN before data)
    day_max: np.ndarray  # highest price in force during the day
    changes: np.ndarray  # number of price changes during the day
    abs_change: np.ndarray  # sum of |relative change| of those changes
    last_change_ts: np.ndarray  # epoch s of the latest change so far (forward-filled; NaN: none seen)
    first_ts: np.ndarray  # epoch s of each market's first observation (per market)
    events: np.ndarray  # observed interruption warnings per day
    rebalances: np.ndarray  # observed rebalance recommendations per day (a feature only, never a warning)
    placement: np.ndarray  # best placement score fetched during the day (NaN: none stored that day)


def _ffill(a: np.ndarray) -> np.ndarray:
    valid = ~np.isnan(a)
    idx = np.where(valid, np.arange(a.shape[1])[None, :], 0)
    np.maximum.accumulate(idx, axis=1, out=idx)
    out = a[np.arange(a.shape[0])[:, None], idx]
    out[~np.maximum.accumulate(valid, axis=1)] = np.nan
    return out


def _column_codes(col: pd.Series) -> tuple[np.ndarray, int]:
    """Integer codes (-1: missing) and their count: a categorical's own codes, else one hash pass."""
    if isinstance(col.dtype, pd.CategoricalDtype):
        return col.cat.codes.to_numpy(), len(col.cat.categories)
    codes, uniques = pd.factorize(col)
    return codes, len(uniques)


def _market_runs(prices: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """Runs of consecutive rows of one market: (first row of each run, its market code, the market table).

    Markets are numbered in order of first appearance (like groupby(sort=False)); -1: a key is missing.
    Rows come in runs of one market (an ORDER BY or a columnar read), so runs are found by comparing
    neighbours' small per-column codes and only a run's first row is combined and hashed."""
    missing = [c for c in MARKET_KEY + ["ts", "price"] if c not in prices.columns]
    if missing:
        raise ValidationError("prices", f"missing column(s) {', '.join(missing)}")
    n = len(prices)
    cols = [_column_codes(prices[c]) for c in MARKET_KEY]
    new_run = np.ones(n, dtype=bool)
    for codes, _ in cols:
        new_run[1:] &= codes[1:] == codes[:-1]
    np.logical_not(new_run[1:], out=new_run[1:])
    run = np.flatnonzero(new_run)
    # One int64 per run: the columns' codes in mixed radix, renumbered densely if it would overflow.
    key, span, absent = np.zeros(len(run), dtype=np.int64), 1, np.zeros(len(run), dtype=bool)
    for codes, size in cols:
        c = codes[run].astype(np.int64)
        absent |= c < 0
        if span * size >= 2**62:
            key = pd.factorize(key)[0].astype(np.int64)
            span = int(key.max()) + 1 if len(key) else 1
        key = key * size + c
        span *= max(size, 1)
    code_of_run = np.full(len(run), -1, dtype=np.int64)
    code_of_run[~absent] = pd.factorize(key[~absent])[0]
    # A market's first run is the one where its code first exceeds every earlier code.
    seen = np.maximum.accumulate(np.r_[-1, code_of_run])
    first_row = run[code_of_run > seen[:-1]]
    markets = prices[MARKET_KEY].iloc[first_row].reset_index(drop=True)
    if "availability_zone" in prices.columns:
        zone = prices["availability_zone"]
        if zone.notna().all():
            markets["availability_zone"] = zone.iloc[first_row].to_numpy()
        else:  # the first zone name each market has (same market order as ours)
            grouped = prices.groupby(MARKET_KEY, sort=False, observed=True, dropna=True)
            markets["availability_zone"] = grouped["availability_zone"].first().to_numpy()
    for col in markets.columns:
        markets[col] = markets[col].astype(str)
    return run, code_of_run, markets


def market_codes(prices: pd.DataFrame) -> tuple[np.ndarray, pd.DataFrame]:
    """An int code per row (markets in order of first appearance; -1: a key is missing) and the market table."""
    run, code_of_run, markets = _market_runs(prices)
    return np.repeat(code_of_run, np.diff(np.r_[run, len(prices)])), markets


def _same_market(codes: np.ndarray) -> np.ndarray:
    """Per row: is it in the same market as the row before?"""
    same = np.zeros(len(codes), dtype=bool)
    np.equal(codes[1:], codes[:-1], out=same[1:])
    return same


def build_panel(
    prices: pd.DataFrame,
    *,
    start: datetime,
    n_days: int,
    events: pd.DataFrame | None = None,
    placement: pd.DataFrame | None = None,
) -> MarketPanel:
    if n_days < 1:
        raise ValidationError("window_days", "must be at least 1")
    start = _day_start(start)
    run, code_of_run, markets = _market_runs(prices)
    codes = np.repeat(code_of_run, np.diff(np.r_[run, len(prices)]))
    ts = epoch_seconds(prices["ts"])
    price = prices["price"].to_numpy(np.float64)
    if (code_of_run < 0).any():  # a row missing a key column is in no market
        keyed = codes >= 0
        codes, ts, price = codes[keyed], ts[keyed], price[keyed]
    if len(price) and (not np.isfinite(price).all() or (price <= 0).any()):
        bad = int((~np.isfinite(price) | (price <= 0)).sum())
        raise ValidationError("spot_price_history.price", f"{bad} row(s) are not a positive number")
    m, n = len(markets), len(codes)
    same = _same_market(codes)
    # Sort by (market, ts) unless the reader already did: one run per market, ts rising within each.
    if n - int(same.sum()) != m or (same[1:] & (ts[1:] < ts[:-1])).any():
        order = np.lexsort((ts, codes))
        codes, ts, price = codes[order], ts[order], price[order]
        same = _same_market(codes)
    start_s = int(start.timestamp())
    # A change: a row whose price differs from the previous row of its market; rel: |step| / previous price.
    step = np.diff(price)
    change = np.zeros(n, dtype=bool)
    np.logical_and(same[1:], step != 0, out=change[1:])
    rel = np.zeros(n)
    np.divide(np.abs(step, out=step), price[:-1], out=rel[1:], where=change[1:])
    del step
    if n and (ts.min() < start_s or ts.max() >= start_s + n_days * DAY):
        keep = (ts >= start_s) & (ts < start_s + n_days * DAY)
        codes, ts, price, change, rel = (a[keep] for a in (codes, ts, price, change, rel))
        same, n = _same_market(codes), len(codes)
    day = ts - start_s
    day //= DAY
    first_ts = np.full(m, np.nan)
    starts = np.flatnonzero(~same)
    first_ts[codes[starts]] = ts[starts]
    shape = (m, n_days)
    last_price = np.full(m * n_days, np.nan)
    day_max = np.full(m * n_days, np.nan)
    changes = np.zeros(m * n_days)
    abs_change = np.zeros(m * n_days)
    last_change = np.full(m * n_days, np.nan)
    if len(codes):
        # A (market, day) cell starts where the market or the day changes (rows are in (market, ts) order).
        new_cell = ~same
        new_cell[1:] |= day[1:] != day[:-1]
        b = np.flatnonzero(new_cell)
        ends = np.r_[b[1:] - 1, n - 1]
        ucell = codes[b] * n_days + day[b]
        del codes, new_cell  # per-row arrays are freed as soon as they are used: they set the peak memory
        last_price[ucell] = price[ends]
        day_max[ucell] = np.maximum.reduceat(price, b)
        changes[ucell] = np.add.reduceat(change.view(np.uint8), b, dtype=np.int64)
        abs_change[ucell] = np.add.reduceat(rel, b)
        del rel
        # The latest change per cell: ts where the row is a change, in day's buffer (no longer needed).
        none = np.iinfo(np.int64).min
        changed_at = day
        np.copyto(changed_at, none)
        np.copyto(changed_at, ts, where=change)
        lc = np.maximum.reduceat(changed_at, b)
        last_change[ucell] = np.where(lc != none, lc, np.nan)
    last_price = _ffill(last_price.reshape(shape))
    # A day's high is its own highest observation or the price carried into it, whichever is higher.
    carried = np.empty(shape)
    carried[:, 0] = np.nan
    carried[:, 1:] = last_price[:, :-1]
    day_max = np.fmax(day_max.reshape(shape), carried)
    ev, rebalances = np.zeros(shape), np.zeros(shape)
    if events is not None and len(events):
        ev = _event_counts(events, markets, start_s, n_days, INTERRUPTION_EVENT)
        rebalances = _event_counts(events, markets, start_s, n_days, REBALANCE_EVENT)
    return MarketPanel(
        markets=markets,
        start=start,
        n_days=n_days,
        last_price=last_price,
        day_max=day_max,
        changes=changes.reshape(shape),
        abs_change=abs_change.reshape(shape),
        last_change_ts=_ffill(last_change.reshape(shape)),
        first_ts=first_ts,
        events=ev,
        rebalances=rebalances,
        placement=_placement_days(placement, markets, start_s, n_days),
    )


def _event_counts(
    events: pd.DataFrame, markets: pd.DataFrame, start_s: int, n_days: int, event_type: str
) -> np.ndarray:
    """(markets, days): the events of `event_type` in each market's pool (region, AZ ID, type) per day."""
    ev = events[events["event_type"] == event_type]
    ev = ev.dropna(subset=["availability_zone_id", "instance_type"])
    out = np.zeros((len(markets), n_days))
    if ev.empty:
        return out
    ev = ev.assign(_day=(epoch_seconds(ev["event_time"]) - start_s) // DAY)
    ev = ev[(ev["_day"] >= 0) & (ev["_day"] < n_days)]
    idx = markets[MARKET_KEY[:3]].reset_index(names="_market")
    hit = ev[MARKET_KEY[:3] + ["_day"]].astype({"_day": np.int64}).merge(idx, on=MARKET_KEY[:3])
    np.add.at(out, (hit["_market"].to_numpy(), hit["_day"].to_numpy()), 1.0)
    return out


def _placement_days(placement: pd.DataFrame | None, markets: pd.DataFrame, start_s: int, n_days: int) -> np.ndarray:
    """(markets, days): the best AZ-level placement score of the market's pool fetched during each day (the best
    of the configurations holding its type: core.placement.market_scores, the gate's rule), NaN where none was stored.
    A score fetched during a day is stored before that day's end, so that day's features may use it."""
    out = np.full((len(markets), n_days), np.nan)
    if placement is None or placement.empty:
        return out
    missing = [
        c for c in ("region", "availability_zone_id", "instance_types", "score", "fetched_at") if c not in placement
    ]
    if missing:
        raise ValidationError("placement scores", f"missing column(s) {', '.join(missing)}")
    rows = placement.dropna(subset=["availability_zone_id", "instance_types", "score"])
    rows = rows.assign(_day=(epoch_seconds(rows["fetched_at"]) - start_s) // DAY)
    rows = rows[(rows["_day"] >= 0) & (rows["_day"] < n_days)]
    if rows.empty:
        return out
    from spot_pipelines.core.placement import market_scores  # the gate's rule; imported here, it loads botocore

    best = market_scores(rows.assign(instance_types=rows["instance_types"].astype(str)), by=["_day"])
    hit = best.merge(markets[POOL_KEY].reset_index(names="_market"), on=POOL_KEY)
    out[hit["_market"].to_numpy(), hit["_day"].to_numpy(np.int64)] = hit["placement_score"].to_numpy(np.float64)
    return out


def _latest_within(a: np.ndarray, days: np.ndarray, w: int) -> np.ndarray:
    """(markets, len(days)): the latest non-NaN value of `a` on days (d - w, d] for each d in `days`, else NaN."""
    valid = ~np.isnan(a)
    idx = np.where(valid, np.arange(a.shape[1])[None, :], -1)
    np.maximum.accumulate(idx, axis=1, out=idx)
    last = idx[:, days]
    ok = (last >= 0) & (days[None, :] - last < w)
    return np.where(ok, a[np.arange(a.shape[0])[:, None], np.maximum(last, 0)], np.nan)


def _window_sum(a: np.ndarray, days: np.ndarray, w: int) -> np.ndarray:
    c = np.zeros((a.shape[0], a.shape[1] + 1))
    np.cumsum(a, axis=1, out=c[:, 1:])
    return c[:, days + 1] - c[:, np.maximum(days + 1 - w, 0)]


def window_features(panel: MarketPanel, days: np.ndarray, window_days: int) -> pd.DataFrame:
    """Trailing-window features at the end of each day in `days`, long format (market, day).

    `observed_interruptions` and `observed_rebalances` count the pool's interruption warnings and rebalance
    recommendations over the `window_days` days ending with the day, apart (a rebalance is never counted as a
    warning). `placement_score` is the pool's placement score of the newest day within that window that has one
    (fetched before the day's end: no peeking ahead), NaN where AWS scored none."""
    days = np.asarray(days, dtype=np.int64)
    w = window_days
    lp = panel.last_price
    valid = ~np.isnan(lp)
    lp0 = np.where(valid, lp, 0.0)
    n_valid = _window_sum(valid.astype(np.float64), days, w)
    price_mean = _window_sum(lp0, days, w) / np.maximum(n_valid, 1)
    ret = np.zeros_like(lp)
    ok = valid[:, 1:] & valid[:, :-1]
    ret[:, 1:] = np.where(ok, np.log(np.where(ok, lp[:, 1:], 1.0) / np.where(ok, lp[:, :-1], 1.0)), 0.0)
    okf = np.zeros_like(lp)
    okf[:, 1:] = ok
    n_ret = _window_sum(okf, days, w)
    s1 = _window_sum(ret, days, w)
    s2 = _window_sum(ret * ret, days, w)
    mean_r = s1 / np.maximum(n_ret, 1)
    volatility = np.sqrt(np.maximum(s2 / np.maximum(n_ret, 1) - mean_r**2, 0.0))
    n_chg = _window_sum(panel.changes, days, w)
    abs_chg = _window_sum(panel.abs_change, days, w)
    dmax = np.where(np.isnan(panel.day_max), -np.inf, panel.day_max)
    k = min(SPIKE_DAYS, w)
    pad = np.concatenate([np.full((dmax.shape[0], k - 1), -np.inf), dmax], axis=1)
    spike_max = np.lib.stride_tricks.sliding_window_view(pad, k, axis=1)[:, days].max(axis=2)
    spot = lp[:, days]
    end_s = panel.start.timestamp() + (days + 1) * DAY
    last_chg = panel.last_change_ts[:, days]
    since = np.where(np.isnan(last_chg), end_s[None, :] - panel.first_ts[:, None], end_s[None, :] - last_chg) / 3600
    events = _window_sum(panel.events, days, w)
    rebalances = _window_sum(panel.rebalances, days, w)
    placement = _latest_within(panel.placement, days, w)
    m, d = spot.shape
    with np.errstate(invalid="ignore", divide="ignore"):
        spike = np.where(price_mean > 0, np.maximum(spike_max / price_mean - 1.0, 0.0), 0.0)
    out = pd.DataFrame(
        {
            "_market": np.repeat(np.arange(m), d),
            "_day": np.tile(days, m),
            "spot_price": spot.ravel(),
            "price_mean": price_mean.ravel(),
            "volatility": volatility.ravel(),
            "changes_per_day": (n_chg / w).ravel(),
            "mean_abs_change_pct": (100 * abs_chg / np.maximum(n_chg, 1)).ravel(),
            "spike_ratio_7d": spike.ravel(),
            "hours_since_change": np.minimum(since, w * 24.0).ravel(),
            "observed_interruptions": events.ravel(),
            "observed_rebalances": rebalances.ravel(),
            "placement_score": placement.ravel(),
        }
    )
    return out


def attach_reference(
    features: pd.DataFrame, markets: pd.DataFrame, on_demand: pd.DataFrame, advisor: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Join market keys, on-demand prices and the advisor; split off rows that cannot be scored."""
    frame = features.join(markets, on="_market")
    frame["operating_system"] = operating_system(frame["product_description"])
    od = (
        on_demand[["region", "instance_type", "operating_system", "usd_per_hour"]]
        .rename(columns={"usd_per_hour": "on_demand_price"})
        .drop_duplicates(["region", "instance_type", "operating_system"], keep="last")
    )
    frame = frame.merge(od, on=["region", "instance_type", "operating_system"], how="left")
    adv = advisor
    if "day" in adv.columns and len(adv):
        adv = adv.sort_values("day").drop_duplicates(["region", "operating_system", "instance_type"], keep="last")
    adv = adv[["region", "operating_system", "instance_type", "interruption_band", "savings_pct"]].rename(
        columns={"interruption_band": "advisor_band", "savings_pct": "advisor_savings_pct"}
    )
    frame = frame.merge(adv, on=["region", "operating_system", "instance_type"], how="left")
    frame["advisor_band"] = frame["advisor_band"].astype(np.float64)
    frame["advisor_savings_pct"] = frame["advisor_savings_pct"].astype(np.float64)
    no_price = frame["spot_price"].isna()
    no_od = ~no_price & ~(frame["on_demand_price"] > 0)
    skipped = pd.concat(
        [
            frame.loc[no_price, MARKET_KEY + ["_day"]].assign(reason="no spot price history in or before the window"),
            frame.loc[no_od, MARKET_KEY + ["_day"]].assign(
                reason=lambda f: "no on-demand price for " + f["instance_type"] + " in " + f["region"]
            ),
        ],
        ignore_index=True,
    )
    frame = frame[~no_price & ~no_od].copy()
    frame["price_to_on_demand"] = frame["spot_price"] / frame["on_demand_price"]
    return frame, skipped


def heuristic_score(frame: pd.DataFrame) -> np.ndarray:
    """A transparent score in [0, 1]: advisor prior, price pressure, churn, spikes, observed events."""
    band = frame["advisor_band"].to_numpy(np.float64)
    band_rate = np.where(np.isnan(band), 0.10, BAND_MONTHLY_RATE[np.clip(np.nan_to_num(band), 0, 4).astype(int)])
    prior = np.clip(band_rate / 0.30, 0, 1)
    pressure = np.clip((frame["price_to_on_demand"].to_numpy() - 0.3) / 0.7, 0, 1)
    vol = np.clip(frame["volatility"].to_numpy() / 0.05, 0, 1)
    churn = np.clip(frame["changes_per_day"].to_numpy() / 4.0, 0, 1)
    spike = np.clip(frame["spike_ratio_7d"].to_numpy() / 0.5, 0, 1)
    recency = np.exp(-frame["hours_since_change"].to_numpy() / 24.0)
    base = 0.45 * prior + 0.2 * pressure + 0.1 * vol + 0.1 * churn + 0.1 * spike + 0.05 * recency
    observed = 1 - np.exp(-frame["observed_interruptions"].to_numpy() / 3.0)
    return np.clip(1 - (1 - base) * (1 - observed), 0.0, 1.0)


def risk_band(score: np.ndarray) -> np.ndarray:
    return RISK_BANDS[np.clip((np.asarray(score) * 5).astype(int), 0, 4)]


def window_end(as_of: datetime) -> datetime:
    """The exclusive end of the days covered as of `as_of`: midnight stays, any later moment counts its day."""
    start = _day_start(as_of)
    return start if as_of == start else start + timedelta(days=1)


@dataclass
class ScoreResult:
    scores: pd.DataFrame  # one row per scored market: keys, features, score, risk_band
    skipped: pd.DataFrame  # market keys + reason
    window_start: datetime
    window_end: datetime


def score_markets(
    prices: pd.DataFrame,
    on_demand: pd.DataFrame,
    advisor: pd.DataFrame,
    events: pd.DataFrame | None,
    *,
    as_of: datetime,
    window_days: int = WINDOW_DAYS,
    placement: pd.DataFrame | None = None,
) -> ScoreResult:
    """Risk features and score of every market with history, as of the end of the day before `as_of`'s day
    when `as_of` is midnight, else of `as_of`'s day (the window is the `window_days` days ending there).
    `placement`: stored spot placement scores (only those fetched inside the window are used)."""
    if window_days < 2:
        raise ValidationError("window_days", f"must be at least 2, got {window_days}")
    end = window_end(as_of)
    start = end - timedelta(days=window_days)
    panel = build_panel(prices, start=start, n_days=window_days, events=events, placement=placement)
    feats = window_features(panel, np.array([window_days - 1]), window_days)
    frame, skipped = attach_reference(feats, panel.markets, on_demand, advisor)
    frame["score"] = heuristic_score(frame)
    frame["risk_band"] = risk_band(frame["score"].to_numpy())
    frame["window_start"], frame["window_end"] = start, end
    frame["observed_interruptions"] = frame["observed_interruptions"].astype(np.int64)
    frame["observed_rebalances"] = frame["observed_rebalances"].astype(np.int64)
    cols = (
        MARKET_KEY
        + (["availability_zone"] if "availability_zone" in frame.columns else [])
        + ["window_start", "window_end", "spot_price", "on_demand_price", "price_mean"]
        + [f for f in FEATURES if f not in ("price_mean",)]
        + ["score", "risk_band"]
    )
    scores = frame[list(dict.fromkeys(cols))].reset_index(drop=True)
    return ScoreResult(
        scores=scores, skipped=skipped.drop(columns="_day").reset_index(drop=True), window_start=start, window_end=end
    )


# --------------------------------------------------------------------------- interruption bursts (hysteresis)

HOT_COLUMNS = POOL_KEY + ["warnings", "burst_at", "last_warning", "hot_until", "hot_note"]


@dataclass(frozen=True)
class BurstConfig:
    """`burst_warnings` interruption warnings in a pool within `burst_window_hours` make it hot; it stays hot until
    `burst_quiet_hours` pass without a warning (the minimum dwell on demand), so a pool that keeps being
    interrupted now and then never flips back to a target between two warnings."""

    burst_warnings: int = 3
    burst_window_hours: float = 6.0
    burst_quiet_hours: float = 24.0

    def __post_init__(self):
        if self.burst_warnings < 1:
            raise ValidationError("burst_warnings", f"must be at least 1, got {self.burst_warnings}")
        if not 0 < self.burst_window_hours <= self.burst_quiet_hours:
            raise ValidationError(
                "burst_window_hours",
                f"must be in (0, burst_quiet_hours={self.burst_quiet_hours}], got {self.burst_window_hours}",
            )


def hot_pools(events: pd.DataFrame | None, as_of: datetime, config: BurstConfig = BurstConfig()) -> pd.DataFrame:
    """The pools hot at `as_of`, from the warnings stored before it: their latest run of warnings less than
    `burst_quiet_hours` apart holds a burst (`burst_warnings` within `burst_window_hours`) and the last one is
    under `burst_quiet_hours` old. State is derived from the stored events alone: the same answer on every run."""
    if events is None or events.empty:
        return pd.DataFrame(columns=HOT_COLUMNS)
    ev = events[events["event_type"] == INTERRUPTION_EVENT].dropna(subset=["availability_zone_id", "instance_type"])
    t = epoch_seconds(ev["event_time"]) if len(ev) else np.zeros(0, dtype=np.int64)
    now = int(as_of.timestamp())
    ev = ev[POOL_KEY].assign(_t=t)[t < now].sort_values(POOL_KEY + ["_t"]).reset_index(drop=True)
    if ev.empty:
        return pd.DataFrame(columns=HOT_COLUMNS)
    quiet, window = config.burst_quiet_hours * 3600, config.burst_window_hours * 3600
    pool = ev.groupby(POOL_KEY, sort=False).ngroup().to_numpy()
    t = ev["_t"].to_numpy()
    first = np.r_[True, pool[1:] != pool[:-1]]
    run = np.cumsum(first | np.r_[True, np.diff(t) >= quiet])  # a run: warnings less than the quiet period apart
    k = config.burst_warnings - 1
    back = np.r_[np.full(k, -1), pool][: len(pool)]  # the pool and time of the warning k before
    t_back = np.r_[np.full(k, np.iinfo(np.int64).min), t][: len(t)]
    # The window is at most the quiet period, so k warnings back within the window lie in the same run.
    burst = (back == pool) & (t - t_back <= window)
    ev = ev.assign(_run=run, _burst=np.where(burst, t, np.iinfo(np.int64).max))
    runs = ev.groupby(POOL_KEY + ["_run"], sort=False).agg(
        warnings=("_t", "size"), burst_at=("_burst", "min"), last_warning=("_t", "max")
    )
    latest = runs.reset_index().sort_values("_run").drop_duplicates(POOL_KEY, keep="last")
    hot = latest[(latest["burst_at"] != np.iinfo(np.int64).max) & (now - latest["last_warning"] < quiet)].copy()
    for col in ("burst_at", "last_warning"):
        hot[col] = pd.to_datetime(hot[col], unit="s", utc=True)
    hot["hot_until"] = hot["last_warning"] + pd.Timedelta(seconds=quiet)
    hot["hot_note"] = [
        f"its pool is hot: a burst of {config.burst_warnings} interruption warnings within {config.burst_window_hours:g} h "
        f"at "
        f"{b:%Y-%m-%d %H:%M} UTC, {n} in all; no target until {u:%Y-%m-%d %H:%M} UTC "
        f"({config.burst_quiet_hours:g} h without a warning)"
        for n, b, u in zip(hot["warnings"], hot["burst_at"], hot["hot_until"])
    ]
    return hot[HOT_COLUMNS].reset_index(drop=True)


def with_hot_pools(markets: pd.DataFrame, hot: pd.DataFrame) -> pd.DataFrame:
    """`markets` with `hot_note` (None unless its pool is hot): recommend() targets no hot pool."""
    notes = hot[POOL_KEY + ["hot_note"]]
    out = markets.drop(columns="hot_note", errors="ignore").merge(notes, on=POOL_KEY, how="left")
    out["hot_note"] = out["hot_note"].astype(object).where(out["hot_note"].notna(), None)
    return out
