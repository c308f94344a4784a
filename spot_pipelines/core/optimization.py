"""Risk-adjusted spot recommendations for running instances, vectorized with pandas merges.

For every running instance: the compatible spot markets (same architecture, at least the vCPUs and
memory, an allowed family, priced in the instance's AZ ID, same OS), each market's risk-adjusted
expected hourly cost

    spot price + P(interruption per hour) × restart cost,
    restart cost = restart_cost_usd + restart_cost_on_demand_hours × the instance's on-demand price,
    P(per hour) = 1 − (1 − P(within the model's horizon)) ** (1 / horizon hours),

a minimum discount against on-demand, a ceiling on the interruption probability, and an action:

- `move_to_spot`: an on-demand instance with at least one qualifying spot market;
- `diversify`: an instance of a group (ASG / node group / Karpenter pool) with ≥ `diversify_min_pools`
  qualifying pools (type × AZ ID), spread round-robin across them; or a spot instance whose pool no
  longer qualifies, moved to a better pool;
- `stay_on_demand`: an on-demand instance with no qualifying market (the reason says why);
- `return_to_on_demand`: a spot instance whose pool no longer qualifies and has no alternative.

Work is done per instance *shape* (region, AZ ID, OS, type), so 10,000 instances cost a few merges.
Instances that cannot be priced are skipped with a reason, never priced at zero.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np
import pandas as pd

from spot_pipelines.core import commitments as cm
from spot_pipelines.core.errors import ValidationError
from spot_pipelines.core.risk import operating_system

HOURS_PER_MONTH = 730.0
GROUP_TAGS = (
    "aws:autoscaling:groupName",
    "eks:nodegroup-name",
    "karpenter.sh/nodepool",
    "karpenter.sh/provisioner-name",
)
SHAPE = ["region", "availability_zone_id", "product_description", "instance_type"]
_COLUMNS = [
    "account_id",
    "instance_id",
    "region",
    "availability_zone_id",
    "current_instance_type",
    "current_lifecycle",
    "group_key",
    "action",
    "target_instance_type",
    "target_availability_zone_id",
    "target_market",
    "candidates",
    "on_demand_hourly_cost",
    "current_hourly_cost",
    "recommended_hourly_cost",
    "p_interruption",
    "monthly_savings_usd",
    "list_monthly_savings_usd",
    "net_monthly_savings_usd",
    "commitment_covered_fraction",
    "reason",
    "model_version",
]
_SKIPPED_COLUMNS = ["account_id", "instance_id", "instance_type", "reason"]
_MOVES = ["move_to_spot", "diversify"]


@dataclass(frozen=True)
class RecommendConfig:
    min_discount_pct: float = 20.0
    max_p_interruption: float = 0.25  # within the model's horizon (a day by default)
    restart_cost_usd: float = 0.10
    restart_cost_on_demand_hours: float = 2.0
    diversify_min_pools: int = 3
    top_candidates: int = 5
    # With >= diversify_min_pools qualifying pools, no pool takes more than this share of one account's
    # instances of one shape (an interruption wave in one pool cannot take them all; AutoSpotting's rule).
    max_pool_share: float = 0.2
    max_vcpu_factor: float = 2.0  # never suggest more than twice the vCPUs
    same_az_only: bool = True  # a replacement in the same AZ ID keeps the subnet
    allowed_families: dict[str, list[str]] | None = None  # family → allowed families; None: same category
    allow_burstable: bool = False  # t* candidates only for t* instances unless allowed
    # A target's AWS spot placement score (1-10, markets' `placement_score`) must reach this; unscored pass.
    min_placement_score: int | None = None

    def __post_init__(self):
        if not 0 <= self.min_discount_pct < 100:
            raise ValidationError("min_discount_pct", f"must be in [0, 100), got {self.min_discount_pct}")
        if not 0 < self.max_p_interruption <= 1:
            raise ValidationError("max_p_interruption", f"must be in (0, 1], got {self.max_p_interruption}")
        if self.restart_cost_usd < 0 or self.restart_cost_on_demand_hours < 0:
            raise ValidationError("restart_cost", "must not be negative")
        if self.diversify_min_pools < 2:
            raise ValidationError("diversify_min_pools", "must be at least 2")
        if not 0 < self.max_pool_share <= 1:
            raise ValidationError("max_pool_share", f"must be in (0, 1], got {self.max_pool_share}")
        if self.min_placement_score is not None and not 1 <= self.min_placement_score <= 10:
            raise ValidationError("min_placement_score", f"must be in [1, 10], got {self.min_placement_score}")
        if self.top_candidates < self.diversify_min_pools:
            raise ValidationError("top_candidates", "must be at least diversify_min_pools")


@dataclass
class RecommendResult:
    recommendations: pd.DataFrame
    skipped: pd.DataFrame  # account_id, instance_id, instance_type, reason
    unchanged: int = 0  # spot instances whose pool still qualifies
    # Per pool and commitment group: used / unused $/h now.
    commitments: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=cm.COMMITMENT_GROUP_COLUMNS))


def family_category(family: pd.Series) -> pd.Series:
    """'m6i' → 'm', 'inf2' → 'inf', 'u-6tb1' → 'u-6tb'."""
    return family.astype(str).str.extract(r"^([a-z\-]+?)(?=\d)", expand=False).fillna(family.astype(str))


def group_keys(instances: pd.DataFrame) -> pd.Series:
    def key(tags) -> str | None:
        if isinstance(tags, dict):
            for tag in GROUP_TAGS:
                if tags.get(tag):
                    return f"{tag}={tags[tag]}"
        return None

    tags = (
        instances["tags"] if "tags" in instances.columns else pd.Series([None] * len(instances), index=instances.index)
    )
    keys = tags.map(key)
    return pd.Series(
        np.where(keys.notna(), instances["account_id"].astype(str) + ":" + keys.astype(str), None),
        index=instances.index,
        dtype=object,
    )


def recommend(
    instances: pd.DataFrame,
    catalog: pd.DataFrame,
    on_demand: pd.DataFrame,
    markets: pd.DataFrame,
    config: RecommendConfig = RecommendConfig(),
    commitments: cm.InForce | None = None,
) -> RecommendResult:
    """`markets`: region, availability_zone_id, instance_type, product_description, spot_price,
    p_interruption, horizon_hours[, model_version][, hot_note] — one row per priced spot market; a market with a
    `hot_note` (its pool is in an interruption burst, core.risk.hot_pools) qualifies for nothing. `commitments`: the RIs
    and Savings Plans in force; without them net savings equal list savings.

    Candidates are found and priced once per instance shape; instances that cannot be priced are set
    aside with a reason at the step that finds out."""
    running = instances[instances["state"] == "running"].copy() if not instances.empty else instances
    if running.empty:
        return RecommendResult(pd.DataFrame(columns=_COLUMNS), pd.DataFrame(columns=_SKIPPED_COLUMNS))
    skipped = _SetAside()
    specs = _catalog_specs(catalog)
    fleet = _fleet_with_specs_and_on_demand(running, specs, on_demand, skipped)
    mk = _priced_markets(markets, specs)
    shapes = _shapes(fleet)
    shape_rows, market_rows = _compatible_pairs(shapes, mk, config)
    candidates = _price_candidates(shapes, mk, shape_rows, market_rows, config)
    shapes, top = _rank_candidates(shapes, mk, candidates, config)
    fleet = _with_own_market(fleet, shapes, mk, config, skipped)
    fleet = _choose_actions(fleet, config)
    unchanged = int((fleet["action"] == "keep").sum())
    rows = _with_targets(fleet[fleet["action"] != "keep"], top)
    rows = _with_costs(rows)
    rows, used = _with_net_savings(rows, fleet, top, commitments or cm.InForce.none(), config)
    out = _output(rows, top, _model_version(mk), config, _placement_notes(rows, mk, config))
    return RecommendResult(out, skipped.frame(), unchanged=unchanged, commitments=used)


def compatible_markets(
    instances: pd.DataFrame,
    catalog: pd.DataFrame,
    on_demand: pd.DataFrame,
    markets: pd.DataFrame,
    config: RecommendConfig,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """recommend()'s compatibility rules for others that choose among the same markets (the backtest's baselines).

    Returns (the running instances that can be priced, with `shape_id` and `on_demand_hourly_cost`; every
    compatible pair as `shape_id`, `market` = the row position in `markets`; the instances set aside, with why).
    `markets`: region, availability_zone_id, instance_type, product_description."""
    skipped = _SetAside()
    specs = _catalog_specs(catalog)
    fleet = _fleet_with_specs_and_on_demand(
        instances[instances["state"] == "running"].copy(), specs, on_demand, skipped
    )
    shapes = _shapes(fleet)
    mk = (
        markets[["region", "availability_zone_id", "instance_type", "product_description"]]
        .assign(_row=np.arange(len(markets)))
        .merge(specs, on="instance_type", how="inner")
        .reset_index(drop=True)
    )
    sid, mid = _compatible_pairs(shapes, mk, config)
    pairs = pd.DataFrame({"shape_id": sid, "market": mk["_row"].to_numpy()[mid]})
    return fleet.merge(shapes[SHAPE + ["shape_id"]], on=SHAPE, how="left"), pairs, skipped.frame()


class _SetAside:
    """Instances that cannot be priced, with the reason, in the order they were set aside."""

    def __init__(self) -> None:
        self._parts: list[pd.DataFrame] = []

    def drop(self, frame: pd.DataFrame, mask: pd.Series, reason) -> pd.DataFrame:
        """`frame` without the masked rows; `reason` is a string or a function of the set-aside rows."""
        if not mask.any():
            return frame
        part = frame.loc[mask].copy()
        part["reason"] = reason(part) if callable(reason) else reason
        self._parts.append(part[_SKIPPED_COLUMNS])
        return frame[~mask]

    def frame(self) -> pd.DataFrame:
        if not self._parts:
            return pd.DataFrame(columns=_SKIPPED_COLUMNS)
        return pd.concat(self._parts, ignore_index=True)


@dataclass(frozen=True)
class _Candidates:
    """Compatible (shape, market) pairs, by row position in the shapes and markets frames, with their price."""

    shape: np.ndarray
    market: np.ndarray
    cost: np.ndarray  # risk-adjusted expected hourly cost
    discount: np.ndarray  # against the shape's on-demand price, as a fraction
    p_interruption: np.ndarray
    qualifies: np.ndarray

    def take(self, order: np.ndarray) -> _Candidates:
        return _Candidates(*(getattr(self, f.name)[order] for f in fields(self)))


def _risk_adjusted_cost(spot_price, p_hour, on_demand, config: RecommendConfig):
    """spot price + P(interruption per hour) × restart cost; arrays or Series alike."""
    return spot_price + p_hour * (config.restart_cost_usd + config.restart_cost_on_demand_hours * on_demand)


def _qualifies(discount, p_interruption, config: RecommendConfig):
    return (discount >= config.min_discount_pct / 100) & (p_interruption <= config.max_p_interruption)


def _catalog_specs(catalog: pd.DataFrame) -> pd.DataFrame:
    cat = catalog[["instance_type", "family", "vcpu", "memory_gib", "architecture"]].rename(
        columns={"architecture": "type_architecture"}
    )
    return cat.assign(category=family_category(cat["family"]))


def _fleet_with_specs_and_on_demand(
    inst: pd.DataFrame, specs: pd.DataFrame, on_demand: pd.DataFrame, skipped: _SetAside
) -> pd.DataFrame:
    """Running instances with their OS, group, catalog specs and on-demand price; the rest set aside."""
    inst["product_description"] = np.where(
        inst["platform"].astype(str).str.lower().str.startswith("windows"), "Windows", "Linux/UNIX"
    )
    inst["operating_system"] = operating_system(inst["product_description"])
    inst["group_key"] = group_keys(inst)
    inst = skipped.drop(inst, inst["availability_zone_id"].isna(), "no availability zone ID recorded for the instance")
    inst = inst.merge(specs, on="instance_type", how="left")
    inst = skipped.drop(
        inst,
        inst["family"].isna(),
        lambda f: (
            "instance type "
            + f["instance_type"].astype(str)
            + " is not in the instance type catalog: compatibility cannot be judged"
        ),
    )
    inst = skipped.drop(
        inst,
        inst["vcpu"].isna() | inst["memory_gib"].isna(),
        lambda f: "the catalog has no vCPU/memory for " + f["instance_type"].astype(str),
    )
    od = (
        on_demand[["region", "instance_type", "operating_system", "usd_per_hour"]]
        .rename(columns={"usd_per_hour": "on_demand_hourly_cost"})
        .drop_duplicates(["region", "instance_type", "operating_system"], keep="last")
    )
    inst = inst.merge(od, on=["region", "instance_type", "operating_system"], how="left")
    inst = skipped.drop(
        inst,
        ~(inst["on_demand_hourly_cost"] > 0),
        lambda f: (
            "no on-demand price for "
            + f["instance_type"].astype(str)
            + " ("
            + f["operating_system"].astype(str)
            + ") in "
            + f["region"].astype(str)
            + ": savings cannot be computed"
        ),
    )
    inst["arch"] = (
        inst["architecture"].fillna(inst["type_architecture"])
        if "architecture" in inst.columns
        else inst["type_architecture"]
    )
    return inst


def _priced_markets(markets: pd.DataFrame, specs: pd.DataFrame) -> pd.DataFrame:
    """One row per market with a positive spot price and a catalog entry, with P(interruption per hour)."""
    mk = markets[
        [
            "region",
            "availability_zone_id",
            "instance_type",
            "product_description",
            "spot_price",
            "p_interruption",
            "horizon_hours",
        ]
        + (["model_version"] if "model_version" in markets.columns else [])
        + (["hot_note"] if "hot_note" in markets.columns else [])
        + (["placement_score"] if "placement_score" in markets.columns else [])
    ]
    mk = mk.astype({"spot_price": np.float64, "p_interruption": np.float64, "horizon_hours": np.float64})
    mk = mk[mk["spot_price"] > 0].merge(specs, on="instance_type", how="inner")
    horizon = mk["horizon_hours"].astype(np.float64).clip(lower=1)
    mk = mk.assign(p_hour=1 - (1 - mk["p_interruption"].clip(0, 1)) ** (1 / horizon))
    # Candidates refer to markets by row position.
    return mk.reset_index(drop=True)


def _model_version(mk: pd.DataFrame) -> int | None:
    return int(mk["model_version"].max()) if "model_version" in mk.columns and len(mk) else None


def _shapes(inst: pd.DataFrame) -> pd.DataFrame:
    """One row per instance shape (region, AZ ID, OS, type): candidates are found per shape, not per instance."""
    shape_cols = SHAPE + ["family", "category", "vcpu", "memory_gib", "arch", "on_demand_hourly_cost"]
    shapes = inst[shape_cols].drop_duplicates(SHAPE).reset_index(drop=True)
    shapes["shape_id"] = np.arange(len(shapes))
    return shapes


def _compatible_pairs(shapes: pd.DataFrame, mk: pd.DataFrame, config: RecommendConfig) -> tuple[np.ndarray, np.ndarray]:
    """(shape row, market row) of every compatible pair: same region, OS, architecture (and AZ ID), at
    least the vCPUs and memory, at most `max_vcpu_factor` × the vCPUs, an allowed family."""
    join_on = ["region", "product_description"] + (["availability_zone_id"] if config.same_az_only else [])
    right = mk.rename(
        columns={
            "instance_type": "c_type",
            "family": "c_family",
            "vcpu": "c_vcpu",
            "memory_gib": "c_memory",
            "category": "c_category",
            "availability_zone_id": "c_az",
        }
    )
    left_keys, right_keys = list(join_on), [c if c != "availability_zone_id" else "c_az" for c in join_on]
    # Joining on architecture (and on the family category unless families are listed) keeps the
    # candidate frame to plausible pairs instead of every market of the AZ.
    left_keys.append("arch")
    right_keys.append("type_architecture")
    if config.allowed_families is None:
        left_keys.append("category")
        right_keys.append("c_category")
    # Only keys and row numbers go through the merge; everything else is gathered by position.
    # Each shape may only take the vCPU sizes in [its vCPUs, max_vcpu_factor × its vCPUs]: expanding the
    # shapes by those few sizes and joining on the size too avoids building every same-family pair.
    sizes = np.unique(mk["vcpu"].dropna().to_numpy(np.float64))
    s_v = shapes["vcpu"].to_numpy(np.float64)
    si, vi = np.nonzero((sizes[None, :] >= s_v[:, None]) & (sizes[None, :] <= s_v[:, None] * config.max_vcpu_factor))
    left = shapes[left_keys + ["shape_id"]].iloc[si].assign(_vcpu=sizes[vi])
    pairs = left.merge(
        right[right_keys + ["c_vcpu"]].assign(_mk=np.arange(len(right))),
        left_on=left_keys + ["_vcpu"],
        right_on=right_keys + ["c_vcpu"],
        how="inner",
    )
    sid = pairs["shape_id"].to_numpy()
    mid = pairs["_mk"].to_numpy()
    s_vcpu, s_mem = shapes["vcpu"].to_numpy(np.float64)[sid], shapes["memory_gib"].to_numpy(np.float64)[sid]
    c_vcpu, c_mem = mk["vcpu"].to_numpy(np.float64)[mid], mk["memory_gib"].to_numpy(np.float64)[mid]
    compatible = (c_vcpu >= s_vcpu) & (c_mem >= s_mem) & (c_vcpu <= s_vcpu * config.max_vcpu_factor)
    if config.allowed_families is not None:
        allowed = {(f, a) for f, al in config.allowed_families.items() for a in [f, *al]}
        fam_pairs = pd.MultiIndex.from_arrays([shapes["family"].to_numpy()[sid], mk["family"].to_numpy()[mid]])
        compatible &= fam_pairs.isin(list(allowed))
        if not config.allow_burstable:
            compatible &= (mk["category"].to_numpy()[mid] != "t") | (shapes["category"].to_numpy()[sid] == "t")
    return sid[compatible], mid[compatible]


def _price_candidates(
    shapes: pd.DataFrame, mk: pd.DataFrame, sid: np.ndarray, mid: np.ndarray, config: RecommendConfig
) -> _Candidates:
    """Every compatible pair's risk-adjusted cost, its discount against on-demand and whether it qualifies
    (minimum discount, interruption ceiling): the one place a candidate gets its price."""
    od_price = shapes["on_demand_hourly_cost"].to_numpy(np.float64)[sid]
    p_int = mk["p_interruption"].to_numpy(np.float64)[mid]
    cost = _risk_adjusted_cost(
        mk["spot_price"].to_numpy(np.float64)[mid], mk["p_hour"].to_numpy(np.float64)[mid], od_price, config
    )
    discount = 1 - cost / od_price
    qualifies = _qualifies(discount, p_int, config) & ~_hot(mk)[mid]
    if config.min_placement_score is not None and "placement_score" in mk.columns:
        qualifies &= ~(mk["placement_score"].to_numpy(np.float64)[mid] < config.min_placement_score)
    return _Candidates(sid, mid, cost, discount, p_int, qualifies)


def _hot(mk: pd.DataFrame) -> np.ndarray:
    return mk["hot_note"].notna().to_numpy() if "hot_note" in mk.columns else np.zeros(len(mk), dtype=bool)


def _rank_candidates(
    shapes: pd.DataFrame, mk: pd.DataFrame, cands: _Candidates, config: RecommendConfig
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Shapes with their counts of compatible and qualifying markets and best discount; and the top
    `top_candidates` qualifying markets per shape, cheapest first (rank 0 = the target)."""
    c = cands.take(np.lexsort((cands.cost, ~cands.qualifies, cands.shape)))
    sid = c.shape
    n_shapes = len(shapes)
    best = np.full(n_shapes, np.nan)
    if len(sid):
        starts = np.flatnonzero(np.r_[True, sid[1:] != sid[:-1]])
        best[sid[starts]] = np.maximum.reduceat(c.discount, starts)
    shapes = shapes.assign(
        n_compatible=np.bincount(sid, minlength=n_shapes),
        n_ok=np.bincount(sid, weights=c.qualifies, minlength=n_shapes).astype(int),
        best_discount=best,
    )
    # Qualifying markets come first within a shape, cheapest first: the rank is the position in the run.
    first_of = np.zeros(n_shapes + 1, dtype=np.int64)
    np.add.at(first_of, sid + 1, 1)
    rank = np.arange(len(sid)) - np.cumsum(first_of)[sid]
    keep = c.qualifies & (rank < config.top_candidates)
    top = pd.DataFrame(
        {
            "shape_id": sid[keep],
            "rank": rank[keep],
            "c_type": mk["instance_type"].to_numpy()[c.market[keep]],
            "c_az": mk["availability_zone_id"].to_numpy()[c.market[keep]],
            "spot_price": mk["spot_price"].to_numpy(np.float64)[c.market[keep]].round(6),
            "p_interruption": c.p_interruption[keep].round(4),
            "risk_adjusted": c.cost[keep],
            "discount": c.discount[keep],
        }
    )
    return shapes, top


