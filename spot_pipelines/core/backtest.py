"""Walk-forward replay of the recommendation policy over stored history, against baselines.

For each day d of the window the policy sees only what was known before d: spot prices recorded before d,
advisor rows of earlier days and the interruption warnings observed before d. It runs the product's own
`recommend()` on the fleet as the replay left it, and the fleet is then simulated hour by hour through d:

- an hour on spot costs the price in force at the hour's start in that market (the stored history);
- an instance is interrupted in an hour when a warning was observed in its market (region, AZ ID, type) in
  that hour, and relaunched in the same market;
- every relaunch, an interruption or a move the policy makes, costs the restart cost recommend() prices:
  restart_cost_usd + restart_cost_on_demand_hours × the instance's on-demand price;
- an hour on demand costs the list on-demand price of the type it runs.

Risk before each day, for `recommend`: the advisor-band prior (what interruption_predictions serves without a
ready model) combined with the market's observed hourly warning rate over the lookback. All figures are list
prices: commitments are ignored.

`recommend_model` is the same policy on the interruption model's P(interruption), fit walk-forward: every
`model_retrain_days` days the product's own training (core.ml.training_frame and train, interruption_model's
defaults) runs on the `model_training_days` stored before that day only, and the product's quality rule
(core.ml.QualityGate, interruption_model_quality's) judges it on its time-based holdout. A model that passes
prices each day until the next retrain from that day's risk features (core.risk.score_markets on what was stored
before the day, as interruption_risk_scores computes them) through core.ml.predict; a market it cannot score keeps
the prior. Its features include the rebalance recommendations and the spot placement scores (`placement`, the
spot_placement_scores history) stored before each fit's and each day's start, so no fit sees what came after. A model that would be blocked (a tie included) or cannot be trained leaves its days on the prior, the
same risk `recommend` uses, so on those days both policies decide alike. The result counts the days on each and
keeps every fit's verdict; the model's worth is `recommend`'s cost minus `recommend_model`'s.

`recommend` prices and targets as spot_recommendations does, a pool in an interruption burst included (not a
target until a quiet period has passed, core.risk.hot_pools); `recommend_stateless` is the same policy without
that hysteresis, so the flips between spot and on-demand per instance-month show what it is worth.

Every policy starts from the same fleet, each instance on demand in its own type and AZ ID. Baselines, on the
same days, with the same compatibility rules and the same knowledge (prices before the day):
- `on_demand`: never moves;
- `cheapest_spot`: each shape in its cheapest compatible spot market below on-demand, blind to interruptions;
- `lowest_advisor_band`: the compatible market of the lowest advisor band, then the cheapest;
- `capacity_optimized`: price-capacity-optimized-like: the markets within one band of the deepest (lowest
  advisor band) compatible one, then the cheapest of them.
`hindsight_best` is, per instance, the one market (or on-demand) that would have cost least over the whole
window knowing its prices and interruptions; regret is a policy's cost above it (negative when switching pools
during the window beat every single pool).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from spot_pipelines.core.errors import ValidationError
from spot_pipelines.core.ml import QualityGate, TrainingConfig, band_probability, predict, train, training_frame
from spot_pipelines.core.optimization import HOURS_PER_MONTH, RecommendConfig, compatible_markets, recommend
from spot_pipelines.core.risk import (
    INTERRUPTION_EVENT,
    MARKET_KEY,
    BurstConfig,
    _day_start,
    epoch_seconds,
    hot_pools,
    market_codes,
    operating_system,
    score_markets,
    with_hot_pools,
)

HOUR = 3600
DAY = 86_400
POLICY = "recommend"
STATELESS = "recommend_stateless"  # the same policy without the burst hysteresis (core.risk.hot_pools)
MODEL = "recommend_model"  # the policy on the walk-forward model's P(interruption); the prior where it is blocked
BASELINES = ("on_demand", "cheapest_spot", "lowest_advisor_band", "capacity_optimized")
POLICY_COLUMNS = [
    "policy",
    "cost_usd_per_instance_month",
    "savings_vs_on_demand_usd_per_instance_month",
    "savings_vs_on_demand_pct",
    "interruptions_per_1000_instance_hours",
    "interruptions",
    "moves",
    "restarts",
    "flips_per_instance_month",
    "regret_usd_per_instance_month",
    "total_cost_usd",
]
FIT_COLUMNS = ["day", "risk", "label_source", "n_train", "n_holdout", "brier", "baseline_brier", "reason"]
_ADVISOR_COLUMNS = ["day", "region", "operating_system", "instance_type", "interruption_band", "savings_pct"]
_FLEET_COLUMNS = ["account_id", "instance_id", "region", "availability_zone_id", "instance_type", "platform"]
_MOVES = ("move_to_spot", "diversify")


@dataclass(frozen=True)
class BacktestConfig:
    window_days: int = 30
    lookback_days: int = 14  # history before each day the policy may use (prices, warning rate)
    model_retrain_days: int = 7  # the walk-forward model is refit every this many days of the window
    model_training_days: int = 90  # history before each refit it learns from (interruption_model's training_days)

    def __post_init__(self):
        for name in ("window_days", "lookback_days", "model_retrain_days", "model_training_days"):
            if getattr(self, name) < 1:
                raise ValidationError(name, f"must be at least 1, got {getattr(self, name)}")

    @property
    def history_days(self) -> int:
        """Days of history before the window that the replay reads: the lookback, or the model's training data."""
        return max(self.lookback_days, self.model_training_days)


