"""Market data from AWS: spot price history, on-demand prices (Price List) and the Spot Advisor.

Plain functions over boto3 clients and bytes; no Dagster and no database here. Every problem is
reported with the region and instance type it concerns, and bad input never raises past the
region (or item) it belongs to.
"""

from __future__ import annotations

import json
import math
import re
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from typing import Any

import pandas as pd
from botocore.exceptions import BotoCoreError, ClientError

from spot_pipelines.core.aws_errors import REGION_SKIP_ERRORS, describe, error_code, is_permanent
from spot_pipelines.core.bundled_data import BUNDLED_ADVISOR, bundled_on_demand_rows
from spot_pipelines.core.discovery import resolve_regions
from spot_pipelines.core.errors import ValidationError

# Capture dates of the bundled snapshots (see data/PROVENANCE.md): their rows carry these as `as_of`.
BUNDLED_ON_DEMAND_AS_OF = datetime(2026, 7, 20, tzinfo=timezone.utc)

ADVISOR_FEED_URL = "https://spot-bid-advisor.s3.amazonaws.com/spot-advisor-data.json"
# The Price List API is served from a few regions only; us-east-1 answers for every region's prices.
PRICE_LIST_REGION = "us-east-1"
DEFAULT_PRODUCTS = ("Linux/UNIX",)
PAGE_SIZE = 1000
PRICE_LIST_PAGE_SIZE = 100
MAX_REGION_WORKERS = 8
KNOWN_BANDS = range(0, 5)  # the feed's `ranges`: <5 %, 5-10 %, 10-15 %, 15-20 %, >20 %
ADVISOR_OPERATING_SYSTEMS = ("Linux", "Windows")

SPOT_PRICE_COLUMNS = [
    "day",
    "ts",
    "region",
    "availability_zone",
    "availability_zone_id",
    "instance_type",
    "product_description",
    "price",
    "is_day_open",
]


# ---------------------------------------------------------------------------------------------
# spot price history
# ---------------------------------------------------------------------------------------------


def day_window(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time(0), tzinfo=timezone.utc)
    return start, start + timedelta(days=1)


@dataclass
class HistoryFetch:
    """One day of spot prices across regions, with what was skipped or failed and why."""

    day: date
    rows: pd.DataFrame
    fetched_regions: list[str] = field(default_factory=list)
    skipped_regions: dict[str, str] = field(default_factory=dict)  # region -> reason (not enabled…)
    failed_regions: dict[str, str] = field(default_factory=dict)  # region -> cause (throttled, bad data)
    no_prices: dict[str, list[str]] = field(default_factory=dict)  # region -> requested types without a price
    bad_data_regions: set[str] = field(default_factory=set)  # failed on bad input: retrying will not help
    api_calls: int = 0


def empty_history() -> pd.DataFrame:
    return pd.DataFrame(
        {
            c: pd.Series(dtype=t)
            for c, t in [
                ("day", "object"),
                ("ts", "datetime64[ns, UTC]"),
                ("region", "object"),
                ("availability_zone", "object"),
                ("availability_zone_id", "object"),
                ("instance_type", "object"),
                ("product_description", "object"),
                ("price", "float64"),
                ("is_day_open", "bool"),
            ]
        }
    )


def parse_price(raw: Any, *, region: str, instance_type: str, zone: str, ts: Any) -> float:
    """A SpotPrice string as a float; ValidationError naming the record when it is not a number."""
    try:
        price = float(raw)
    except (TypeError, ValueError):
        price = math.nan
    if not math.isfinite(price):
        raise ValidationError(
            "SpotPrice", f"{raw!r} is not a price (region {region}, type {instance_type}, zone {zone}, timestamp {ts})"
        )
    return price


def zone_ids(ec2) -> dict[str, str | None]:
    """ZoneName → ZoneId of the caller's account in the client's region (names differ per account).

    Every output member is optional in the EC2 model: a zone listed without its ID maps to None,
    and a price in that zone then fails its region (never stored under a made-up ID)."""
    zones = ec2.describe_availability_zones(AllAvailabilityZones=True).get("AvailabilityZones", [])
    return {z["ZoneName"]: z.get("ZoneId") for z in zones if z.get("ZoneName")}


