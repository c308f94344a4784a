"""Reserved Instances and Savings Plans: the AWS responses parsed, the allocation as AWS applies it, and the
change of the fleet's hourly bill that makes a move's net savings.

Allocation, per hour, within a pool of commitments (one account, or a billing family that shares them):

1. zonal RIs cover running on-demand instances of their exact type, platform and AZ ID;
2. regional RIs: Linux/UNIX, shared tenancy, with a normalization factor (nano 0.25 … xlarge 8, Nxlarge 8N) are
   size-flexible within their family and region, applied from the smallest size up (as AWS does); other regional
   RIs (Windows, metal sizes) cover their exact type in any AZ of the region;
3. EC2 Instance Savings Plans (family + region), then 4. Compute Savings Plans (any family, any region), each plan
   in turn (by id), its $/h commitment spent at the plan's own rate on the eligible usage with the highest
   discount against on-demand first; coverage may be fractional.

What a commitment covers is paid for whatever happens (RI fees, SP commitments): the part of the bill a move
changes is the uncovered on-demand usage, `Σ remaining units × on-demand $/h`. The net saving of moving one
instance is that bill with it minus the bill without it (the freed commitment covering whatever then takes it),
minus the spot cost it moves to. Identical instances (same pool, region, AZ ID, type, platform) are
interchangeable to the bill, so the work is per shape: one row of a matrix per evaluated change, one column per
shape, each stage a cumulative sum along the columns. A shape that keeps at least one uncovered unit saves its
full on-demand price when one instance leaves (no commitment moves), so only covered shapes need a row.
Instance tenancy is not discovered: instances count as shared tenancy, so dedicated RIs match nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
from botocore.exceptions import ClientError

from spot_pipelines.core.aws_errors import error_code
from spot_pipelines.core.clock import utcnow
from spot_pipelines.core.errors import ValidationError

HOURS_PER_MONTH = 730.0
LINUX, WINDOWS = "Linux/UNIX", "Windows"
ZONAL, REGIONAL = "Availability Zone", "Region"
EC2_INSTANCE_SP, COMPUTE_SP = "EC2Instance", "Compute"
NF_BY_SIZE = {"nano": 0.25, "micro": 0.5, "small": 1.0, "medium": 2.0, "large": 4.0, "xlarge": 8.0}
RI_COLUMNS = [
    "commitment_id",
    "account_id",
    "region",
    "scope",
    "availability_zone_id",
    "instance_type",
    "product_description",
    "tenancy",
    "instance_count",
    "offering_class",
    "start",
    "end",
    "usd_per_hour",  # effective $/h of one reserved instance: upfront amortized over the term + hourly charges
]
SP_COLUMNS = [
    "commitment_id",
    "account_id",
    "plan_type",
    "region",
    "instance_family",
    "commitment_usd_per_hour",
    "term_years",
    "start",
    "end",
]
RATE_COLUMNS = ["commitment_id", "region", "instance_type", "product_description", "usd_per_hour"]
# States that cover usage now; the others (queued, retired, payment-failed, returned …) are skipped and counted.
ACTIVE = "active"


# --------------------------------------------------------------------------- parsing AWS responses


@dataclass
class Parsed:
    rows: list[dict]
    skipped: list[str] = field(default_factory=list)  # one line per commitment not used, saying why


def _field(item: Mapping, key: str, where: str):
    if not isinstance(item, Mapping) or item.get(key) in (None, ""):
        raise ValidationError(f"{where}.{key}", "missing from the response")
    return item[key]


def _number(item: Mapping, key: str, where: str) -> float:
    value = _field(item, key, where)
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValidationError(f"{where}.{key}", f"not a number: {str(value)[:40]!r}") from None
    if not np.isfinite(number) or number < 0:
        raise ValidationError(f"{where}.{key}", f"must be a non-negative number, got {number}")
    return number


def _time(item: Mapping, key: str, where: str) -> datetime:
    value = _field(item, key, where)
    if isinstance(value, datetime):
        return value
    try:
        return pd.Timestamp(value).to_pydatetime()
    except (TypeError, ValueError):
        raise ValidationError(f"{where}.{key}", f"not a timestamp: {str(value)[:40]!r}") from None


def platform_of(product_description: str) -> str:
    """'Linux/UNIX (Amazon VPC)' → 'Linux/UNIX', 'Windows (Amazon VPC)' → 'Windows'; others (RHEL, SUSE,
    Windows with SQL Server) stay as they are and match no discovered instance's platform."""
    text = str(product_description)
    for platform in (LINUX, WINDOWS):
        if text == platform or text == f"{platform} (Amazon VPC)":
            return platform
    return text