@dataclass
class BacktestResult:
    policies: pd.DataFrame  # POLICY_COLUMNS, one row per policy and baseline, then hindsight_best
    skipped: pd.DataFrame  # what, reason: instances and markets left out
    window_start: datetime
    window_end: datetime
    instances: int
    instance_hours: float
    model_days: int = 0  # window days recommend_model priced from the walk-forward model
    prior_days: int = 0  # window days it fell back to the prior (no model fit passed the quality rule)
    model_fits: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=FIT_COLUMNS))  # one row per refit

    @property
    def model_worth_usd_per_instance_month(self) -> float:
        """recommend's cost minus recommend_model's, USD per instance-month: positive when the model saves money."""
        cost = self.policies.set_index("policy")["cost_usd_per_instance_month"]
        return float(cost[POLICY] - cost[MODEL])


@dataclass
class _History:
    """The stored inputs laid on an hourly grid from the lookback's start to the window's end."""

    markets: pd.DataFrame  # region, availability_zone_id, instance_type, product_description, on_demand
    grid_start: int  # epoch s of hour 0 of the grid
    lookback_hours: int
    price: np.ndarray  # (markets, hours): price in force at each hour's start (NaN: none recorded yet)
    warned: np.ndarray  # (markets, hours): a warning was observed in the market in that hour
    band: np.ndarray  # (markets, window days): advisor band known before each day (NaN: none)