def _with_own_market(
    inst: pd.DataFrame, shapes: pd.DataFrame, mk: pd.DataFrame, config: RecommendConfig, skipped: _SetAside
) -> pd.DataFrame:
    """Instances with their shape's counts and their own market's risk-adjusted cost and whether it still
    qualifies; spot instances whose own market has no price are set aside."""
    inst = inst.merge(shapes[SHAPE + ["shape_id", "n_compatible", "n_ok", "best_discount"]], on=SHAPE, how="left")
    own = mk[
        [
            "region",
            "availability_zone_id",
            "instance_type",
            "product_description",
            "spot_price",
            "p_interruption",
            "p_hour",
        ]
    ].assign(own_hot_note=mk["hot_note"] if "hot_note" in mk.columns else None)
    own = own.rename(columns={"spot_price": "own_price", "p_interruption": "own_p", "p_hour": "own_p_hour"})
    inst = inst.merge(own, on=SHAPE, how="left")
    inst["own_cost"] = _risk_adjusted_cost(inst["own_price"], inst["own_p_hour"], inst["on_demand_hourly_cost"], config)
    inst["own_ok"] = (
        _qualifies(1 - inst["own_cost"] / inst["on_demand_hourly_cost"], inst["own_p"], config)
        & inst["own_hot_note"].isna().to_numpy()
    )
    return skipped.drop(
        inst,
        (inst["lifecycle"] == "spot") & inst["own_price"].isna(),
        lambda f: (
            "spot instance of "
            + f["instance_type"].astype(str)
            + " in "
            + f["availability_zone_id"].astype(str)
            + ": no spot price history for its own market"
        ),
    )


