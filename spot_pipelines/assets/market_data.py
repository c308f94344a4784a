"""Market data: spot price history (daily, today's day refreshed hourly), on-demand prices and the Spot Advisor (daily).

Thin wiring over `core.market_data` (fetching and parsing) and `db.market_data` (storage); the checks
live next to the assets they check. Prices are public market data: they are read with the
platform's own AWS identity, not with an onboarded account's.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import dagster as dg
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import Field
from sqlalchemy import select

from spot_pipelines.assets import aws_failure, preview_table, table_metadata
from spot_pipelines.core import market_data as md
from spot_pipelines.core import validation
from spot_pipelines.core.aws_errors import describe
from spot_pipelines.core.bundled_data import bundled_advisor
from spot_pipelines.core.clock import utc_today, utcnow
from spot_pipelines.core.errors import ValidationError
from spot_pipelines.core.health import HealthThresholds
from spot_pipelines.db import discovery as inventory
from spot_pipelines.db import market_data as market
from spot_pipelines.partitions import check_fetchable, market_daily_partitions
from spot_pipelines.resources.app_database import AppDatabase
from spot_pipelines.resources.credential_vault import AWS_RETRY_POLICY, HOME_REGION
from spot_pipelines.resources.market_data import MarketDataAPIs

SPOT_PRICE_SCHEMA = dg.TableSchema(
    columns=[
        dg.TableColumn("day", "date", description="the partition (UTC day)"),
        dg.TableColumn("ts", "timestamptz", description="time of the price change; 00:00 UTC for the day-open row"),
        dg.TableColumn("region", "text"),
        dg.TableColumn("availability_zone", "text", description="AZ name (differs per account)"),
        dg.TableColumn("availability_zone_id", "text", description="AZ ID, the cross-account join key"),
        dg.TableColumn("instance_type", "text"),
        dg.TableColumn("product_description", "text", description="e.g. Linux/UNIX"),
        dg.TableColumn("price", "float", description="USD per hour"),
        dg.TableColumn(
            "is_day_open", "bool", description="the price in force at 00:00 UTC, carried from before the day"
        ),
    ]
)
PRICE_PREVIEW_COLUMNS = [
    "ts",
    "region",
    "availability_zone_id",
    "instance_type",
    "product_description",
    "price",
    "is_day_open",
]


class SpotPriceHistoryConfig(dg.Config):
    regions: list[str] | None = Field(
        default=None, description="Regions to read (each must be enabled); unset: every enabled region."
    )
    product_descriptions: list[str] = Field(
        default=list(md.DEFAULT_PRODUCTS), description="ProductDescriptions filter, e.g. Linux/UNIX."
    )
    all_instance_types: bool = Field(
        default=True, description="Every instance type; false: the discovered fleet's types plus instance_families."
    )
    instance_families: list[str] = Field(default=[], description="Families added to the fleet's types, e.g. m7g.")
    max_region_workers: int = Field(default=md.MAX_REGION_WORKERS, description="Regions fetched at once.")
    retry_failed_regions: bool = Field(
        default=True,
        description="Let the retry policy re-run when a region failed on AWS errors (throttling "
        "after botocore's retries); false: fail at once. Bad data never retries.",
    )
    latest_only: bool = Field(
        default=False,
        description="Only the price in force now per market (DescribeSpotPriceHistory with StartTime = "
        "EndTime = now), merged into today's partition (never deleting a stored row); for today's partition "
        "only. The hourly refresh sets it; false: the full load of the day, replacing the slice fetched.",
    )


class OnDemandPricesConfig(dg.Config):
    regions: list[str] | None = Field(default=None, description="Regions to price; unset: every enabled region.")
    max_age_days: int = Field(default=7, description="The age check warns about prices older than this.")


class SpotAdvisorConfig(dg.Config):
    max_lag_days: int = Field(
        default=3,
        description="The feed shows only the current trailing month: a partition older than "
        "this many days cannot be reconstructed from it and is refused.",
    )


def _regions(apis: MarketDataAPIs, configured: Sequence[str] | None) -> tuple[list[str], dict[str, str]]:
    try:
        return md.price_regions(apis.ec2(HOME_REGION), validation.regions(configured))
    except (ClientError, BotoCoreError) as exc:
        raise aws_failure("could not list the platform's enabled regions", exc) from None
    except ValidationError as exc:  # a typo in run config: no retry can fix it
        raise dg.Failure(description=f"config {exc}; nothing fetched or written", allow_retries=False) from None


# ---------------------------------------------------------------------------------------------
# spot_price_history
# ---------------------------------------------------------------------------------------------

_PRICE_AGE = HealthThresholds()


@dg.asset(
    partitions_def=market_daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name="market_data",
    metadata=table_metadata(market.SpotPrice.__table__, {c.name: c.description for c in SPOT_PRICE_SCHEMA.columns}),
    kinds={"aws", "ec2", "sql"},
    owners=["team:platform"],
    pool="aws_api",
    retry_policy=AWS_RETRY_POLICY,
    # The hourly refresh materializes today's partition: warn and fail where component_health's price_data
    # turns degraded and critical (by default 1 h 30 min and 6 h).
    freshness_policy=dg.FreshnessPolicy.time_window(
        fail_window=timedelta(seconds=_PRICE_AGE.price_age_critical_s),
        warn_window=timedelta(seconds=_PRICE_AGE.price_age_degraded_s),
    ),
    check_specs=[
        dg.AssetCheckSpec(
            "prices_positive",
            asset="spot_price_history",
            blocking=True,
            description="No stored price of the partition is zero or negative.",
        ),
        dg.AssetCheckSpec(
            "all_enabled_regions_present",
            asset="spot_price_history",
            blocking=True,
            description="Every enabled region has prices for every day of the partition.",
        ),
        dg.AssetCheckSpec(
            "no_duplicate_prices",
            asset="spot_price_history",
            blocking=True,
            description="One price per (AZ ID, instance type, product, timestamp).",
        ),
    ],
    description=(
        "Spot price changes per (AZ ID, instance type, product) for one UTC day, every enabled region. "
        "The price in force at 00:00 UTC (AWS's last change before the day) is the day's `is_day_open` row. "
        "Re-running a day replaces exactly the slice fetched (day × regions × the types and products asked for); "
        "a range runs as one run. `hourly_spot_price_schedule` refreshes today's partition every hour in "
        "`latest_only` mode: the price in force now per market, merged (a stored price is never duplicated, "
        "deleted or changed); the nightly full load of the day then replaces the slice with the complete day. "
        "Every fetch is recorded in `spot_price_fetches`, which price freshness is measured by."
    ),
)
def spot_price_history(
    context: dg.AssetExecutionContext, config: SpotPriceHistoryConfig, app_db: AppDatabase, market_apis: MarketDataAPIs
) -> dg.MaterializeResult:
    at = _check_partitions(context.partition_keys, config.latest_only)
    days = [date.fromisoformat(key) for key in context.partition_keys]
    regions, skipped = _regions(market_apis, config.regions)
    instance_types = None if config.all_instance_types else _fleet_instance_types(app_db, config.instance_families)
    ingest = _ingest_spot_days(context, config, app_db.engine, market_apis, days, regions, instance_types, at)
    skipped.update(ingest.skipped)
    _fail_on_failed_regions(ingest, config)
    enabled = [r for r in regions if r not in skipped]
    stats = market.spot_price_stats(app_db.engine, days)
    return dg.MaterializeResult(
        metadata={
            # A full load writes its slice; a latest-only merge reports the rows the day holds now.
            "dagster/row_count": stats.rows if at else sum(ingest.rows_by_day.values()),
            "dagster/column_schema": SPOT_PRICE_SCHEMA,
            "mode": "latest_only" if at else "full_day",
            "prices_as_of": dg.MetadataValue.json(ingest.prices_as_of),
            "rows_fetched": ingest.rows_fetched,
            "rows_by_day": dg.MetadataValue.json(ingest.rows_by_day),
            "regions": dg.MetadataValue.json(enabled),
            "skipped_regions": dg.MetadataValue.json(skipped),
            "no_prices_for": dg.MetadataValue.json(ingest.no_prices),
            "instance_types": "all" if instance_types is None else len(instance_types),
            "product_descriptions": dg.MetadataValue.json(config.product_descriptions),
            "api_calls": ingest.api_calls,
            "preview": preview_table(ingest.preview, PRICE_PREVIEW_COLUMNS),
        },
        check_results=_spot_price_checks(app_db.engine, days, enabled, stats),
    )


def _check_partitions(partition_keys: Sequence[str], latest_only: bool) -> datetime | None:
    """Refuse days AWS no longer serves, and a latest-only run for anything but today's partition.
    Returns the moment of a latest-only fetch (now), None for a full load."""
    try:
        check_fetchable(list(partition_keys))
    except ValidationError as exc:  # the day is gone from AWS: no retry can fetch it
        raise dg.Failure(description=f"{exc}; nothing fetched or written", allow_retries=False) from None
    if not latest_only:
        return None
    now = utcnow()
    today = now.date().isoformat()
    if list(partition_keys) != [today]:
        asked = partition_keys[0] if len(partition_keys) == 1 else f"{partition_keys[0]}...{partition_keys[-1]}"
        raise dg.Failure(
            description=f"config latest_only: true fetches the prices in force now, which belong to today's "
            f"partition ({today}) only, but partition {asked} was asked for; run latest_only for {today}, or set "
            f"latest_only: false for the full load of {asked}; nothing fetched or written",
            allow_retries=False,
        )
    return now


def _fail_on_failed_regions(ingest: "_SpotIngest", config: SpotPriceHistoryConfig) -> None:
    if ingest.failed:
        # The healthy regions are stored; failed regions keep their earlier rows. Retried later.
        raise dg.Failure(
            description=f"spot prices failed for {len(ingest.failed)} region-day(s): "
            + "; ".join(f"{k}: {v}" for k, v in sorted(ingest.failed.items())),
            metadata={
                "failed": dg.MetadataValue.json(ingest.failed),
                "rows_by_day": dg.MetadataValue.json(ingest.rows_by_day),
            },
            allow_retries=ingest.transient and config.retry_failed_regions,
        )


def _fleet_instance_types(app_db: AppDatabase, instance_families: Sequence[str]) -> list[str]:
    """The discovered fleet's instance types plus every type of the configured families."""
    with app_db.transaction() as session:
        catalog = market.catalog_instance_types(session) or sorted(bundled_advisor()["instance_types"])
        try:
            families = md.types_of_families(instance_families, catalog)
        except ValidationError as exc:
            raise dg.Failure(description=f"config {exc}; nothing fetched or written", allow_retries=False) from None
        instance_types = sorted(set(inventory.inventory_instance_types(session)) | set(families))
    if not instance_types:
        raise dg.Failure(
            description="all_instance_types is false, but the discovered fleet is empty and "
            "instance_families is empty: nothing to fetch",
            allow_retries=False,
        )
    return instance_types