def run_backtest(
    fleet: pd.DataFrame,
    catalog: pd.DataFrame,
    on_demand: pd.DataFrame,
    prices: pd.DataFrame,
    advisor: pd.DataFrame,
    events: pd.DataFrame | None,
    *,
    start: datetime,
    config: BacktestConfig = BacktestConfig(),
    recommend_config: RecommendConfig | None = None,
    burst: BurstConfig | None = None,
    training: TrainingConfig | None = None,
    gate: QualityGate | None = None,
    placement: pd.DataFrame | None = None,
) -> BacktestResult:
    """Replay `config.window_days` days from `start`'s day on. Inputs shaped like the app tables: `fleet` the
    running instances, `prices` spot_price_history rows from `config.history_days` before the window on (the
    lookback for the replay, the model's training data before it), `advisor` with `day`, `events`
    spot_interruption_events rows (warnings and rebalance recommendations), `placement` spot_placement_scores rows
    (the model's placement_score feature; None: none stored). `training` and `gate`: the product's model training
    and quality rule."""
    recommend_config, burst = recommend_config or RecommendConfig(), burst or BurstConfig()
    training, gate = training or TrainingConfig(), gate or QualityGate()
    need = training.window_days + training.horizon_days + 2
    if config.model_training_days < need:
        raise ValidationError(
            "model_training_days",
            f"must be at least {need} (the model's feature window {training.window_days} + horizon "
            f"{training.horizon_days} day(s) + 2), got {config.model_training_days}",
        )
    start = _day_start(start)
    end = start + timedelta(days=config.window_days)
    history, skipped = _history(prices, on_demand, advisor, events, start, end, config)
    instances, pairs, set_aside = compatible_markets(fleet, catalog, on_demand, history.markets, recommend_config)
    skipped = pd.concat(
        [
            set_aside.rename(columns={"instance_id": "what"})[["what", "reason"]],
            skipped,
        ],
        ignore_index=True,
    )
    if instances.empty:
        raise ValidationError("fleet", "no running instance that can be priced: nothing to replay")
    instances = instances.sort_values("instance_id").reset_index(drop=True)
    restart = recommend_config.restart_cost_usd + recommend_config.restart_cost_on_demand_hours * instances[
        "on_demand_hourly_cost"
    ].to_numpy(np.float64)
    sims = {name: _Sim(instances, restart) for name in (POLICY, STATELESS, MODEL, *BASELINES)}
    index = _market_index(history.markets)
    walk = _WalkForward(prices, on_demand, advisor, events, config, training, gate, placement)
    model_days = 0
    for d in range(config.window_days):
        day_hour = history.lookback_hours + 24 * d
        day = start + timedelta(days=d)
        seen = _seen_markets(history, d, day_hour)
        gated = with_hot_pools(seen, hot_pools(events, day, burst))
        if d % config.model_retrain_days == 0:
            walk.refit(day)
        modelled = walk.markets(day, gated)
        model_days += modelled is not None
        target = _policy_targets(sims[POLICY], gated, index, catalog, on_demand, recommend_config)
        if modelled is None and sims[MODEL].same_fleet(sims[POLICY]):
            model_target = _copy_target(target)  # the same inputs on the same fleet: recommend() decides alike
        else:
            markets = gated if modelled is None else modelled
            model_target = _policy_targets(sims[MODEL], markets, index, catalog, on_demand, recommend_config)
        sims[POLICY].move_to(target)
        sims[MODEL].move_to(model_target)
        sims[STATELESS].move_to(_policy_targets(sims[STATELESS], seen, index, catalog, on_demand, recommend_config))
        for name in BASELINES[1:]:
            sims[name].move_to(_baseline_targets(name, instances, pairs, seen))
        for sim in sims.values():
            sim.run_day(history, day_hour)
    hours = 24.0 * config.window_days
    best = _hindsight_best(instances, pairs, history, restart, hours)
    return BacktestResult(
        policies=_report(sims, best, len(instances) * hours),
        skipped=skipped,
        window_start=start,
        window_end=end,
        instances=len(instances),
        instance_hours=len(instances) * hours,
        model_days=model_days,
        prior_days=config.window_days - model_days,
        model_fits=pd.DataFrame(walk.fits, columns=FIT_COLUMNS),
    )


def _history(prices, on_demand, advisor, events, start: datetime, end: datetime, config: BacktestConfig):
    grid_start = start - timedelta(days=config.lookback_days)
    g0 = int(grid_start.timestamp())
    n_hours = 24 * (config.lookback_days + config.window_days)
    ts = epoch_seconds(prices["ts"]) if len(prices) else np.zeros(0, dtype=np.int64)
    in_grid = (ts >= g0) & (ts < int(end.timestamp()))
    if not in_grid.any():
        raise ValidationError(
            "backtest window",
            f"{start:%Y-%m-%d}..{end - timedelta(days=1):%Y-%m-%d} (with {config.lookback_days} day(s) of lookback "
            f"from {grid_start:%Y-%m-%d}): no spot price history is stored for it",
        )
    prices = prices[in_grid]
    codes, markets = market_codes(prices)
    markets = markets[["region", "availability_zone_id", "instance_type", "product_description"]]
    markets, skipped = _with_on_demand(markets, on_demand)
    keep = markets["_code"].to_numpy()
    price = _price_grid(codes, ts[in_grid], prices["price"].to_numpy(np.float64), len(keep), keep, g0, n_hours)
    markets = markets.drop(columns="_code").reset_index(drop=True)
    warned = _warned_grid(events, markets, g0, n_hours)
    band = _band_grid(advisor, markets, start, config.window_days)
    return _History(markets, g0, 24 * config.lookback_days, price, warned, band), skipped