def _incomplete_record(rec: dict, region: str, names_to_ids: dict[str, str | None]) -> tuple[str, str, str, datetime]:
    """(zone, type, product, timestamp) of a record lacking one of them (all are optional in the
    model): a zone name comes back only from the record's own AZ ID, which the listing maps exactly;
    anything else missing is a ValidationError naming the member, which fails the region."""
    zone_id = rec.get("AvailabilityZoneId")
    zone = rec.get("AvailabilityZone") or next((n for n, i in names_to_ids.items() if zone_id and i == zone_id), None)
    values = {
        "AvailabilityZone": zone,
        "InstanceType": rec.get("InstanceType"),
        "ProductDescription": rec.get("ProductDescription"),
        "Timestamp": rec.get("Timestamp"),
    }
    absent = [f for f, v in values.items() if not v]
    if absent:
        known = ", ".join(f"{f} {v}" for f, v in values.items() if v) or "no other member"
        raise ValidationError(
            f"SpotPriceHistory.{absent[0]}",
            f"missing from a price record of region {region} ({known}); the region is not stored",
        )
    return zone, values["InstanceType"], values["ProductDescription"], values["Timestamp"]


def latest_window(day: date, at: datetime) -> tuple[datetime, datetime]:
    """The request of a latest-only fetch: StartTime = EndTime = `at`, which must fall inside `day`.

    AWS then answers, per market, the price in force at `at` (its last change before `at`, stamped
    with the time it was set, possibly days ago)."""
    start, end = day_window(day)
    if not start <= at < end:
        raise ValidationError("latest_only", f"the moment {at.isoformat()} is not inside the day {day}")
    return at, at


def region_history(
    ec2,
    region: str,
    day: date,
    instance_types: Sequence[str] | None,
    products: Sequence[str],
    at: datetime | None = None,
) -> tuple[pd.DataFrame, list[str], int]:
    """One region's prices for `day`: (rows, requested types without any price, API calls).

    AWS returns the changes inside [start, end) plus, per market, the last change before `start`:
    that one becomes the day's opening row (`ts` = 00:00 UTC, `is_day_open`), unless a change falls
    exactly on 00:00. Raises ValidationError on a malformed price, ClientError on AWS errors.

    With `at` (latest-only, `at` inside `day`) the request is StartTime = EndTime = `at`, so AWS
    returns only the price in force per market. The answer lands in the day by the same rule: a
    price set during the day is that change (its own timestamp); one set before the day is the
    price in force at 00:00, i.e. the day-open row. No timestamp is made up: both are rows the full
    load of the day stores identically.
    """
    start, end = day_window(day)
    request_start, request_end = (start, end) if at is None else latest_window(day, at.astimezone(timezone.utc))
    names_to_ids = zone_ids(ec2)
    calls = 1
    params: dict[str, Any] = {
        "StartTime": request_start,
        "EndTime": request_end,
        "ProductDescriptions": list(products),
        "PaginationConfig": {"PageSize": PAGE_SIZE},
    }
    if instance_types:
        params["InstanceTypes"] = list(instance_types)
    opening: dict[tuple[str, str, str], tuple[datetime, float]] = {}
    changes: dict[tuple[str, str, str, datetime], float] = {}
    for page in ec2.get_paginator("describe_spot_price_history").paginate(**params):
        calls += 1
        for rec in page.get("SpotPriceHistory", []):
            try:
                zone, itype, product, ts = (
                    rec["AvailabilityZone"],
                    rec["InstanceType"],
                    rec["ProductDescription"],
                    rec["Timestamp"],
                )
            except KeyError:
                zone, itype, product, ts = _incomplete_record(rec, region, names_to_ids)
            if names_to_ids.get(zone) is None and rec.get("AvailabilityZoneId"):
                # A zone the listing gave without an ID: the record's own AZ ID is AWS's, not made up.
                names_to_ids[zone] = rec["AvailabilityZoneId"]
            price = parse_price(rec.get("SpotPrice"), region=region, instance_type=itype, zone=zone, ts=ts)
            ts = ts.astimezone(timezone.utc)
            if start <= ts < end:
                changes[(zone, itype, product, ts)] = price
            elif ts < start:
                key = (zone, itype, product)
                if key not in opening or opening[key][0] < ts:
                    opening[key] = (ts, price)
    on_midnight = {(z, t, p) for (z, t, p, ts) in changes if ts == start}
    records = [
        (start, z, t, p, price, True) for (z, t, p), (_, price) in opening.items() if (z, t, p) not in on_midnight
    ]
    records += [(ts, z, t, p, price, False) for (z, t, p, ts), price in changes.items()]
    seen_types = {r[2] for r in records}
    missing = sorted(set(instance_types or ()) - seen_types)
    if not records:
        return empty_history(), missing, calls
    frame = pd.DataFrame.from_records(
        records, columns=["ts", "availability_zone", "instance_type", "product_description", "price", "is_day_open"]
    )
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    frame["availability_zone_id"] = frame["availability_zone"].map(names_to_ids)
    unmapped = frame["availability_zone_id"].isna()
    if unmapped.any():
        zones = sorted(frame.loc[unmapped, "availability_zone"].unique())
        unlisted = [z for z in zones if z not in names_to_ids]
        if unlisted:
            raise ValidationError(
                "AvailabilityZone",
                f"{unlisted} of region {region}'s prices are not in its "
                f"DescribeAvailabilityZones listing: no AZ ID known",
            )
        raise ValidationError(
            "ZoneId",
            f"DescribeAvailabilityZones gave no AZ ID for {zones} in region {region}: "
            f"the region's prices are not stored under a made-up ID",
        )
    frame["region"] = region
    frame["day"] = day
    return frame[SPOT_PRICE_COLUMNS], missing, calls