@dataclass
class _SpotIngest:
    """What fetching and storing the partition's days did, summed over the days."""

    rows_by_day: dict[str, int] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    no_prices: dict[str, list[str]] = field(default_factory=dict)
    preview: list[dict] = field(default_factory=list)
    transient: bool = False
    api_calls: int = 0
    rows_fetched: int = 0
    prices_as_of: dict[str, str] = field(default_factory=dict)  # day -> when its stored prices hold


def _ingest_spot_days(
    context: dg.AssetExecutionContext,
    config: SpotPriceHistoryConfig,
    engine,
    market_apis: MarketDataAPIs,
    days: Sequence[date],
    regions: Sequence[str],
    instance_types: list[str] | None,
    at: datetime | None = None,
) -> _SpotIngest:
    """Fetch and store each day in turn (one day's rows in memory at a time). With `at` (latest-only,
    today's one day): the prices in force at `at`, merged into the day."""
    out = _SpotIngest()
    for day in days:
        fetched_at = at or utcnow()
        fetch = md.fetch_spot_history(
            market_apis.ec2,
            regions,
            day,
            instance_types,
            config.product_descriptions,
            config.max_region_workers,
            at=at,
        )
        out.api_calls += fetch.api_calls
        out.skipped.update(fetch.skipped_regions)
        out.failed.update({f"{day} {r}": cause for r, cause in fetch.failed_regions.items()})
        out.transient |= bool(set(fetch.failed_regions) - fetch.bad_data_regions)
        for region, types in fetch.no_prices.items():
            out.no_prices[region] = sorted(set(out.no_prices.get(region, [])) | set(types))
        out.rows_by_day[day.isoformat()] = _store_spot_day(engine, config, day, fetch, instance_types, at)
        _record_fetch(engine, day, fetch, fetched_at, at, out)
        if not out.preview and len(fetch.rows):
            out.preview = fetch.rows.head(20).to_dict("records")
        written = (
            f"{out.rows_by_day[day.isoformat()]} new of {len(fetch.rows)} prices in force at {at:%H:%M:%S} UTC"
            if at
            else f"{out.rows_by_day[day.isoformat()]} prices"
        )
        context.log.info(
            f"{day}: {written} from {len(fetch.fetched_regions)} "
            f"regions, {len(fetch.failed_regions)} failed, {len(fetch.skipped_regions)} skipped"
        )
        del fetch
    return out