def _choose_actions(inst: pd.DataFrame, config: RecommendConfig) -> pd.DataFrame:
    """The action per instance and, for group members spread over the pools, the rank of its target.
    A spot instance whose pool still qualifies is kept (`keep`) unless its group needs more pools."""
    inst = inst.sort_values(["group_key", "instance_id"], na_position="last").reset_index(drop=True)
    inst["n_ok"] = inst["n_ok"].fillna(0).astype(int)
    is_spot = (inst["lifecycle"] == "spot").to_numpy()
    own_ok = inst["own_ok"].to_numpy()
    in_group = inst["group_key"].notna().to_numpy()
    n_ok = inst["n_ok"].to_numpy()
    # Round-robin position within a group spreads its instances over the qualifying pools.
    pos = inst.groupby("group_key", dropna=False).cumcount().to_numpy()
    spread = in_group & (n_ok >= config.diversify_min_pools)
    inst["target_rank"] = np.where(spread, pos % np.minimum(np.maximum(n_ok, 1), config.top_candidates), 0)
    inst["held_by_spread"] = False
    inst = _spread_identical(inst, ~is_spot & ~in_group & (n_ok > 0), config)
    group_pools = (
        (inst["instance_type"] + "@" + inst["availability_zone_id"].astype(str))
        .where(inst["lifecycle"] == "spot")
        .groupby(inst["group_key"])
        .transform("nunique")
        .fillna(0)
        .to_numpy()
    )
    od_ = ~is_spot
    conditions = [
        od_ & (n_ok == 0),
        od_ & spread,
        od_,
        is_spot & own_ok & spread & (group_pools < config.diversify_min_pools),
        is_spot & own_ok,
        is_spot & ~own_ok & (n_ok > 0),
        is_spot & ~own_ok,
    ]
    choices = ["stay_on_demand", "diversify", "move_to_spot", "diversify", "keep", "diversify", "return_to_on_demand"]
    inst["action"] = np.select(conditions, choices, default="keep")
    inst.loc[inst["held_by_spread"], "action"] = "stay_on_demand"
    return inst