def fetch_spot_history(
    client_for: Callable[[str], Any],
    regions: Sequence[str],
    day: date,
    instance_types: Sequence[str] | None = None,
    products: Sequence[str] = DEFAULT_PRODUCTS,
    max_workers: int = MAX_REGION_WORKERS,
    at: datetime | None = None,
) -> HistoryFetch:
    """`day`'s prices of every region concurrently (bounded pool), each region's errors isolated;
    with `at`, only the price in force per market at that moment (see `region_history`)."""
    fetch = HistoryFetch(day=day, rows=empty_history())
    frames = []

    def one(region: str):
        try:
            return region, region_history(client_for(region), region, day, instance_types, products, at), None
        except (ClientError, BotoCoreError, ValidationError) as exc:
            return region, None, exc

    with ThreadPoolExecutor(max_workers=max(1, min(max_workers, len(regions) or 1))) as pool:
        for region, result, exc in pool.map(one, regions):
            if exc is None:
                rows, missing, calls = result
                frames.append(rows)
                fetch.fetched_regions.append(region)
                fetch.api_calls += calls
                if missing:
                    fetch.no_prices[region] = missing
            elif error_code(exc) in REGION_SKIP_ERRORS:
                fetch.skipped_regions[region] = f"region not enabled or not allowed ({describe(exc)})"
            elif is_permanent(exc):  # bad data, a bad request or denied: a retry gets the same answer
                fetch.failed_regions[region] = describe(exc)
                fetch.bad_data_regions.add(region)
            else:
                fetch.failed_regions[region] = describe(exc)
    frames = [f for f in frames if len(f)]
    if frames:
        fetch.rows = pd.concat(frames, ignore_index=True)
    return fetch


def price_regions(ec2_home, configured: Sequence[str] | None) -> tuple[list[str], dict[str, str]]:
    """The platform's enabled regions (filtered by `configured`), and the configured ones skipped."""
    return resolve_regions(ec2_home, list(configured) if configured else None)


def types_of_families(families: Sequence[str], catalog: Sequence[str]) -> list[str]:
    """The catalog's types of `families`; a family with no type in the catalog is refused (a typo
    would otherwise narrow the fetch, and with it the slice replaced, without a word)."""
    wanted = {f.strip().lower().rstrip(".") for f in families}
    known = {t.split(".")[0] for t in catalog}
    unknown = sorted(wanted - known)
    if unknown:
        raise ValidationError(
            "instance_families",
            f"{unknown} match no instance type of the catalog ({len(catalog)} types; a family looks like m7g or c7i)",
        )
    return sorted(t for t in catalog if t.split(".")[0] in wanted)


# ---------------------------------------------------------------------------------------------
# on-demand prices (Price List API)
# ---------------------------------------------------------------------------------------------


def price_list_filters(region: str) -> list[dict[str, str]]:
    pairs = [
        ("regionCode", region),
        ("operatingSystem", "Linux"),
        ("tenancy", "Shared"),
        ("preInstalledSw", "NA"),
        ("capacitystatus", "Used"),
        ("marketoption", "OnDemand"),
    ]
    return [{"Type": "TERM_MATCH", "Field": f, "Value": v} for f, v in pairs]