def _store_spot_day(engine, config, day: date, fetch: md.HistoryFetch, instance_types, at: datetime | None) -> int:
    if at is not None:
        # Latest-only: merged, never replacing. The nightly full load's rows of the day stay, a price
        # already stored is not added again, and a re-run of the same hour adds nothing.
        return market.merge_spot_prices(engine, day, fetch.rows)
    # Exactly the slice fetched is replaced: the regions that answered × the types and products
    # asked for. A failed region keeps what it had, and so does a type that came back empty.
    return market.replace_spot_price_day(
        engine,
        day,
        fetch.fetched_regions,
        fetch.rows,
        keep_types=fetch.no_prices,
        instance_types=instance_types,
        products=config.product_descriptions,
    )


def _record_fetch(
    engine, day: date, fetch: md.HistoryFetch, fetched_at: datetime, at: datetime | None, out: _SpotIngest
) -> None:
    """When each region that answered was fetched, and as of when its prices hold: the request's moment
    (a latest-only fetch, or a full load of a day still running), else the end of the fetched day."""
    prices_as_of = min(fetched_at, md.day_window(day)[1])
    counts = fetch.rows["region"].value_counts().to_dict() if len(fetch.rows) else {}
    market.record_spot_price_fetches(
        engine,
        day,
        {region: counts.get(region, 0) for region in fetch.fetched_regions},
        mode="latest" if at else "day",
        fetched_at=fetched_at,
        prices_as_of=prices_as_of,
    )
    out.rows_fetched += len(fetch.rows)
    if fetch.fetched_regions:
        out.prices_as_of[day.isoformat()] = prices_as_of.isoformat()