def _with_on_demand(markets: pd.DataFrame, on_demand: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Markets with the list on-demand price of their type; those without one are skipped, with why."""
    od = on_demand[["region", "instance_type", "operating_system", "usd_per_hour"]].drop_duplicates(
        ["region", "instance_type", "operating_system"], keep="last"
    )
    mk = markets.assign(
        _code=np.arange(len(markets)), operating_system=operating_system(markets["product_description"])
    )
    mk = mk.merge(od, on=["region", "instance_type", "operating_system"], how="left").rename(
        columns={"usd_per_hour": "on_demand"}
    )
    missing = ~(mk["on_demand"] > 0)
    gone = mk[missing]
    skipped = pd.DataFrame(
        {
            "what": gone["instance_type"] + " " + gone["product_description"] + " in " + gone["availability_zone_id"],
            "reason": "market has spot prices but no on-demand price for "
            + gone["instance_type"]
            + " ("
            + gone["operating_system"]
            + ") in "
            + gone["region"]
            + ": savings cannot be computed, not a candidate",
        }
    )
    return mk[~missing].drop(columns="operating_system").sort_values("_code").reset_index(drop=True), skipped


def _price_grid(codes, ts, price, n_markets, keep, g0: int, n_hours: int) -> np.ndarray:
    """Price in force at each hour's start: the last record at or before it (one searchsorted on a
    market-major composite key, no loop per market)."""
    order = np.lexsort((ts, codes))
    codes, ts, price = codes[order], ts[order] - g0, price[order]
    span = np.int64(2**40)
    key = codes * span + ts
    hour_s = np.arange(n_hours, dtype=np.int64) * HOUR
    query = (keep[:, None] * span + hour_s[None, :]).ravel()
    idx = np.searchsorted(key, query, side="right") - 1
    ok = (idx >= 0) & (codes[np.maximum(idx, 0)] == np.repeat(keep, n_hours))
    return np.where(ok, price[np.maximum(idx, 0)], np.nan).reshape(n_markets, n_hours)


def _warned_grid(events: pd.DataFrame | None, markets: pd.DataFrame, g0: int, n_hours: int) -> np.ndarray:
    out = np.zeros((len(markets), n_hours), dtype=bool)
    if events is None or events.empty:
        return out
    ev = events[events["event_type"] == INTERRUPTION_EVENT].dropna(subset=["availability_zone_id", "instance_type"])
    if ev.empty:
        return out
    ev = ev.assign(_hour=(epoch_seconds(ev["event_time"]) - g0) // HOUR)
    ev = ev[(ev["_hour"] >= 0) & (ev["_hour"] < n_hours)]
    pool = ["region", "availability_zone_id", "instance_type"]
    hit = ev[pool + ["_hour"]].merge(markets[pool].reset_index(names="_m"), on=pool)
    out[hit["_m"].to_numpy(), hit["_hour"].to_numpy(np.int64)] = True
    return out


def _band_grid(advisor: pd.DataFrame, markets: pd.DataFrame, start: datetime, n_days: int) -> np.ndarray:
    """The latest advisor band of a day before each window day, per market."""
    out = np.full((len(markets), n_days), np.nan)
    if advisor is None or advisor.empty:
        return out
    key = ["region", "operating_system", "instance_type"]
    mk = markets.assign(operating_system=operating_system(markets["product_description"]))[key].reset_index(names="_m")
    adv = advisor.assign(_day=(pd.to_datetime(advisor["day"]) - pd.Timestamp(start.date())).dt.days).sort_values("_day")
    for d in range(n_days):
        known = adv[adv["_day"] < d].drop_duplicates(key, keep="last")
        hit = mk.merge(known[key + ["interruption_band"]], on=key)
        out[hit["_m"].to_numpy(), d] = hit["interruption_band"].to_numpy(np.float64)
    return out


def _market_index(markets: pd.DataFrame) -> dict[tuple, int]:
    cols = ["region", "availability_zone_id", "instance_type", "product_description"]
    return {k: i for i, k in enumerate(zip(*(markets[c].tolist() for c in cols)))}


def _seen_markets(history: _History, d: int, day_hour: int) -> pd.DataFrame:
    """What the policy knows at day d's start, per market: the last price recorded before it, the advisor band,
    and P(interruption within a day) from the band prior and the observed hourly warning rate."""
    # The price in force at the day's first hour may be a record made exactly at midnight: not yet known.
    last = history.price[:, day_hour - 1]
    rate = history.warned[:, day_hour - history.lookback_hours : day_hour].mean(axis=1)
    p_band = band_probability(history.band[:, d], horizon_days=1)
    p = 1 - (1 - p_band) * (1 - rate) ** 24
    return history.markets.assign(
        _m=np.arange(len(history.markets)),
        spot_price=last,
        band=history.band[:, d],
        p_interruption=p,
        horizon_hours=24,
    )[~np.isnan(last)]


class _WalkForward:
    """The product's interruption model, fit on what was stored before each refit day, and the markets priced by
    it on a day (None: the day stays on the prior)."""

    def __init__(self, prices, on_demand, advisor, events, config: BacktestConfig, training, gate, placement=None):
        self.prices, self.on_demand, self.events = prices, on_demand, events
        self.placement = placement if placement is not None and len(placement) else None
        self.placement_ts = epoch_seconds(placement["fetched_at"]) if self.placement is not None else None
        self.config, self.training, self.gate = config, training, gate
        self.price_ts = epoch_seconds(prices["ts"]) if len(prices) else np.zeros(0, dtype=np.int64)
        has_events = events is not None and len(events)
        self.event_ts = epoch_seconds(events["event_time"]) if has_events else np.zeros(0, dtype=np.int64)
        # The model's reference columns; an advisor frame without one (or none at all) leaves it unknown (NaN).
        advisor = advisor if advisor is not None else pd.DataFrame(columns=_ADVISOR_COLUMNS)
        self.advisor = advisor.assign(**{c: np.nan for c in _ADVISOR_COLUMNS if c not in advisor.columns})
        self.advisor_day = pd.to_datetime(self.advisor["day"]) if len(self.advisor) else pd.Series([], dtype=object)
        self.payload: dict | None = None
        self.fits: list[dict] = []

    def _before(self, day: datetime, days: int):
        """Prices, events (warnings and rebalances) and placement scores of the `days` days before `day`, and the
        advisor rows of earlier days: (prices, advisor, events, placement)."""
        lo, hi = int((day - timedelta(days=days)).timestamp()), int(day.timestamp())
        prices = self.prices[(self.price_ts >= lo) & (self.price_ts < hi)]
        events = None if self.events is None else self.events[(self.event_ts >= lo) & (self.event_ts < hi)]
        advisor = self.advisor[self.advisor_day < pd.Timestamp(day.date())] if len(self.advisor) else self.advisor
        placement = None
        if self.placement is not None:
            placement = self.placement[(self.placement_ts >= lo) & (self.placement_ts < hi)]
        return prices, advisor, events, placement

    def refit(self, day: datetime) -> None:
        """interruption_model's training on the data before `day`, kept only if interruption_model_quality's rule
        (the gate on the time-based holdout, a tie refused) would promote it."""
        days = self.config.model_training_days
        prices, advisor, events, placement = self._before(day, days)
        row = dict.fromkeys(FIT_COLUMNS)
        row["day"] = day
        try:
            frame = training_frame(
                prices,
                self.on_demand,
                advisor,
                events,
                start=day - timedelta(days=days),
                end=day,
                config=self.training,
                placement=placement,
            )
            model = train(frame, self.training)
        except ValidationError as exc:
            self.payload = None
            self.fits.append({**row, "risk": "prior", "reason": f"cannot train: {exc}"})
            return
        passed, why = self.gate.verdict(model.metrics)
        self.payload = {
            "pipeline": model.pipeline,
            "features": model.features,
            "version": f"walk-forward {day:%Y-%m-%d}",
        }
        if not passed:
            self.payload, why = None, f"blocked: {why}"
        self.fits.append(
            {
                **row,
                "risk": "model" if passed else "prior",
                "label_source": model.label_source,
                "n_train": model.n_train,
                "n_holdout": model.n_holdout,
                "brier": model.metrics["model"]["brier"],
                "baseline_brier": model.metrics["baseline"]["brier"],
                "reason": why,
            }
        )

    def markets(self, day: datetime, gated: pd.DataFrame) -> pd.DataFrame | None:
        """`gated` with the model's P(interruption) from the day's risk features (the prior where a market has no
        score), or None when no model passed: the day stays on the prior."""
        if self.payload is None:
            return None
        prices, advisor, events, placement = self._before(day, self.training.window_days)
        try:
            scores = score_markets(
                prices,
                self.on_demand,
                advisor,
                events,
                as_of=day,
                window_days=self.training.window_days,
                placement=placement,
            ).scores
        except ValidationError:
            return None
        p = np.clip(predict(self.payload, scores), 0, 1)
        out = gated.merge(scores[MARKET_KEY].assign(_p=p), on=MARKET_KEY, how="left")
        scored = out["_p"].notna()
        out["p_interruption"] = out["_p"].where(scored, out["p_interruption"])
        out["horizon_hours"] = np.where(scored, self.training.horizon_hours, out["horizon_hours"])
        return out.drop(columns="_p")


def _copy_target(target):
    market, od, where = target
    return market.copy(), None if od is None else od.copy(), None if where is None else tuple(a.copy() for a in where)


class _Sim:
    """One policy's fleet: per instance the market it runs in (-1: on demand), its type's on-demand price, and
    the running totals."""

    def __init__(self, instances: pd.DataFrame, restart: np.ndarray):
        self.instances = instances
        self.market = np.full(len(instances), -1, dtype=np.int64)
        self.type = instances["instance_type"].to_numpy(object).copy()
        self.az = instances["availability_zone_id"].to_numpy(object).copy()
        self.od = instances["on_demand_hourly_cost"].to_numpy(np.float64).copy()
        self.restart = restart
        self.cost = self.interruptions = self.moves = self.flips = 0.0

    def move_to(self, target: tuple[np.ndarray, np.ndarray | None, np.ndarray | None]) -> None:
        """`target`: (market per instance, -1 on demand; its type's on-demand price; the type, AZ ID) — a changed
        market is a move, relaunched at the restart cost."""
        market, od, where = target
        moved = market != self.market
        self.moves += float(moved.sum())
        self.flips += float(((market >= 0) != (self.market >= 0)).sum())  # between spot and on-demand
        self.cost += float(self.restart[moved].sum())
        self.market = market
        if od is not None:
            self.od = od
            self.type, self.az = where

    def same_fleet(self, other: _Sim) -> bool:
        """Every instance in the same market, type and AZ ID as in `other`'s fleet."""
        return (
            np.array_equal(self.market, other.market)
            and np.array_equal(self.od, other.od)
            and bool((self.type == other.type).all() and (self.az == other.az).all())
        )

    def run_day(self, history: _History, day_hour: int) -> None:
        spot = self.market >= 0
        hours = slice(day_hour, day_hour + 24)
        m = self.market[spot]
        self.cost += 24 * float(self.od[~spot].sum())
        self.cost += float(np.nansum(history.price[m, hours]))
        hits = history.warned[m, hours].sum(axis=1)
        self.interruptions += float(hits.sum())
        self.cost += float((hits * self.restart[spot]).sum())


def _policy_targets(sim: _Sim, seen: pd.DataFrame, index: dict, catalog, on_demand, config: RecommendConfig):
    """recommend() on the fleet as the replay left it; its moves and returns applied to every instance."""
    inst = sim.instances
    fleet = pd.DataFrame(
        {
            "account_id": inst["account_id"],
            "instance_id": inst["instance_id"],
            "region": inst["region"],
            "availability_zone_id": sim.az,
            "instance_type": sim.type,
            "lifecycle": np.where(sim.market >= 0, "spot", "on-demand"),
            "state": "running",
            "platform": inst["platform"],
            "architecture": inst["architecture"] if "architecture" in inst.columns else None,
            "tags": inst["tags"] if "tags" in inst.columns else None,
        }
    )
    recs = recommend(fleet, catalog, on_demand, seen.drop(columns=["_m", "band", "on_demand"]), config).recommendations
    market, od, t, az = sim.market.copy(), sim.od.copy(), sim.type.copy(), sim.az.copy()
    pos = pd.Series(np.arange(len(inst)), index=inst["instance_id"].to_numpy())
    moves = recs[recs["action"].isin(_MOVES)]
    back = recs[recs["action"] == "return_to_on_demand"]
    od_of = dict(zip(seen["instance_type"] + "|" + seen["product_description"], seen["on_demand"]))
    product = np.where(inst["platform"].astype(str).str.lower().str.startswith("windows"), "Windows", "Linux/UNIX")
    for iid, itype, taz in zip(
        moves["instance_id"], moves["target_instance_type"], moves["target_availability_zone_id"]
    ):
        i = pos[iid]
        market[i] = index[(inst.at[i, "region"], taz, itype, product[i])]
        t[i], az[i] = itype, taz
        od[i] = od_of.get(f"{itype}|{product[i]}", od[i])
    market[pos[back["instance_id"]].to_numpy()] = -1
    return market, od, (t, az)


def _baseline_targets(name: str, instances: pd.DataFrame, pairs: pd.DataFrame, seen: pd.DataFrame):
    """Each shape's market under a baseline rule (or on demand when no compatible market is below it)."""
    cand = pairs.merge(seen[["_m", "spot_price", "band"]], left_on="market", right_on="_m")
    od = instances.drop_duplicates("shape_id").set_index("shape_id")["on_demand_hourly_cost"]
    cand = cand[cand["spot_price"] < cand["shape_id"].map(od)]
    band = cand["band"].fillna(5.0)  # an unknown band is the least trusted
    if name == "lowest_advisor_band":
        cand = cand[band == band.groupby(cand["shape_id"]).transform("min")]
    elif name == "capacity_optimized":
        cand = cand[band <= band.groupby(cand["shape_id"]).transform("min") + 1]
    chosen = cand.sort_values(["shape_id", "spot_price", "market"]).drop_duplicates("shape_id")
    market = instances["shape_id"].map(chosen.set_index("shape_id")["market"]).fillna(-1).to_numpy(np.int64)
    return market, None, None


def _hindsight_best(instances, pairs, history: _History, restart: np.ndarray, hours: float) -> np.ndarray:
    """Per instance, the least any one market (moved to once, at the start) or on-demand would have cost."""
    window = slice(history.lookback_hours, None)
    price = history.price[:, window]
    total = np.where(np.isnan(price).any(axis=1), np.inf, np.nansum(price, axis=1))
    hits = history.warned[:, window].sum(axis=1)
    shape_restart = pd.Series(restart, index=instances["shape_id"]).groupby(level=0).first()
    r = pairs["shape_id"].map(shape_restart).to_numpy(np.float64)
    m = pairs["market"].to_numpy()
    cost = pd.Series(total[m] + r * (hits[m] + 1), index=pairs["shape_id"]).groupby(level=0).min()
    best_spot = instances["shape_id"].map(cost).fillna(np.inf).to_numpy(np.float64)
    return np.minimum(best_spot, instances["on_demand_hourly_cost"].to_numpy(np.float64) * hours)


def _report(sims: dict[str, _Sim], best: np.ndarray, instance_hours: float) -> pd.DataFrame:
    per_month = HOURS_PER_MONTH / instance_hours
    od_cost = sims["on_demand"].cost
    rows = []
    for name, sim in sims.items():
        rows.append(
            {
                "policy": name,
                "cost_usd_per_instance_month": sim.cost * per_month,
                "savings_vs_on_demand_usd_per_instance_month": (od_cost - sim.cost) * per_month,
                "savings_vs_on_demand_pct": 100 * (od_cost - sim.cost) / od_cost,
                "interruptions_per_1000_instance_hours": 1000 * sim.interruptions / instance_hours,
                "interruptions": int(sim.interruptions),
                "moves": int(sim.moves),
                "restarts": int(sim.interruptions + sim.moves),
                "flips_per_instance_month": sim.flips * per_month,
                "regret_usd_per_instance_month": (sim.cost - best.sum()) * per_month,
                "total_cost_usd": sim.cost,
            }
        )
    hindsight = float(best.sum())
    rows.append(
        {
            "policy": "hindsight_best",
            "cost_usd_per_instance_month": hindsight * per_month,
            "savings_vs_on_demand_usd_per_instance_month": (od_cost - hindsight) * per_month,
            "savings_vs_on_demand_pct": 100 * (od_cost - hindsight) / od_cost,
            "interruptions_per_1000_instance_hours": np.nan,
            "interruptions": None,
            "moves": None,
            "restarts": None,
            "flips_per_instance_month": np.nan,
            "regret_usd_per_instance_month": 0.0,
            "total_cost_usd": hindsight,
        }
    )
    return pd.DataFrame(rows, columns=POLICY_COLUMNS).astype(
        {"interruptions": "Int64", "moves": "Int64", "restarts": "Int64"}
    )