def parse_price_list_item(raw: str | dict, region: str) -> tuple[str, float]:
    """(instance type, USD per hour) of one GetProducts PriceList item (a JSON string)."""
    item = json.loads(raw) if isinstance(raw, str) else raw
    try:
        itype = item.get("product", {}).get("attributes", {}).get("instanceType")
        if not itype or not isinstance(itype, str):
            raise ValidationError("product.attributes.instanceType", f"missing in a Price List item for {region}")
        usd = []
        for term in item.get("terms", {}).get("OnDemand", {}).values():
            for dim in term.get("priceDimensions", {}).values():
                value = dim.get("pricePerUnit", {}).get("USD")
                # `unit` is optional in the document: without it the price is not known to be hourly.
                if value is not None and dim.get("unit") in ("Hrs", "Hours"):
                    usd.append(value)
    except (AttributeError, TypeError) as exc:  # a node that is not the object the format promises
        raise ValidationError(
            "PriceList", f"an item for {region} is not shaped like a Price List product ({type(exc).__name__})"
        ) from None
    if not usd:
        raise ValidationError(
            "terms.OnDemand.*.priceDimensions.*.pricePerUnit.USD", f"no USD price with unit Hrs for {itype} in {region}"
        )
    try:
        price = float(usd[0])
    except (TypeError, ValueError):
        raise ValidationError(
            "terms.OnDemand.*.priceDimensions.*.pricePerUnit.USD", f"{usd[0]!r} is not a price for {itype} in {region}"
        ) from None
    if not (math.isfinite(price) and price > 0):
        raise ValidationError(
            "terms.OnDemand.*.priceDimensions.*.pricePerUnit.USD",
            f"{usd[0]!r} is not a positive price for {itype} in {region}",
        )
    return itype, price


@dataclass
class OnDemandFetch:
    rows: list[dict[str, Any]] = field(default_factory=list)
    source: str = "price_list_api"  # or bundled_snapshot
    fallback_reason: str | None = None
    problems: list[str] = field(default_factory=list)  # skipped items, with region and type
    failed_regions: dict[str, str] = field(default_factory=dict)
    api_calls: int = 0


def region_on_demand(pricing, region: str) -> tuple[dict[str, float], list[str], int]:
    prices: dict[str, float] = {}
    problems: list[str] = []
    calls = 0
    paginator = pricing.get_paginator("get_products")
    for page in paginator.paginate(
        ServiceCode="AmazonEC2",
        Filters=price_list_filters(region),
        FormatVersion="aws_v1",
        PaginationConfig={"PageSize": PRICE_LIST_PAGE_SIZE},
    ):
        calls += 1
        for raw in page.get("PriceList", []):
            try:
                itype, price = parse_price_list_item(raw, region)
            except (ValidationError, ValueError) as exc:
                problems.append(f"{region}: {exc}")
                continue
            # Several SKUs can match (e.g. licence variants): the cheapest is plain Linux.
            prices[itype] = min(price, prices.get(itype, price))
    return prices, problems, calls


def fetch_on_demand(
    pricing, regions: Sequence[str], as_of: datetime, max_workers: int = MAX_REGION_WORKERS
) -> OnDemandFetch:
    """Linux shared-tenancy on-demand prices per region; regions fail on their own."""
    fetch = OnDemandFetch()

    def one(region: str):
        try:
            return region, region_on_demand(pricing, region), None
        except (ClientError, BotoCoreError) as exc:
            return region, None, exc

    with ThreadPoolExecutor(max_workers=max(1, min(max_workers, len(regions) or 1))) as pool:
        for region, result, exc in pool.map(one, regions):
            if exc is not None:
                fetch.failed_regions[region] = describe(exc)
                continue
            prices, problems, calls = result
            fetch.api_calls += calls
            fetch.problems += problems
            fetch.rows += [
                {
                    "region": region,
                    "instance_type": t,
                    "operating_system": "Linux",
                    "usd_per_hour": p,
                    "source": "price_list_api",
                    "as_of": as_of,
                }
                for t, p in sorted(prices.items())
            ]
    return fetch


def bundled_on_demand(reason: str) -> OnDemandFetch:
    """The bundled Price List snapshot (us-east-1 only), dated by its capture date."""
    rows = [
        {
            "region": r["region"],
            "instance_type": r["instance_type"],
            "operating_system": r["operating_system"],
            "usd_per_hour": float(r["usd_per_hour"]),
            "source": "bundled_snapshot",
            "as_of": BUNDLED_ON_DEMAND_AS_OF,
        }
        for r in bundled_on_demand_rows()
    ]
    return OnDemandFetch(rows=rows, source="bundled_snapshot", fallback_reason=reason)


# ---------------------------------------------------------------------------------------------
# Spot Advisor feed and the instance-type catalog
# ---------------------------------------------------------------------------------------------

_FAMILY = re.compile(r"^([a-z]+)(\d+)([a-z]*)")