def _spot_price_checks(
    engine, days: Sequence[date], enabled: Sequence[str], stats: market.SpotPriceSliceStats
) -> list[dg.AssetCheckResult]:
    missing = {
        d: sorted(set(enabled) - regions_present)
        for d, regions_present in _regions_by_day(engine, days).items()
        if set(enabled) - regions_present
    }
    return [
        dg.AssetCheckResult(
            check_name="prices_positive",
            passed=not stats.nonpositive,
            metadata={
                "nonpositive_sample": preview_table(
                    stats.nonpositive, ["region", "availability_zone_id", "instance_type", "ts", "price"]
                )
            },
        ),
        dg.AssetCheckResult(
            check_name="all_enabled_regions_present",
            passed=not missing,
            metadata={"enabled_regions": len(enabled), "missing_by_day": dg.MetadataValue.json(missing)},
        ),
        dg.AssetCheckResult(
            check_name="no_duplicate_prices",
            passed=stats.duplicates == 0,
            metadata={"duplicate_keys": stats.duplicates},
        ),
    ]


def _regions_by_day(engine, days: Sequence[date]) -> dict[str, set[str]]:
    t = market.SpotPrice.__table__
    out = {d.isoformat(): set() for d in days}
    with engine.connect() as conn:
        for d, region in conn.execute(select(t.c.day, t.c.region).where(t.c.day.in_(list(days))).distinct()):
            out[d.isoformat()].add(region)
    return out