def _spread_identical(inst: pd.DataFrame, movable: np.ndarray, config: RecommendConfig) -> pd.DataFrame:
    """One account's ungrouped on-demand instances of one shape go round-robin over its k best qualifying pools.
    With k >= diversify_min_pools no pool takes more than max(1, max_pool_share x n) of the n; with fewer, they
    share evenly. Those beyond every pool's share stay on-demand (`held_by_spread`)."""
    k = np.minimum(inst["n_ok"].to_numpy(), config.top_candidates)
    groups = inst.loc[movable, ["account_id", "shape_id"]].groupby(["account_id", "shape_id"], sort=False)
    pos, n = np.zeros(len(inst), dtype=np.int64), np.zeros(len(inst), dtype=np.int64)
    pos[movable] = groups.cumcount().to_numpy()
    n[movable] = groups["shape_id"].transform("size").to_numpy()
    safe_k = np.maximum(k, 1)
    cap = np.where(k >= config.diversify_min_pools, np.maximum(1, np.floor(config.max_pool_share * n)), -(-n // safe_k))
    inst["target_rank"] = np.where(movable, pos % safe_k, inst["target_rank"])
    inst["held_by_spread"] = movable & (pos >= cap * safe_k)
    inst["spread_pools"], inst["spread_n"] = k, n
    return inst


def _with_targets(rows: pd.DataFrame, top: pd.DataFrame) -> pd.DataFrame:
    """The target type, AZ ID and market of each action: the ranked candidate for moves, the same type
    on demand for a return."""
    tgt = top[["shape_id", "rank", "c_type", "c_az", "risk_adjusted", "p_interruption", "discount"]].rename(
        columns={"rank": "target_rank", "p_interruption": "target_p"}
    )
    rows = rows.merge(tgt, on=["shape_id", "target_rank"], how="left")
    moves = rows["action"].isin(_MOVES)
    back = rows["action"] == "return_to_on_demand"
    rows["target_instance_type"] = np.where(moves, rows["c_type"], np.where(back, rows["instance_type"], None))
    rows["target_availability_zone_id"] = np.where(
        moves, rows["c_az"], np.where(back, rows["availability_zone_id"], None)
    )
    rows["target_market"] = np.select([moves, back], ["spot", "on-demand"], default=None)
    return rows


def _with_costs(rows: pd.DataFrame) -> pd.DataFrame:
    """Current and recommended hourly cost, monthly savings and the interruption probability taken on."""
    moves = rows["action"].isin(_MOVES)
    rows["current_hourly_cost"] = np.where(rows["lifecycle"] == "spot", rows["own_cost"], rows["on_demand_hourly_cost"])
    rows["recommended_hourly_cost"] = np.select(
        [moves, rows["action"] == "return_to_on_demand"],
        [rows["risk_adjusted"], rows["on_demand_hourly_cost"]],
        default=rows["current_hourly_cost"],
    )
    rows["recommended_hourly_cost"] = rows["recommended_hourly_cost"].astype(np.float64)
    rows["monthly_savings_usd"] = (
        (rows["current_hourly_cost"] - rows["recommended_hourly_cost"]) * HOURS_PER_MONTH
    ).round(2)
    rows["p_interruption"] = np.where(moves, rows["target_p"], rows["own_p"])
    return rows


def _with_net_savings(
    rows: pd.DataFrame, fleet: pd.DataFrame, top: pd.DataFrame, commitments: cm.InForce, config: RecommendConfig
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """List and net monthly savings and the covered fraction; the threshold on net. Net is the change of the
    pool's whole bill under its commitments (core.commitments.evaluate): an on-demand instance leaving saves only
    what no commitment covered plus what its freed commitment then covers elsewhere; one returning to on-demand
    first takes idle commitment. An on-demand move whose net discount is below `min_discount_pct` stays."""
    rows = rows.reset_index(drop=True)
    pool = rows["account_id"].map(commitments.pool_of)
    on_demand = fleet[fleet["lifecycle"] != "spot"]
    od_fleet = on_demand.assign(
        pool=on_demand["account_id"].map(commitments.pool_of), od=on_demand["on_demand_hourly_cost"]
    )
    leaving = (rows["lifecycle"] != "spot") & rows["action"].isin(_MOVES)
    back = rows["action"] == "return_to_on_demand"
    changes = rows.assign(pool=pool, od=rows["on_demand_hourly_cost"], delta=np.where(back, 1, -1))[leaving | back]
    ev = cm.evaluate(
        od_fleet.assign(instance_id=od_fleet["instance_id"]),
        changes[cm.SHAPE + ["instance_id", "od", "delta"]],
        commitments.book,
        commitments.now,
    )
    bill = pd.Series(ev.changes["bill_change_monthly_usd"].to_numpy(), index=changes.index).reindex(rows.index)
    list_monthly = rows["monthly_savings_usd"].astype(np.float64)
    net = np.select(
        [leaving, back],
        [
            -bill - rows["recommended_hourly_cost"] * HOURS_PER_MONTH,
            rows["current_hourly_cost"] * HOURS_PER_MONTH - bill,
        ],
        default=list_monthly,
    )
    rows["list_monthly_savings_usd"] = list_monthly.round(2)
    rows["net_monthly_savings_usd"] = np.round(net, 2)
    coverage = ev.coverage.set_index("instance_id")
    rows["commitment_covered_fraction"] = (
        rows["instance_id"].map(coverage["covered_fraction"]).where(rows["lifecycle"] != "spot").fillna(0.0)
    )
    rows["covered_by"] = rows["instance_id"].map(coverage["covered_by"]).where(rows["lifecycle"] != "spot")
    detail = ev.changes.set_index(changes.index)[["unabsorbed_usd_per_hour", "absorbed_by"]].reindex(rows.index)
    rows = pd.concat([rows, detail], axis=1)
    fails = leaving & (
        rows["net_monthly_savings_usd"]
        < config.min_discount_pct / 100 * rows["on_demand_hourly_cost"] * HOURS_PER_MONTH
    )
    rows["kept_by_commitments"] = fails
    rows.loc[fails, "action"] = "stay_on_demand"
    rows.loc[fails, ["target_instance_type", "target_availability_zone_id", "target_market"]] = None
    rows.loc[fails, "recommended_hourly_cost"] = rows.loc[fails, "current_hourly_cost"]
    rows["monthly_savings_usd"] = np.where(fails, 0.0, rows["net_monthly_savings_usd"])
    spot_price = rows.merge(
        top[["shape_id", "rank", "spot_price"]].rename(columns={"rank": "target_rank"}),
        on=["shape_id", "target_rank"],
        how="left",
    )["spot_price"].to_numpy()
    rows["commitment_note"] = cm.notes(
        rows.assign(pool=pool, target_spot_price=spot_price),
        commitments,
        config.restart_cost_usd,
        config.restart_cost_on_demand_hours,
    )
    return rows, ev.commitments


def _output(
    rows: pd.DataFrame, top: pd.DataFrame, model_version: int | None, config: RecommendConfig, placement: pd.Series
) -> pd.DataFrame:
    """The candidates and reason of each row, in the output columns, largest savings first."""
    lists = _candidate_lists(top)
    rows["candidates"] = [lists.get(s, []) for s in rows["shape_id"].tolist()]
    rows["reason"] = _reasons(rows, config) + rows["commitment_note"] + _hot_notes(rows) + placement
    rows["model_version"] = model_version
    out = rows.rename(columns={"instance_type": "current_instance_type", "lifecycle": "current_lifecycle"})
    return out[_COLUMNS].sort_values("monthly_savings_usd", ascending=False).reset_index(drop=True)


def _hot_notes(rows: pd.DataFrame) -> pd.Series:
    """Why a spot instance leaves its pool when the pool is in an interruption burst."""
    hot = rows["own_hot_note"].notna() & (rows["lifecycle"] == "spot")
    return pd.Series(np.where(hot, "; " + rows["own_hot_note"].fillna("").astype(str), ""), index=rows.index)


def _placement_notes(rows: pd.DataFrame, mk: pd.DataFrame, config: RecommendConfig) -> pd.Series:
    """A move's target pool's placement score (or that AWS gave none), where scores were supplied."""
    notes = pd.Series("", index=rows.index, dtype=object)
    if "placement_score" not in mk.columns:
        return notes
    score = (
        rows[["region", "target_availability_zone_id", "target_instance_type"]]
        .merge(
            mk[["region", "availability_zone_id", "instance_type", "placement_score"]].drop_duplicates(
                SHAPE[:2] + SHAPE[3:]
            ),
            left_on=["region", "target_availability_zone_id", "target_instance_type"],
            right_on=["region", "availability_zone_id", "instance_type"],
            how="left",
        )["placement_score"]
        .to_numpy()
    )
    gate = "" if config.min_placement_score is None else f", at least {config.min_placement_score} required"
    moves = rows["action"].isin(_MOVES).to_numpy()
    text = [
        (f"; placement score {s:.0f}/10 in {az}{gate}" if s == s else f"; AWS gave no placement score for {t} in {az}")
        if m
        else ""
        for m, s, t, az in zip(
            moves, score, rows["target_instance_type"].tolist(), rows["target_availability_zone_id"].tolist()
        )
    ]
    return pd.Series(text, index=rows.index, dtype=object)


def _candidate_lists(top: pd.DataFrame) -> dict[int, list[dict]]:
    """Shape ID → its top qualifying markets as plain records, cheapest first."""
    lists: dict[int, list[dict]] = {}
    for s_id, c_type, c_az, price, p, c, disc in zip(
        top["shape_id"].tolist(),
        top["c_type"].tolist(),
        top["c_az"].tolist(),
        top["spot_price"].tolist(),
        top["p_interruption"].tolist(),
        top["risk_adjusted"].round(6).tolist(),
        (100 * top["discount"]).round(1).tolist(),
    ):
        lists.setdefault(s_id, []).append(
            {
                "instance_type": c_type,
                "availability_zone_id": c_az,
                "spot_price": price,
                "p_interruption": p,
                "risk_adjusted_hourly_cost": c,
                "discount_pct": disc,
            }
        )
    return lists


def _reasons(df: pd.DataFrame, config: RecommendConfig) -> pd.Series:
    """The reason in words. Decisions are made above, vectorized; this only renders text (one
    f-string per output row is several times faster than pandas string concatenation)."""
    min_d = f"{config.min_discount_pct:.0f}%"
    ceiling = f"{config.max_p_interruption:.0%}"

    def text(
        action,
        lifecycle,
        own_ok,
        group,
        n_compatible,
        n_ok,
        best,
        t_type,
        t_az,
        rec_cost,
        cur_cost,
        od,
        p,
        savings,
        kept,
        held,
        pools,
        n,
    ) -> str:
        target = f"{t_type} spot in {t_az}"
        cost = (
            f" at a risk-adjusted ${rec_cost:.4f}/h vs ${cur_cost:.4f}/h now "
            f"(P(interruption/day) {p:.1%}); saves ${savings:,.0f}/month"
        )
        if action == "stay_on_demand" and kept:
            return "stays on-demand"
        if action == "stay_on_demand" and held:
            share = f"{config.max_pool_share:.0%}"
            return (
                f"stays on-demand: its {pools} qualifying spot pools already take their {share} share of this "
                f"account's {n} instances of this shape (an interruption wave in one pool cannot take them all)"
            )
        if action == "stay_on_demand":
            if not n_compatible:
                return (
                    "no compatible spot market (same architecture, ≥ vCPU and memory, allowed family) "
                    "is priced in this AZ ID"
                )
            return (
                f"the best compatible spot market saves only {best:.0%} risk-adjusted, below the {min_d} minimum "
                f"discount, or is above the {ceiling} interruption ceiling"
            )
        if action == "move_to_spot":
            return "Move to " + target + cost
        if action == "diversify" and lifecycle != "spot":
            return f"Group {group}: spread over {n_ok} qualifying spot pools; this one to {target}{cost}"
        if action == "diversify" and own_ok:
            return f"Group {group} runs on too few spot pools; diversify this one to {target}{cost}"
        if action == "diversify":
            return (
                f"Its spot pool no longer qualifies (below the {min_d} minimum discount or above the {ceiling} "
                f"interruption ceiling); move to {target}{cost}"
            )
        return (
            f"Its spot pool no longer qualifies and no compatible spot pool does: return to on-demand at "
            f"${od:.4f}/h (risk-adjusted spot ${cur_cost:.4f}/h, P(interruption/day) {p:.1%})"
        )

    cols = [
        "action",
        "lifecycle",
        "own_ok",
        "group_key",
        "n_compatible",
        "n_ok",
        "best_discount",
        "target_instance_type",
        "target_availability_zone_id",
        "recommended_hourly_cost",
        "current_hourly_cost",
        "on_demand_hourly_cost",
        "p_interruption",
        "monthly_savings_usd",
        "kept_by_commitments",
        "held_by_spread",
        "spread_pools",
        "spread_n",
    ]
    values = [df[c].tolist() for c in cols]
    return pd.Series([text(*row) for row in zip(*values)], index=df.index, dtype=object)


# --------------------------------------------------------------------------- what spot_recommendations' checks assert
# Each returns the offending instances in words (empty: the check passes); the asset turns them into check results.

_PRICE_COLUMNS = ["on_demand_hourly_cost", "current_hourly_cost", "recommended_hourly_cost"]


def unaccounted_instances(running: pd.DataFrame, result: RecommendResult) -> list[str]:
    """Running instances neither recommended, skipped with a reason, nor among the `unchanged` spot instances
    (recommend() counts those without listing them, so what is left must be spot and exactly that many)."""
    if running.empty:
        return []
    key = ["account_id", "instance_id"]
    skipped = result.skipped[result.skipped["reason"].fillna("").astype(str).str.strip() != ""]
    seen = pd.concat([result.recommendations[key], skipped[key]]).drop_duplicates()
    rest = running[running["state"] == "running"].merge(seen, on=key, how="left", indicator=True)
    rest = rest[rest["_merge"] == "left_only"]
    missing = rest[rest["lifecycle"] != "spot"]
    problems = [f"{r.instance_id} ({r.lifecycle}): no recommendation and no skip reason" for r in missing.itertuples()]
    if len(rest) - len(missing) != result.unchanged:
        problems.append(
            f"{len(rest) - len(missing)} spot instances without a row, but {result.unchanged} counted unchanged"
        )
    return problems


def unprofitable_moves(recs: pd.DataFrame) -> list[str]:
    """move_to_spot rows whose net monthly saving is not positive (or unknown)."""
    net = pd.to_numeric(recs["net_monthly_savings_usd"], errors="coerce")
    bad = recs[(recs["action"] == "move_to_spot") & ~(net > 0)]
    return [f"{r.instance_id}: net ${r.net_monthly_savings_usd}/month" for r in bad.itertuples()]


def zero_priced(recs: pd.DataFrame) -> list[str]:
    """Rows with an hourly cost that is zero, negative or missing: a price that was never found."""
    bad = ~(recs[_PRICE_COLUMNS].apply(pd.to_numeric, errors="coerce") > 0)
    rows = bad.any(axis=1)
    return [
        f"{iid}: {', '.join(c for c in _PRICE_COLUMNS if flags[c])}"
        for iid, flags in zip(recs.loc[rows, "instance_id"], bad[rows].to_dict("records"))
    ]