def architecture_of(instance_type: str) -> str:
    """arm64 for Graviton families (a 'g' after the generation: m6g, c7gn, r8g, t4g, im4gn) and
    a1, and for Apple-silicon Macs (mac2*, mac-m*); x86_64 otherwise."""
    family = instance_type.split(".")[0]
    if family == "a1" or (family.startswith("mac") and family != "mac1"):
        return "arm64"
    match = _FAMILY.match(family)
    return "arm64" if match and "g" in match.group(3) else "x86_64"


@dataclass
class AdvisorFeed:
    rows: list[dict[str, Any]] = field(default_factory=list)
    catalog: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # skipped entries: region, OS, type, cause
    skipped_keys: list[tuple[str, str, str]] = field(default_factory=list)  # (region, os, type)
    source: str = "feed"
    fallback_reason: str | None = None


def download_feed(url: str = ADVISOR_FEED_URL, timeout: float = 10.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (fixed https URL)
        return response.read()


def parse_advisor(raw: bytes, day: date, source: str = "feed") -> AdvisorFeed:
    """Rows of the Spot Advisor feed for `day`. A truncated or malformed document raises
    ValidationError; a bad entry (unknown band, non-integer savings) is skipped and reported."""
    try:
        doc = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValidationError(
            "spot-advisor-data.json", f"not a complete JSON document ({len(raw)} bytes; {exc})"
        ) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("spot_advisor"), dict):
        raise ValidationError("spot_advisor", "missing from the feed")
    try:
        return _advisor_rows(doc, day, source)
    except (AttributeError, TypeError) as exc:  # a node that is not the object/list the feed promises
        raise ValidationError(
            "spot-advisor-data.json", f"not shaped like the Spot Advisor feed ({type(exc).__name__})"
        ) from None


def _advisor_rows(doc: dict, day: date, source: str) -> AdvisorFeed:
    bands = {r.get("index") for r in doc.get("ranges", []) if isinstance(r, dict)} or set(KNOWN_BANDS)
    bands &= set(KNOWN_BANDS)
    feed = AdvisorFeed(source=source)
    for region, by_os in sorted(doc["spot_advisor"].items()):
        for os_name, by_type in sorted((by_os or {}).items()):
            if os_name not in ADVISOR_OPERATING_SYSTEMS:
                feed.problems.append(f"{region}: unknown operating system {os_name!r} skipped")
                continue
            for itype, entry in sorted((by_type or {}).items()):
                band, savings = (entry.get("r"), entry.get("s")) if isinstance(entry, dict) else (None, None)
                cause = None
                if not isinstance(entry, dict):
                    cause = f"entry {entry!r} is not an object"
                elif "r" not in entry or "s" not in entry:
                    cause = f"missing {sorted({'r', 's'} - set(entry))} (band r, savings s)"
                elif not isinstance(band, int) or band not in bands:
                    cause = f"unknown interruption band r={band!r} (known: {sorted(bands)})"
                elif not isinstance(savings, int) or not 0 <= savings <= 100:
                    cause = f"savings s={savings!r} is not a percentage"
                if cause:
                    feed.problems.append(f"{region} {os_name} {itype}: {cause}")
                    feed.skipped_keys.append((region, os_name, itype))
                    continue
                feed.rows.append(
                    {
                        "day": day,
                        "region": region,
                        "operating_system": os_name,
                        "instance_type": itype,
                        "interruption_band": band,
                        "savings_pct": savings,
                        "source": source,
                    }
                )
    for itype, spec in sorted((doc.get("instance_types") or {}).items()):
        if not isinstance(spec, dict):
            feed.problems.append(f"instance_types {itype}: not an object")
            spec = {}
        vcpu, ram = _finite(spec.get("cores")), _finite(spec.get("ram_gb"))
        feed.catalog.append(
            {
                "instance_type": itype,
                "family": itype.split(".")[0],
                "vcpu": int(vcpu) if vcpu is not None else None,
                "memory_gib": ram,
                "architecture": architecture_of(itype),
                "source": f"spot_advisor_{source}",
            }
        )
    return feed


def _finite(value) -> float | None:
    """A finite, non-negative number from the feed, else None (unknown; never a made-up size)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        return None
    return float(value)


def load_advisor(day: date, fetch: Callable[[], bytes]) -> AdvisorFeed:
    """The live feed, else the bundled snapshot with the reason (never silently)."""
    try:
        return parse_advisor(fetch(), day, source="feed")
    except ValidationError as exc:
        reason = f"the feed was unusable: {exc}"
    except OSError as exc:  # URLError, timeouts, connection refused
        reason = f"the feed was unreachable: {type(exc).__name__}: {exc}"
    feed = parse_advisor(BUNDLED_ADVISOR.read_bytes(), day, source="bundled_snapshot")
    feed.fallback_reason = reason
    return feed