# ---------------------------------------------------------------------------------------------
# on_demand_prices
# ---------------------------------------------------------------------------------------------


def _age_in_words(age_days: float | None, max_age_days: int, fetch: md.OnDemandFetch) -> str:
    """The prices_recent result for a person: how old, and why (the bundled snapshot's reason)."""
    if age_days is None:
        return "no on-demand prices are stored"
    text = f"the oldest stored on-demand price is {age_days:g} days old (limit {max_age_days})"
    if fetch.source == "bundled_snapshot":
        text += f"; the bundled snapshot was used because {fetch.fallback_reason}"
    return text


@dg.asset(
    # Unpartitioned; the same policy as its neighbours keeps the daily job's backfills single-run.
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name="market_data",
    metadata=table_metadata(
        market.OnDemandPrice.__table__,
        {"source": "Price List API or the bundled snapshot", "as_of": "when the price was published"},
    ),
    kinds={"aws", "pricing", "sql"},
    owners=["team:platform"],
    pool="aws_api",
    retry_policy=AWS_RETRY_POLICY,
    freshness_policy=dg.FreshnessPolicy.time_window(fail_window=timedelta(days=8), warn_window=timedelta(days=2)),
    check_specs=[
        dg.AssetCheckSpec(
            "prices_positive",
            asset="on_demand_prices",
            blocking=True,
            description="No stored on-demand price is zero or negative.",
        ),
        dg.AssetCheckSpec(
            "prices_recent",
            asset="on_demand_prices",
            blocking=False,
            description="The oldest stored price is younger than max_age_days (the bundled snapshot is not).",
        ),
    ],
    description=(
        "Linux shared-tenancy on-demand USD/hour per (region, instance type) from the Price List API "
        "(GetProducts, us-east-1 endpoint). When the API is unreachable or denied, the bundled snapshot "
        "(us-east-1, dated by its capture) is used and the metadata says so; it never overwrites newer prices."
    ),
)
def on_demand_prices(
    context: dg.AssetExecutionContext, config: OnDemandPricesConfig, app_db: AppDatabase, market_apis: MarketDataAPIs
) -> dg.MaterializeResult:
    regions, skipped = _regions(market_apis, config.regions)
    fetch = _fetch_on_demand(context, market_apis, regions)
    with app_db.transaction() as session:
        changed = market.upsert_on_demand(session, fetch.rows)
    with app_db.transaction() as session:
        summary = market.on_demand_summary(session)
    covered = sorted({r["region"] for r in fetch.rows})
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(fetch.rows),
            "rows_changed": changed,
            "source": fetch.source,
            "fallback_reason": fetch.fallback_reason or "",
            "regions_priced": dg.MetadataValue.json(covered),
            "regions_without_prices": dg.MetadataValue.json(sorted(set(regions) - set(covered))),
            "failed_regions": dg.MetadataValue.json(fetch.failed_regions),
            "skipped_regions": dg.MetadataValue.json(skipped),
            "skipped_items": dg.MetadataValue.json(fetch.problems[:200]),
            "api_calls": fetch.api_calls,
            "preview": preview_table(fetch.rows, ["region", "instance_type", "usd_per_hour", "source", "as_of"]),
        },
        check_results=_on_demand_checks(summary, config.max_age_days, fetch),
    )