def parse_reserved_instances(
    items: Iterable[Mapping], *, account_id: int, region: str, zone_ids: Mapping[str, str], now: datetime
) -> Parsed:
    """DescribeReservedInstances' `ReservedInstances` of one region → RI rows (active, not yet ended)."""
    out = Parsed([])
    for i, ri in enumerate(items):
        where = f"DescribeReservedInstances({region}).ReservedInstances[{i}]"
        rid = _field(ri, "ReservedInstancesId", where)
        state, end = _field(ri, "State", where), _time(ri, "End", where)
        if state != ACTIVE or end <= now:
            out.skipped.append(f"RI {rid}: {state if state != ACTIVE else 'expired'}, covers nothing")
            continue
        count = _number(ri, "InstanceCount", where)
        scope = ri.get("Scope") or REGIONAL
        zone = None
        if scope == ZONAL:
            zone = ri.get("AvailabilityZoneId") or zone_ids.get(_field(ri, "AvailabilityZone", where))
            if zone is None:
                out.skipped.append(f"RI {rid}: AZ {ri['AvailabilityZone']} has no known AZ ID in {region}")
                continue
        hourly = _number(ri, "UsagePrice", where) if ri.get("UsagePrice") is not None else 0.0
        hourly += sum(_number(c, "Amount", f"{where}.RecurringCharges") for c in ri.get("RecurringCharges") or [])
        duration_h = _number(ri, "Duration", where) / 3600
        usd = (_number(ri, "FixedPrice", where) if ri.get("FixedPrice") is not None else 0.0) / max(duration_h, 1)
        currency = ri.get("CurrencyCode") or "USD"
        if currency != "USD":
            # Its coverage still counts (units, not dollars); only its own price is unknown in USD.
            out.skipped.append(f"RI {rid}: priced in {currency}, not USD: its effective rate is not shown")
        out.rows.append(
            {
                "commitment_id": rid,
                "account_id": account_id,
                "region": region,
                "scope": scope,
                "availability_zone_id": zone,
                "instance_type": _field(ri, "InstanceType", where),
                "product_description": platform_of(_field(ri, "ProductDescription", where)),
                "tenancy": ri.get("InstanceTenancy") or "default",
                "instance_count": int(count),
                "offering_class": ri.get("OfferingClass") or "standard",
                "start": _time(ri, "Start", where) if ri.get("Start") else None,
                "end": end,
                "usd_per_hour": round(usd + hourly, 6) if currency == "USD" else None,
            }
        )
    return out


def parse_savings_plans(items: Iterable[Mapping], *, account_id: int, now: datetime) -> Parsed:
    """DescribeSavingsPlans' `savingsPlans` → SP rows (active EC2-applicable plans in USD)."""
    out = Parsed([])
    for i, sp in enumerate(items):
        where = f"DescribeSavingsPlans.savingsPlans[{i}]"
        pid = _field(sp, "savingsPlanId", where)
        state, end = _field(sp, "state", where), _time(sp, "end", where)
        plan_type = _field(sp, "savingsPlanType", where)
        currency = sp.get("currency") or "USD"
        if state != ACTIVE or end <= now:
            out.skipped.append(f"Savings Plan {pid}: {state if state != ACTIVE else 'expired'}, covers nothing")
            continue
        if plan_type not in (EC2_INSTANCE_SP, COMPUTE_SP):
            out.skipped.append(f"Savings Plan {pid}: {plan_type} plans cover no EC2 usage")
            continue
        commitment = _number(sp, "commitment", where)
        if currency != "USD":
            out.skipped.append(
                f"Savings Plan {pid}: commitment in {currency}, not USD: not compared with USD prices, not applied"
            )
            continue
        if plan_type == EC2_INSTANCE_SP:
            _field(sp, "ec2InstanceFamily", where)
            _field(sp, "region", where)
        out.rows.append(
            {
                "commitment_id": pid,
                "account_id": account_id,
                "plan_type": plan_type,
                "region": sp.get("region") if plan_type == EC2_INSTANCE_SP else None,
                "instance_family": sp.get("ec2InstanceFamily") if plan_type == EC2_INSTANCE_SP else None,
                "commitment_usd_per_hour": commitment,
                "term_years": round(_number(sp, "termDurationInSeconds", where) / (365 * 86400), 1),
                "start": _time(sp, "start", where) if sp.get("start") else None,
                "end": end,
            }
        )
    return out


def parse_savings_plan_rates(plan_id: str, results: Iterable[Mapping]) -> Parsed:
    """DescribeSavingsPlanRates' `searchResults` → per-hour EC2 rates in shared tenancy (Linux, Windows)."""
    out = Parsed([])
    for i, rate in enumerate(results):
        where = f"DescribeSavingsPlanRates({plan_id}).searchResults[{i}]"
        if rate.get("productType", "EC2") != "EC2" or rate.get("unit", "Hrs") != "Hrs":
            continue
        props = {p.get("name"): p.get("value") for p in _field(rate, "properties", where) if isinstance(p, Mapping)}
        if props.get("tenancy", "shared") != "shared":
            continue
        platform = platform_of(props.get("productDescription", ""))
        if platform not in (LINUX, WINDOWS):
            continue
        if (rate.get("currency") or "USD") != "USD":
            out.skipped.append(f"Savings Plan {plan_id}: a rate in {rate['currency']}, not USD, is not used")
            continue
        for key in ("region", "instanceType"):
            if not props.get(key):
                raise ValidationError(f"{where}.properties.{key}", "missing from the response")
        out.rows.append(
            {
                "commitment_id": plan_id,
                "region": props["region"],
                "instance_type": props["instanceType"],
                "product_description": platform,
                "usd_per_hour": _number(rate, "rate", where),
            }
        )
    return out


def utilization_pct(response: Mapping, kind: str) -> float | None:
    """Total utilization % of GetSavingsPlansUtilization (kind 'savings_plans') or GetReservationUtilization."""
    total = response.get("Total") or {}
    value = (total.get("Utilization") or {}).get("UtilizationPercentage") if kind == "savings_plans" else None
    value = value if value is not None else total.get("UtilizationPercentage")
    if value in (None, ""):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValidationError(f"{kind} utilization.Total.UtilizationPercentage", f"not a number: {value!r}") from None


# --------------------------------------------------------------------------- reading one account

