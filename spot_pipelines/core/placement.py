"""Spot placement scores (ec2:GetSpotPlacementScores) per AZ ID for each fleet shape's candidate set.

A request configuration is (region, the shape's candidate instance types, target capacity = the shape's instance
count in the region). AWS scores the whole set per AZ ID from 1 to 10; a market (type, AZ ID) takes the best
score of the newest configurations that hold its type. Nothing is fabricated: an AZ AWS did not score has no
row, and a configuration AWS refused (throttling, the 24 h limit on new configurations) has no scores, only a
status saying why.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
from botocore.exceptions import BotoCoreError, ClientError

from spot_pipelines.core.errors import ValidationError

MIN_TYPES = 3  # AWS returns a low score for fewer than three instance types
SCORE_COLUMNS = [
    "config_key",
    "region",
    "availability_zone_id",
    "instance_types",
    "target_capacity",
    "score",
    "fetched_at",
]
CONFIG_LIMIT = "MaxConfigLimitExceeded"
THROTTLED = {"RequestLimitExceeded", "Throttling", "ThrottlingException"}


@dataclass(frozen=True)
class PlacementConfig:
    max_types: int = 5  # candidate types per request, the shape's own type included
    cache_minutes: float = 10.0  # a configuration fetched this recently is not asked again

    def __post_init__(self):
        if self.max_types < MIN_TYPES:
            raise ValidationError("max_types", f"must be at least {MIN_TYPES}, got {self.max_types}")
        if self.cache_minutes < 10:
            raise ValidationError("cache_minutes", f"must be at least 10, got {self.cache_minutes}")


@dataclass(frozen=True)
class Request:
    region: str
    instance_types: tuple[str, ...]
    target_capacity: int

    @property
    def key(self) -> str:
        text = f"{self.region}|{','.join(self.instance_types)}|{self.target_capacity}"
        return hashlib.sha256(text.encode()).hexdigest()[:32]


def requests(fleet: pd.DataFrame, pairs: pd.DataFrame, markets: pd.DataFrame, config: PlacementConfig):
    """One request per (region, instance type) of the fleet: its own type and its cheapest compatible types
    (from core.optimization.compatible_markets' `fleet`, `pairs` and the `markets` they index, cheapest spot price
    first), target capacity = its instances in the region. Returns (requests, skipped shapes with why)."""
    typed = pairs.merge(fleet[["shape_id", "region", "instance_type"]].drop_duplicates("shape_id"), on="shape_id")
    typed = typed.assign(
        candidate=markets["instance_type"].to_numpy()[typed["market"].to_numpy()],
        price=markets["spot_price"].to_numpy(np.float64)[typed["market"].to_numpy()]
        if "spot_price" in markets.columns
        else 0.0,
    )
    counts = fleet.groupby(["region", "instance_type"]).size()
    out, skipped = [], []
    for (region, itype), group in typed.groupby(["region", "instance_type"], sort=True):
        others = group[group["candidate"] != itype].sort_values(["price", "candidate"])["candidate"]
        types = tuple(sorted({itype, *others.drop_duplicates().head(config.max_types - 1)}))
        if len(types) < MIN_TYPES:
            skipped.append(
                {
                    "what": f"{itype} in {region}",
                    "reason": f"only {len(types)} compatible instance type(s): a placement score needs at least "
                    f"{MIN_TYPES} (AWS scores fewer low)",
                }
            )
            continue
        out.append(Request(region, types, int(counts[(region, itype)])))
    for (region, itype), _ in counts.items():
        if not ((typed["region"] == region) & (typed["instance_type"] == itype)).any():
            skipped.append({"what": f"{itype} in {region}", "reason": "no compatible spot market is priced"})
    return out, pd.DataFrame(skipped, columns=["what", "reason"])


@dataclass
class Collected:
    scores: pd.DataFrame  # SCORE_COLUMNS: fetched now or reused from the cache
    statuses: list[dict] = field(default_factory=list)  # config_key, region, instance_types, status, detail


def collect(
    wanted: Iterable[Request],
    ec2_for: Callable[[str], object],
    cached: pd.DataFrame,
    used_24h: set[str],
    *,
    now: datetime,
    config: PlacementConfig = PlacementConfig(),
) -> Collected:
    """Scores for every wanted request: stored ones fetched within `cache_minutes` are reused; the rest are asked
    of AWS. After AWS refuses a new configuration for the 24 h limit, only configurations used in the last 24 h
    (`used_24h`) are still asked."""
    fresh_after = now - timedelta(minutes=config.cache_minutes)
    recent = cached[cached["fetched_at"] >= fresh_after] if len(cached) else cached
    frames, statuses, limited = [], [], False
    for req in wanted:
        base = {"config_key": req.key, "region": req.region, "instance_types": ",".join(req.instance_types)}
        hit = recent[recent["config_key"] == req.key] if len(recent) else recent
        if len(hit):
            frames.append(hit[SCORE_COLUMNS])
            statuses.append(base | {"status": "cached", "detail": f"fetched {hit['fetched_at'].max():%H:%M} UTC"})
            continue
        if limited and req.key not in used_24h:
            statuses.append(
                base
                | {
                    "status": "config_limit",
                    "detail": "not asked: AWS refused new configurations for 24 h (only ones used within 24 h work)",
                }
            )
            continue
        try:
            rows = fetch(ec2_for(req.region), req)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code == CONFIG_LIMIT:
                limited = True
                status = "config_limit"
                detail = "AWS refused a new request configuration (limit per 24 h): no score, none invented"
            elif code in THROTTLED:
                status, detail = "throttled", f"{code} after botocore's retries: no score this run"
            else:
                status, detail = "error", f"{code}: {exc.response.get('Error', {}).get('Message', '')}"
            statuses.append(base | {"status": status, "detail": detail})
            continue
        except BotoCoreError as exc:
            statuses.append(base | {"status": "error", "detail": f"{type(exc).__name__}: {exc}"})
            continue
        scored = pd.DataFrame(rows, columns=["region", "availability_zone_id", "score"]).assign(
            config_key=req.key,
            instance_types=",".join(req.instance_types),
            target_capacity=req.target_capacity,
            fetched_at=now,
        )
        frames.append(scored[SCORE_COLUMNS])
        statuses.append(base | {"status": "fetched", "detail": f"{len(scored)} AZ ID(s) scored"})
    scores = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=SCORE_COLUMNS)
    return Collected(scores, statuses)


def fetch(ec2, req: Request) -> list[dict]:
    """GetSpotPlacementScores at AZ level for one configuration, through the paginator; AZs AWS did not score
    have no row."""
    rows = []
    pages = ec2.get_paginator("get_spot_placement_scores").paginate(
        InstanceTypes=list(req.instance_types),
        TargetCapacity=req.target_capacity,
        TargetCapacityUnitType="units",
        SingleAvailabilityZone=True,
        RegionNames=[req.region],
    )
    for page in pages:
        for s in page.get("SpotPlacementScores", []):
            if s.get("AvailabilityZoneId") and s.get("Score") is not None:
                rows.append(
                    {
                        "region": s.get("Region", req.region),
                        "availability_zone_id": s["AvailabilityZoneId"],
                        "score": int(s["Score"]),
                    }
                )
    return rows


def market_scores(scores: pd.DataFrame, by: Sequence[str] = ()) -> pd.DataFrame:
    """region, availability_zone_id, instance_type (then `by`), placement_score: the best score of the
    configurations holding the type in that AZ ID."""
    key = ["region", "availability_zone_id", "instance_type", *by]
    if scores.empty:
        return pd.DataFrame(columns=[*key, "placement_score"])
    exploded = scores.assign(instance_type=scores["instance_types"].str.split(",")).explode("instance_type")
    return exploded.groupby(key, as_index=False)["score"].max().rename(columns={"score": "placement_score"})


def with_placement_scores(markets: pd.DataFrame, scores: pd.DataFrame) -> pd.DataFrame:
    """`markets` with `placement_score` (NaN: AWS gave none) once any score is stored; unchanged before."""
    if scores.empty:
        return markets
    key = ["region", "availability_zone_id", "instance_type"]
    return markets.drop(columns="placement_score", errors="ignore").merge(market_scores(scores), on=key, how="left")