def _fetch_on_demand(
    context: dg.AssetExecutionContext, market_apis: MarketDataAPIs, regions: Sequence[str]
) -> md.OnDemandFetch:
    """The Price List API's prices, else the bundled snapshot with the API's causes as its reason."""
    try:
        fetch = md.fetch_on_demand(market_apis.pricing(), regions, as_of=utcnow())
    except (ClientError, BotoCoreError) as exc:  # e.g. no endpoint or credentials for the client
        fetch = md.OnDemandFetch(failed_regions={r: describe(exc) for r in regions})
    if not fetch.rows:
        # One line per distinct cause (an endpoint may answer with a whole HTML page).
        causes = sorted({" ".join(c.split())[:200] for c in fetch.failed_regions.values()}) or [
            "the API returned no prices"
        ]
        fetch = md.bundled_on_demand(reason=f"Price List API unusable: {'; '.join(causes)[:600]}")
        context.log.warning(f"on-demand prices from the bundled snapshot: {fetch.fallback_reason}")
    return fetch


def _on_demand_checks(summary: dict, max_age_days: int, fetch: md.OnDemandFetch) -> list[dg.AssetCheckResult]:
    oldest = summary["oldest_as_of"]
    age_days = None if oldest is None else round((utcnow() - oldest).total_seconds() / 86400, 1)
    return [
        dg.AssetCheckResult(
            check_name="prices_positive",
            passed=summary["nonpositive"] == 0,
            metadata={"nonpositive": summary["nonpositive"]},
        ),
        dg.AssetCheckResult(
            check_name="prices_recent",
            passed=oldest is not None and utcnow() - oldest <= timedelta(days=max_age_days),
            severity=dg.AssetCheckSeverity.WARN,
            description=_age_in_words(age_days, max_age_days, fetch),
            metadata={"oldest_age_days": age_days, "max_age_days": max_age_days},
        ),
    ]


# ---------------------------------------------------------------------------------------------
# spot_advisor
# ---------------------------------------------------------------------------------------------


@dg.asset(
    partitions_def=market_daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name="market_data",
    metadata=table_metadata(
        market.SpotAdvisorEntry.__table__,
        {"day": "the partition (UTC day)", "source": "the Spot Advisor feed or the bundled snapshot"},
    ),
    kinds={"aws", "sql"},
    owners=["team:platform"],
    retry_policy=AWS_RETRY_POLICY,
    freshness_policy=dg.FreshnessPolicy.time_window(fail_window=timedelta(hours=50), warn_window=timedelta(hours=28)),
    check_specs=[
        dg.AssetCheckSpec(
            "bands_in_range",
            asset="spot_advisor",
            blocking=True,
            description="Interruption bands are 0..4 and savings 0..100 % for the day.",
        ),
    ],
    description=(
        "The Spot Instance Advisor (interruption-frequency band and savings vs on-demand per region, OS and type), "
        "kept as one snapshot per day; also refreshes the `instance_types` catalog. Falls back to the bundled "
        "snapshot (said in the metadata) when the feed is unreachable or unusable."
    ),
)
def spot_advisor(
    context: dg.AssetExecutionContext, config: SpotAdvisorConfig, app_db: AppDatabase, market_apis: MarketDataAPIs
) -> dg.MaterializeResult:
    days = [date.fromisoformat(key) for key in context.partition_keys]
    _refuse_unreconstructable_days(days, config.max_lag_days)
    feed = md.load_advisor(days[-1], market_apis.advisor_feed)
    if feed.fallback_reason:
        context.log.warning(f"spot advisor from the bundled snapshot: {feed.fallback_reason}")
    for problem in feed.problems[:50]:
        context.log.warning(f"spot advisor entry skipped: {problem}")
    written_by_day, not_written = _store_advisor_days(app_db, days, feed)
    stored, bad = _stored_advisor_days(app_db, days)
    return dg.MaterializeResult(
        metadata=_advisor_metadata(feed, written_by_day, not_written, stored),
        check_results=[
            dg.AssetCheckResult(
                check_name="bands_in_range",
                passed=not bad,
                metadata={
                    "stored_rows": stored,
                    "out_of_range_sample": preview_table(bad, ADVISOR_COLUMNS),
                },
            )
        ],
    )