DENIED = frozenset({"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "UnrecognizedClientException"})
UTILIZATION_DAYS = 30


@dataclass
class Fetched:
    reserved: list[dict] = field(default_factory=list)
    savings_plans: list[dict] = field(default_factory=list)
    rates: list[dict] = field(default_factory=list)
    utilization: dict[str, float] = field(default_factory=dict)  # savings_plans | reserved_instances → %
    gaps: list[str] = field(default_factory=list)  # what could not be read, and what net savings assume then
    skipped: list[str] = field(default_factory=list)  # commitments read but not applied, and why
    api_calls: int = 0


def fetch_commitments(client, regions: Iterable[str], *, account_id: int, now: datetime) -> Fetched:
    """An account's active RIs (every region), Savings Plans with their EC2 rates, and their utilization.
    `client(service, region)` returns a boto3 client. A denied permission is a stated gap, never "none";
    other AWS errors (throttling, outages) propagate, so the run fails and retries instead of storing a hole."""
    out = Fetched()
    regions = sorted(regions)

    def denied(exc: ClientError, action: str, assumption: str) -> None:
        if error_code(exc) not in DENIED:
            raise exc
        out.gaps.append(f"{action} denied ({error_code(exc)}): {assumption}")

    for region in regions:
        ec2 = client("ec2", region)
        try:
            out.api_calls += 1
            items = ec2.describe_reserved_instances().get("ReservedInstances", [])
        except ClientError as exc:
            denied(exc, f"ec2:DescribeReservedInstances in {region}", "Reserved Instances there are unknown")
            continue
        zone_ids = {}
        if any(i.get("Scope") == ZONAL and not i.get("AvailabilityZoneId") for i in items):
            out.api_calls += 1
            zones = ec2.describe_availability_zones().get("AvailabilityZones", [])
            zone_ids = {z["ZoneName"]: z["ZoneId"] for z in zones if z.get("ZoneName") and z.get("ZoneId")}
        parsed = parse_reserved_instances(items, account_id=account_id, region=region, zone_ids=zone_ids, now=now)
        out.reserved += parsed.rows
        out.skipped += parsed.skipped
    sp = client("savingsplans", None)
    try:
        plans = _pages(sp.describe_savings_plans, "savingsPlans", out)
    except ClientError as exc:
        denied(exc, "savingsplans:DescribeSavingsPlans", "Savings Plans are unknown")
        plans = []
    parsed = parse_savings_plans(plans, account_id=account_id, now=now)
    out.savings_plans, out.skipped = parsed.rows, out.skipped + parsed.skipped
    filters = [
        {"name": "productType", "values": ["EC2"]},
        {"name": "tenancy", "values": ["shared"]},
        {"name": "productDescription", "values": [LINUX, WINDOWS]},
        {"name": "region", "values": regions},
    ]
    for plan in out.savings_plans:
        pid = plan["commitment_id"]
        try:
            results = _pages(sp.describe_savings_plan_rates, "searchResults", out, savingsPlanId=pid, filters=filters)
        except ClientError as exc:
            denied(
                exc, "savingsplans:DescribeSavingsPlanRates", f"Savings Plan {pid} has no known rates, covers nothing"
            )
            continue
        rates = parse_savings_plan_rates(pid, results)
        out.rates += rates.rows
        out.skipped += rates.skipped
    _utilization(client("ce", None), out, now, denied)
    return out


def _pages(call, key: str, out: Fetched, **params) -> list[dict]:
    """The savingsplans API pages by nextToken and has no paginators."""
    items, token = [], None
    while True:
        out.api_calls += 1
        page = call(**params, **({"nextToken": token} if token else {}))
        items += page.get(key) or []
        token = page.get("nextToken")
        if not token:
            return items


def _utilization(ce, out: Fetched, now: datetime, denied) -> None:
    """Cost Explorer utilization over the last 30 days, for the kinds the account holds."""
    period = {"Start": (now - timedelta(days=UTILIZATION_DAYS)).strftime("%Y-%m-%d"), "End": now.strftime("%Y-%m-%d")}
    calls = [
        ("savings_plans", out.savings_plans, ce.get_savings_plans_utilization, "ce:GetSavingsPlansUtilization"),
        ("reserved_instances", out.reserved, ce.get_reservation_utilization, "ce:GetReservationUtilization"),
    ]
    for kind, held, call, action in calls:
        if not held:
            continue
        try:
            out.api_calls += 1
            value = utilization_pct(call(TimePeriod=period), kind)
        except ClientError as exc:
            if error_code(exc) == "DataUnavailableException":
                out.gaps.append(f"{action}: Cost Explorer has no data (not enabled?): {kind} utilization unknown")
                continue
            denied(exc, action, f"{kind} utilization unknown")
            continue
        if value is not None:
            out.utilization[kind] = value


# --------------------------------------------------------------------------- the commitments in force


@dataclass(frozen=True)
class Book:
    """Commitments with their pool (the billing family that shares them), and what could not be read."""

    reserved: pd.DataFrame  # RI_COLUMNS + pool
    savings_plans: pd.DataFrame  # SP_COLUMNS + pool
    rates: pd.DataFrame  # RATE_COLUMNS
    utilization: dict[str, dict[str, float]] = field(default_factory=dict)  # pool → kind → %
    gaps: dict[str, list[str]] = field(default_factory=dict)  # pool → what could not be read

    @classmethod
    def empty(cls) -> Book:
        return cls(
            pd.DataFrame(columns=[*RI_COLUMNS, "pool"]),
            pd.DataFrame(columns=[*SP_COLUMNS, "pool"]),
            pd.DataFrame(columns=RATE_COLUMNS),
        )

    def active_at(self, at: datetime) -> Book:
        def live(frame):
            end = pd.to_datetime(frame["end"], utc=True)
            return frame[end > pd.Timestamp(at)]

        return Book(live(self.reserved), live(self.savings_plans), self.rates, self.utilization, self.gaps)


def normalization_factor(instance_type: pd.Series) -> pd.Series:
    size = instance_type.astype(str).str.split(".", n=1).str[1]
    n = pd.to_numeric(size.str.extract(r"^(\d+)xlarge$")[0], errors="coerce")
    return size.map(NF_BY_SIZE).astype(np.float64).fillna(n * 8)


def _family(instance_type: pd.Series) -> pd.Series:
    return instance_type.astype(str).str.split(".", n=1).str[0]


# --------------------------------------------------------------------------- allocation


@dataclass
class PoolAllocation:
    """One pool's shapes (columns) and the allocation of each evaluated usage row of `units`."""

    shapes: pd.DataFrame  # pool, region, availability_zone_id, instance_type, product_description, od, family, nf
    remaining: np.ndarray  # rows × shapes: uncovered units after every stage
    covered_cost: np.ndarray  # base row: $/h of commitment spent on each shape (NaN where a price is unknown)
    covered_by: list[dict[str, float]]  # base row, per shape: commitment label → units covered
    commitments: list[dict]  # per commitment group: kind, ids, used/unused $/h


@dataclass(frozen=True)
class _Stage:
    """One group of commitments applied together, in AWS's order: the columns it covers in the order it covers
    them, capacity units per unit of each column's usage, and its commitments' capacity and end."""

    kind: str
    label: str
    ids: str
    cols: np.ndarray
    weight: np.ndarray  # 1 (instances), the normalization factor (NF units) or the plan's rate ($)
    capacity: np.ndarray  # per member commitment, in capacity units
    ends: np.ndarray  # per member commitment (datetime64[ns, UTC] as int64)
    unit_price: np.ndarray  # per member: $/h per capacity unit (NaN: not known in USD)


def plan_pool(shapes: pd.DataFrame, book: Book) -> list[_Stage]:
    """The stages of one pool's allocation over its shapes (`book`: that pool's commitments). Built once; each
    allocation then only sums capacities and walks arrays."""
    stages: list[_Stage] = []
    od = shapes["od"].to_numpy(np.float64)
    nf = shapes["nf"].to_numpy(np.float64)
    region, az = shapes["region"].astype(str).to_numpy(), shapes["availability_zone_id"].astype(str).to_numpy()
    itype, platform = shapes["instance_type"].astype(str).to_numpy(), shapes["product_description"].to_numpy()
    fam = shapes["family"].astype(str).to_numpy()
    col_of = {k: i for i, k in enumerate(zip(region, az, itype, platform))}
    ri = book.reserved[book.reserved["tenancy"].astype(str) == "default"].reset_index(drop=True)
    ri_nf = normalization_factor(ri["instance_type"]).to_numpy(np.float64)
    ri_ids = ri["commitment_id"].astype(str).to_numpy()
    ri_end = _epoch(ri["end"])
    ri_price = pd.to_numeric(ri["usd_per_hour"], errors="coerce").to_numpy(np.float64)
    ri_count = ri["instance_count"].to_numpy(np.float64)

    def add(kind, rows, cols, weight, capacity, unit_price):
        ids = ", ".join(sorted(ri_ids[rows]))
        stages.append(
            _Stage(
                kind,
                f"RI {ids}",
                ids,
                np.asarray(cols, dtype=np.int64),
                np.asarray(weight, np.float64),
                np.asarray(capacity, np.float64),
                ri_end[rows],
                np.asarray(unit_price, np.float64),
            )
        )

    zonal = (ri["scope"] == ZONAL).to_numpy()
    # 1. zonal RIs: instances of the exact type and platform in the AZ ID
    for key, rows in _groups(ri, zonal, ["region", "availability_zone_id", "instance_type", "product_description"]):
        cols = [col_of[key]] if key in col_of else []
        add("zonal RI", rows, cols, np.ones(len(cols)), ri_count[rows], ri_price[rows])
    # 2. regional RIs: size-flexible ones in NF units from the smallest size up, the others by exact type
    flexible = ~zonal & (ri["product_description"] == LINUX).to_numpy() & ~np.isnan(ri_nf)
    ri = ri.assign(family=_family(ri["instance_type"]))
    for (reg, family), rows in _groups(ri, flexible, ["region", "family"]):
        cols = np.flatnonzero((region == reg) & (fam == family) & (platform == LINUX) & ~np.isnan(nf))
        cols = cols[np.lexsort((az[cols], nf[cols]))]
        add(
            "regional RI (size-flexible)",
            rows,
            cols,
            nf[cols],
            ri_count[rows] * ri_nf[rows],
            ri_price[rows] / ri_nf[rows],
        )
    for (reg, typ, plat), rows in _groups(ri, ~zonal & ~flexible, ["region", "instance_type", "product_description"]):
        cols = np.flatnonzero((region == reg) & (itype == typ) & (platform == plat))
        cols = cols[np.argsort(az[cols], kind="stable")]
        add("regional RI", rows, cols, np.ones(len(cols)), ri_count[rows], ri_price[rows])
    # 3, 4. Savings Plans, EC2 Instance plans first, each on its highest-discount usage first
    plans = book.savings_plans.assign(_o=(book.savings_plans["plan_type"] != EC2_INSTANCE_SP).astype(int))
    rate_of = _rates_by_plan(book.rates, shapes)
    for plan in plans.sort_values(["_o", "commitment_id"]).to_dict("records"):
        rate = rate_of.get(plan["commitment_id"], np.full(len(shapes), np.nan))
        eligible = rate > 0
        if plan["plan_type"] == EC2_INSTANCE_SP:
            eligible &= (region == plan["region"]) & (fam == plan["instance_family"])
        cols = np.flatnonzero(eligible)
        cols = cols[np.lexsort((cols, -(1 - rate[cols] / od[cols])))]
        kind = "EC2 Instance Savings Plan" if plan["plan_type"] == EC2_INSTANCE_SP else "Compute Savings Plan"
        pid = str(plan["commitment_id"])
        stages.append(
            _Stage(
                kind,
                f"Savings Plan {pid}",
                pid,
                cols,
                rate[cols],
                np.array([plan["commitment_usd_per_hour"]], float),
                _epoch(pd.Series([plan["end"]])),
                np.ones(1),
            )
        )
    return stages


def _live(stages: list[_Stage], at: datetime) -> bytes:
    t = pd.Timestamp(at).value
    return np.concatenate([st.ends > t for st in stages] or [np.zeros(0, bool)]).tobytes()


def _epoch(values: pd.Series) -> np.ndarray:
    return pd.to_datetime(values, utc=True).astype("int64").to_numpy()


def _groups(frame: pd.DataFrame, where: np.ndarray, keys: list[str]):
    """(key, row positions) of each group of `frame[where]` by `keys`, in key order, as groupby gives them (rows
    with a missing key in no group) without building a frame per group."""
    picked = np.flatnonzero(where)
    if not len(picked):
        return
    codes = frame.iloc[picked].groupby(keys, sort=True).ngroup().to_numpy()
    picked, codes = picked[codes >= 0], codes[codes >= 0]
    order = np.argsort(codes, kind="stable")
    values = [frame[k].to_numpy() for k in keys]
    for rows in np.split(picked[order], np.flatnonzero(np.diff(codes[order])) + 1):
        yield tuple(v[rows[0]] for v in values), rows


def run_plan(
    stages: list[_Stage], shapes: pd.DataFrame, units: np.ndarray, at: datetime | None = None, attribute: bool = True
) -> PoolAllocation:
    """Allocate each row of `units` (rows × shapes; row 0 is the base fleet, the one attribution and used/unused
    are reported for, unless `attribute` is False) with the commitments in force at `at` (None: all of them)."""
    # Shapes × rows internally: each stage gathers whole rows of columns (contiguous), not strided columns.
    R = np.array(np.asarray(units, dtype=np.float64).T, order="C")
    # How far each row's usage strays from the base row's (units, all shapes): it bounds where a stage's capacity
    # can run out in any row, so the columns past that point (no coverage in any row) are skipped.
    scenarios = R.shape[1] > 1  # one row (the base fleet alone): nothing strays, nothing to bound
    stray = np.abs(R - R[:, :1]).sum(axis=0) if scenarios else None
    cost = np.zeros(len(shapes))
    covered_by: list[dict[str, float]] = [{} for _ in range(len(shapes))]
    groups = []
    t = None if at is None else pd.Timestamp(at).value
    for st in stages:
        live = st.ends > t if t is not None else np.ones(len(st.ends), bool)
        if not live.any():
            continue
        cap = float(st.capacity[live].sum())
        price = float((st.capacity[live] * st.unit_price[live]).sum() / cap) if cap else 0.0
        used = 0.0
        cols = st.cols
        if len(cols) and scenarios:
            base = R[cols, 0] * st.weight
            reach = np.searchsorted(np.cumsum(base) - base, cap + stray.max() * st.weight.max(), side="left")
            cols = cols[:reach]
        if len(cols):
            weight = st.weight[: len(cols), None]
            if scenarios:
                before_stage = np.abs(R[cols] - R[cols, :1]).sum(axis=0)
            demand = R[cols] * weight
            before = np.cumsum(demand, axis=0)
            before -= demand
            np.subtract(cap, before, out=before)
            cov = np.clip(before, 0.0, demand, out=before)
            covered = cov / weight
            R[cols] -= covered
            if scenarios:
                stray += np.abs(R[cols] - R[cols, :1]).sum(axis=0) - before_stage
            used = float(cov[:, 0].sum())
            cost[cols] += cov[:, 0] * price
            for k in np.flatnonzero(covered[:, 0] > 1e-12) if attribute else ():
                c = cols[k]
                covered_by[c][st.label] = covered_by[c].get(st.label, 0.0) + float(covered[k, 0])
        groups.append(
            {
                "kind": st.kind,
                "commitment_ids": st.ids,
                "commitment_usd_per_hour": round(cap * price, 6),
                "used_usd_per_hour": round(used * price, 6),
                "unused_usd_per_hour": round((cap - used) * price, 6),
            }
        )
    return PoolAllocation(shapes, R.T, cost, covered_by, groups)


def allocate_pool(shapes: pd.DataFrame, units: np.ndarray, book: Book, at: datetime | None = None) -> PoolAllocation:
    """Allocate one pool's commitments (`book`, already the pool's) to each row of `units` (rows × shapes)."""
    return run_plan(plan_pool(shapes, book), shapes, units, at)


def _rates_by_plan(rates: pd.DataFrame, shapes: pd.DataFrame) -> dict[str, np.ndarray]:
    """commitment_id → the plan's $/h rate for each shape (NaN: the plan has no rate for it)."""
    if rates.empty:
        return {}
    keys = ["region", "instance_type", "product_description"]
    cols = shapes[keys].reset_index(drop=True).assign(_col=np.arange(len(shapes)))
    hit = rates.merge(cols, on=keys, how="inner")
    out = {}
    for pid, part in hit.groupby("commitment_id"):
        arr = np.full(len(shapes), np.nan)
        arr[part["_col"].to_numpy()] = part["usd_per_hour"].astype(np.float64).to_numpy()
        out[pid] = arr
    return out


# --------------------------------------------------------------------------- the fleet-bill delta

SHAPE = ["pool", "region", "availability_zone_id", "instance_type", "product_description"]


@dataclass
class Evaluation:
    changes: pd.DataFrame  # the changes + bill_change_monthly_usd, bill_change_usd_per_hour, unabsorbed_usd_per_hour,
    #                        absorbed_by (an instance the freed commitment then covers)
    coverage: pd.DataFrame  # per fleet instance: covered_fraction, effective_hourly_cost, covered_by
    commitments: pd.DataFrame  # per pool and commitment group: used / unused $/h now
    segments: list[tuple[datetime, float]]  # (start, hours) of each stretch with one set of commitments


def evaluate(
    fleet: pd.DataFrame, changes: pd.DataFrame, book: Book, now: datetime, hours: float = HOURS_PER_MONTH
) -> Evaluation:
    """The change of the pool's on-demand bill for each change, one at a time, over the next `hours`.

    `fleet`: the running on-demand instances (SHAPE, instance_id, od = on-demand $/h). `changes`: SHAPE,
    instance_id, od, delta (-1: leaves on-demand, e.g. moves to spot; +1: joins it, e.g. returns from spot).
    Commitments ending within the window count until they end: the window is cut at each end."""
    end_of_window = now + timedelta(hours=hours)
    ends = [e for f in (book.reserved, book.savings_plans) for e in pd.to_datetime(f["end"], utc=True)]
    ends = sorted({e.to_pydatetime() for e in ends if now < e < end_of_window})
    bounds = [now, *ends, end_of_window]
    segments = [(a, (b - a).total_seconds() / 3600) for a, b in zip(bounds, bounds[1:]) if b > a]
    changes = changes.reset_index(drop=True)
    monthly = np.zeros(len(changes))
    hourly_now = np.zeros(len(changes))
    absorbed = np.full(len(changes), None, dtype=object)
    coverage, commitments = [], []
    # A pool holding no commitment needs no allocation: each change moves the bill by its on-demand price.
    held = {str(p) for f in (book.reserved, book.savings_plans) for p in f["pool"]}
    free = ~changes["pool"].astype(str).isin(held).to_numpy()
    monthly[free] = changes["delta"].to_numpy()[free] * changes["od"].to_numpy()[free] * hours
    hourly_now[free] = changes["delta"].to_numpy()[free] * changes["od"].to_numpy()[free]
    committed = fleet["pool"].astype(str).isin(held).to_numpy()
    uncommitted = fleet[~committed]
    coverage.append(
        pd.DataFrame(
            {
                "pool": uncommitted["pool"].to_numpy(),
                "instance_id": uncommitted["instance_id"].to_numpy(),
                "covered_fraction": 0.0,
                "effective_hourly_cost": uncommitted["od"].astype(np.float64).round(6).to_numpy(),
                "covered_by": None,
            }
        )
    )
    fleet, changes_held = fleet[committed], changes[~free]
    fleet_shapes = fleet.groupby(SHAPE, dropna=False, sort=True).agg(od=("od", "max"), n=("instance_id", "size"))
    change_shapes = changes_held.groupby(SHAPE, dropna=False).agg(od=("od", "max")).assign(n=0)
    all_shapes = pd.concat([fleet_shapes, change_shapes[~change_shapes.index.isin(fleet_shapes.index)]])
    all_shapes = all_shapes.reset_index()
    for pool, shapes in all_shapes.groupby("pool", sort=True):
        shapes = shapes.reset_index(drop=True).assign(
            family=lambda f: _family(f["instance_type"]), nf=lambda f: normalization_factor(f["instance_type"])
        )
        col = pd.MultiIndex.from_frame(shapes[SHAPE].astype(str)).get_indexer(
            pd.MultiIndex.from_frame(changes[SHAPE].astype(str))
        )
        mine = np.flatnonzero(changes["pool"].astype(str).to_numpy() == str(pool))
        col, delta = col[mine], changes["delta"].to_numpy()[mine]
        base = shapes["n"].to_numpy(np.float64)
        od = shapes["od"].to_numpy(np.float64)
        members = _members(fleet[fleet["pool"].astype(str) == str(pool)], shapes)
        stages = plan_pool(shapes, _of_pool(book, pool))
        seen: dict[bytes, np.ndarray] = {}  # the pool's live commitments → the changes' bill change
        for k, (start, seg_hours) in enumerate(segments):
            live = _live(stages, start)
            if live in seen:  # what ended since belonged to other pools: same allocation as before
                monthly[mine] += seen[live] * seg_hours
                continue
            alloc = run_plan(stages, shapes, base[None, :], start)
            rest = alloc.remaining[0]
            # Only a change that moves commitments needs its own allocation: leaving from a shape with an uncovered
            # unit, or joining one with some uncovered usage, changes the bill by exactly the on-demand price.
            moves_commitment = np.where(delta < 0, rest[col] < 1 - 1e-9, rest[col] <= 1e-9)
            rows = sorted(set(zip(col[moves_commitment].tolist(), delta[moves_commitment].tolist())))
            change = delta * od[col]
            if rows:
                units = np.repeat(base[None, :], len(rows) + 1, axis=0)
                for r, (c, d) in enumerate(rows, start=1):
                    units[r, c] += d
                scen = run_plan(stages, shapes, units, start, attribute=False)
                # Not `@`: a BLAS call here wakes OpenBLAS's threads, which then spin against this one on a
                # small machine (the net recommend ran 1.6x slower with them).
                bills = np.einsum("rs,s->r", scen.remaining, od)
                index = {key: r for r, key in enumerate(rows, start=1)}
                which = [index[(c, d)] for c, d in zip(col[moves_commitment].tolist(), delta[moves_commitment])]
                change[moves_commitment] = bills[which] - bills[0]
                if k == 0:
                    freed = (scen.remaining[0][None, :] - scen.remaining[which]) * od[None, :]
                    freed[np.arange(len(which)), col[moves_commitment]] = 0.0
                    best = freed.argmax(axis=1)
                    takers = np.where(freed.max(axis=1) > 1e-9, best, -1)
                    taker_ids = _first_uncovered(members, shapes, rest)
                    absorbed[mine[moves_commitment]] = np.where(takers >= 0, taker_ids[takers], None)
            seen[live] = change
            monthly[mine] += change * seg_hours
            if k == 0:
                hourly_now[mine] = change
                coverage.append(_coverage(members, shapes, alloc))
                # A covered instance leaving a shape with uncovered units: one of those takes its commitment.
                fraction = coverage[-1].set_index("instance_id")["covered_fraction"]
                own = changes["instance_id"].iloc[mine].map(fraction).fillna(0.0).to_numpy()
                same = np.flatnonzero((delta < 0) & (own > 0) & (rest[col] > 1e-9) & ~moves_commitment)
                absorbed[mine[same]] = _first_uncovered(members, shapes, rest)[col[same]]
                commitments += [{"pool": pool, **g} for g in alloc.commitments]
    out = changes.assign(
        bill_change_monthly_usd=monthly,
        bill_change_usd_per_hour=hourly_now,
        # What leaving frees that no other usage absorbs ($/h, priced at the leaving shape's on-demand rate).
        unabsorbed_usd_per_hour=np.where(changes["delta"] < 0, changes["od"] + hourly_now, 0.0),
        absorbed_by=absorbed,
    )
    cov = pd.concat(coverage, ignore_index=True) if coverage else pd.DataFrame(columns=COVERAGE_COLUMNS)
    groups = pd.DataFrame(commitments, columns=COMMITMENT_GROUP_COLUMNS)
    return Evaluation(out, cov, groups, segments)


COVERAGE_COLUMNS = ["pool", "instance_id", "covered_fraction", "effective_hourly_cost", "covered_by"]
COMMITMENT_GROUP_COLUMNS = [
    "pool",
    "kind",
    "commitment_ids",
    "commitment_usd_per_hour",
    "used_usd_per_hour",
    "unused_usd_per_hour",
]


def _of_pool(book: Book, pool) -> Book:
    return Book(
        book.reserved[book.reserved["pool"].astype(str) == str(pool)],
        book.savings_plans[book.savings_plans["pool"].astype(str) == str(pool)],
        book.rates,
        book.utilization,
        book.gaps,
    )


def _members(fleet: pd.DataFrame, shapes: pd.DataFrame) -> pd.DataFrame:
    """The fleet's instances with their shape's column, in instance id order within a shape."""
    col = pd.MultiIndex.from_frame(shapes[SHAPE].astype(str)).get_indexer(
        pd.MultiIndex.from_frame(fleet[SHAPE].astype(str))
    )
    return fleet.assign(_col=col)[col >= 0].sort_values(["_col", "instance_id"])


def _coverage(members: pd.DataFrame, shapes: pd.DataFrame, alloc: PoolAllocation) -> pd.DataFrame:
    """AWS applies a commitment to matching usage, not to a named instance: the covered units of a shape go to its
    instances in id order (whole instances first), which only decides which one is shown as covered."""
    c = members["_col"].to_numpy()
    position = members.groupby("_col").cumcount().to_numpy()
    covered_units = shapes["n"].to_numpy(np.float64) - alloc.remaining[0]
    fraction = np.clip(covered_units[c] - position, 0.0, 1.0).round(6)
    od = shapes["od"].to_numpy(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        unit_cost = np.where(covered_units > 1e-12, alloc.covered_cost / covered_units, 0.0)
    labels = ["; ".join(sorted(d)) for d in alloc.covered_by]
    return pd.DataFrame(
        {
            "pool": members["pool"].to_numpy(),
            "instance_id": members["instance_id"].to_numpy(),
            "covered_fraction": fraction,
            "effective_hourly_cost": ((1 - fraction) * od[c] + fraction * unit_cost[c]).round(6),
            "covered_by": [labels[k] if f > 0 else None for k, f in zip(c, fraction)],
        }
    )


def _first_uncovered(members: pd.DataFrame, shapes: pd.DataFrame, rest: np.ndarray) -> np.ndarray:
    """Per shape, an instance that is (at least partly) uncovered now, the one a freed commitment would cover
    (None: the shape has no running instance)."""
    cols = members["_col"].to_numpy()
    ids = members["instance_id"].to_numpy()
    start = np.searchsorted(cols, np.arange(len(shapes)))
    count = np.bincount(cols, minlength=len(shapes))
    covered = np.floor(shapes["n"].to_numpy(np.float64) - rest + 1e-9).astype(np.int64)
    pick = start + np.clip(covered, 0, np.maximum(count - 1, 0))
    out = np.full(len(shapes), None, dtype=object)
    has = count > 0
    out[has] = ids[pick[has]]
    return out


# --------------------------------------------------------------------------- recommendations

UNDER_USED_PCT = 95.0


@dataclass(frozen=True)
class InForce:
    """What the recommender needs: the commitments, which pool each account draws on, and the time."""

    book: Book
    pools: Mapping[int, str]
    now: datetime

    @classmethod
    def none(cls) -> InForce:
        return cls(Book.empty(), {}, utcnow())

    def pool_of(self, account_id) -> str:
        return self.pools.get(account_id, f"account:{account_id}")


def pool_label(pool: str, names: Mapping[int, str]) -> str:
    """A pool key for people: 'account:3' (an account's own pool) by the account's name, 'family:x' as the
    billing family it is."""
    kind, _, key = pool.partition(":")
    if kind == "account" and key.isdigit():
        return f"account {names.get(int(key), key)}"
    return f"billing family {key}" if kind == "family" else pool


def one_year_rates(book: Book) -> pd.Series:
    """(pool, region, instance_type, product_description) → the lowest 1-year Savings Plan rate the pool holds."""
    plans = book.savings_plans[book.savings_plans["term_years"].astype(float).round() == 1]
    keyed = book.rates.merge(plans[["commitment_id", "pool"]], on="commitment_id")
    return keyed.groupby(["pool", "region", "instance_type", "product_description"])["usd_per_hour"].min()


def notes(rows: pd.DataFrame, commitments: InForce, restart_usd: float, restart_on_demand_hours: float) -> pd.Series:
    """What commitments add to each recommendation's reason, in words ('' when nothing)."""
    rates = one_year_rates(commitments.book).to_dict()
    book = commitments.book

    def text(r) -> str:
        out = ""
        pct, net, lst = r["commitment_covered_fraction"], r["net_monthly_savings_usd"], r["list_monthly_savings_usd"]
        money = f"net ${net:,.0f}/month (list ${lst:,.0f})"
        unused = r["unabsorbed_usd_per_hour"] if pd.notna(r["unabsorbed_usd_per_hour"]) else 0.0
        leaving = r["lifecycle"] != "spot" and r["action"] in ("move_to_spot", "diversify")
        if r["kept_by_commitments"]:
            out = (
                f": {pct:.0%} covered by {r['covered_by']}; moving it would leave ${unused:.4f}/h of it unused; {money}"
            )
        elif leaving and pct > 0:
            out = f"; {pct:.0%} covered by {r['covered_by']}"
            if isinstance(r["absorbed_by"], str):
                out += f": the freed commitment covers {r['absorbed_by']} instead"
            if unused > 5e-5:
                out += f"; ${unused:.4f}/h of it would go unused"
            out += f"; {money}"
        elif abs(net - lst) >= 0.5:
            out = f"; {money} against the bill under the pool's commitments"
        if leaving and not r["kept_by_commitments"]:
            key = (r["pool"], r["region"], r["instance_type"], r["product_description"])
            out += _break_even(rates.get(key), r, restart_usd + restart_on_demand_hours * r["on_demand_hourly_cost"])
        used = book.utilization.get(r["pool"], {})
        low = {k: v for k, v in used.items() if v < UNDER_USED_PCT}
        if low:
            kind, value = min(low.items(), key=lambda kv: kv[1])
            out += f"; the pool's {kind.replace('_', ' ')} already run at {value:.0f}% utilization (Cost Explorer, 30 days)"
        gaps = book.gaps.get(r["pool"], [])
        if gaps:
            more = f" (and {len(gaps) - 1} more)" if len(gaps) > 1 else ""
            out += f"; net savings assume what could be read: {gaps[0]}{more}"
        return out

    # Only rows whose pool holds, measures or misses something, or whose net differs from list, get words.
    pools = {key[0] for key in rates} | set(book.utilization) | {p for p, g in book.gaps.items() if g}
    worded = (
        rows["kept_by_commitments"].astype(bool)
        | (rows["commitment_covered_fraction"] > 0)
        | ((rows["net_monthly_savings_usd"] - rows["list_monthly_savings_usd"]).abs() >= 0.5)
        | rows["pool"].isin(pools)
    )
    out = pd.Series("", index=rows.index, dtype=object)
    # Only the columns text() reads: to_dict boxes every value, and the rows carry many more.
    out[worded] = [text(r) for r in rows.loc[worded, NOTE_COLUMNS].to_dict("records")]
    return out


NOTE_COLUMNS = [
    "action",
    "lifecycle",
    "pool",
    "region",
    "instance_type",
    "product_description",
    "kept_by_commitments",
    "commitment_covered_fraction",
    "covered_by",
    "absorbed_by",
    "unabsorbed_usd_per_hour",
    "net_monthly_savings_usd",
    "list_monthly_savings_usd",
    "on_demand_hourly_cost",
    "target_spot_price",
    "p_interruption",
]


def _break_even(rate: float | None, r: Mapping, restart: float) -> str:
    """At what P(interruption/day) a 1-year Savings Plan for this shape would cost less than the spot move."""
    spot = r.get("target_spot_price")
    if rate is None or spot is None or pd.isna(spot) or restart <= 0:
        return ""
    p_hour = (rate - spot) / restart
    if p_hour <= 0:
        return f"; a 1-year Savings Plan at ${rate:.4f}/h costs less than this spot market even without interruptions"
    if p_hour >= 1:
        return ""
    p_day = 1 - (1 - p_hour) ** 24
    return (
        f"; a 1-year Savings Plan at ${rate:.4f}/h beats spot above P(interruption/day) {p_day:.1%} "
        f"(forecast {r['p_interruption']:.1%})"
    )