ADVISOR_COLUMNS = ["region", "operating_system", "instance_type", "interruption_band", "savings_pct"]


def _advisor_metadata(
    feed: md.AdvisorFeed, written_by_day: dict[str, int], not_written: dict[str, str], stored: int
) -> dict:
    by_band: dict[str, int] = {}
    for row in feed.rows:
        by_band[str(row["interruption_band"])] = by_band.get(str(row["interruption_band"]), 0) + 1
    return {
        "dagster/row_count": sum(written_by_day.values()),
        "stored_rows": stored,
        "source": feed.source,
        "fallback_reason": feed.fallback_reason or "",
        "not_written": dg.MetadataValue.json(not_written),
        "regions_in_feed": len({r["region"] for r in feed.rows}),
        "rows_by_band": dg.MetadataValue.json(dict(sorted(by_band.items()))),
        "skipped_entries": dg.MetadataValue.json(feed.problems[:200]),
        "catalog_types": len(feed.catalog),
        "preview": preview_table(feed.rows, ADVISOR_COLUMNS),
    }


def _refuse_unreconstructable_days(days: Sequence[date], max_lag_days: int) -> None:
    too_old = [d for d in days if (utc_today() - d).days > max_lag_days]
    if too_old:
        raise dg.Failure(
            description=f"spot_advisor partition(s) {too_old[0]}…{too_old[-1]} are more than {max_lag_days} "
            f"days old: the feed only shows the current trailing month, so those days cannot be "
            f"reconstructed (raise max_lag_days to store today's feed under them anyway); nothing written",
            allow_retries=False,
        )


def _store_advisor_days(
    app_db: AppDatabase, days: Sequence[date], feed: md.AdvisorFeed
) -> tuple[dict[str, int], dict[str, str]]:
    """The feed stored under each day in one transaction: rows written per day, and why a day was not."""
    written_by_day: dict[str, int] = {}
    not_written: dict[str, str] = {}
    with app_db.transaction() as session:
        for day in days:
            rows = [{**row, "day": day} for row in feed.rows]
            written, reason = market.replace_advisor_day(session, day, rows, feed.source, feed.skipped_keys)
            written_by_day[day.isoformat()] = written
            if reason:
                not_written[day.isoformat()] = reason
        if len(not_written) < len(days):
            market.upsert_instance_types(session, feed.catalog)
    return written_by_day, not_written


def _stored_advisor_days(app_db: AppDatabase, days: Sequence[date]) -> tuple[int, list[dict]]:
    """Rows stored over the days, and the out-of-range rows (or an empty day) the check reports."""
    stored, bad = 0, []
    with app_db.transaction() as session:
        for day in days:
            summary = market.advisor_day_summary(session, day)
            stored += summary["rows"]
            bad += summary["out_of_range"]
            if summary["rows"] == 0:
                bad.append({"region": "(none)", "instance_type": f"no rows stored for {day}"})
    return stored, bad


market_data_assets = [spot_price_history, on_demand_prices, spot_advisor]

spot_price_history_job = dg.define_asset_job(
    "spot_price_history_job",
    selection=[spot_price_history],
    partitions_def=market_daily_partitions,
    description="Spot price history by daily partition; backfill a range with "
    "`dagster job backfill -j spot_price_history_job --from A --to B` (runs need the daemon).",
)
daily_market_data_job = dg.define_asset_job(
    "daily_market_data",
    selection=[spot_price_history, spot_advisor, on_demand_prices],
    partitions_def=market_daily_partitions,
    description="One day of spot price history and the Spot Advisor snapshot, and on-demand prices.",
)

market_data_jobs = [spot_price_history_job, daily_market_data_job]
