"""spot_placement_scores: AWS spot placement scores per AZ ID for each fleet shape's candidate set."""

from datetime import timedelta

import dagster as dg

from spot_pipelines.assets import core_config, preview_table, table_metadata
from spot_pipelines.core.clock import utcnow
from spot_pipelines.core.errors import ValidationError
from spot_pipelines.core.optimization import RecommendConfig, compatible_markets
from spot_pipelines.core.placement import PlacementConfig, collect, requests
from spot_pipelines.core.reporting import records
from spot_pipelines.db import discovery as instance_rows
from spot_pipelines.db import market_data as market_rows
from spot_pipelines.db import ml as ml_rows
from spot_pipelines.db import placement as placement_rows
from spot_pipelines.resources.app_database import AppDatabase
from spot_pipelines.resources.credential_vault import AWS_RETRY_POLICY
from spot_pipelines.resources.market_data import MarketDataAPIs


class PlacementRunConfig(dg.Config):
    max_types: int = PlacementConfig.max_types
    cache_minutes: float = PlacementConfig.cache_minutes


@dg.asset(
    group_name="optimization",
    metadata=table_metadata(
        placement_rows.SpotPlacementScore.__table__,
        {
            "day": "UTC day of the fetch",
            "config_key": "the requested configuration (instance types x target capacity)",
            "instance_types": "the configuration's instance types, comma-separated",
            "target_capacity": "instances requested",
            "score": "AWS spot placement score 1-10 (higher: more likely to succeed)",
            "fetched_at": "UTC time of the fetch",
        },
    ),
    kinds={"ec2", "sql"},
    owners=["team:optimization"],
    pool="aws_api",
    retry_policy=AWS_RETRY_POLICY,
    deps=[dg.AssetKey("discovered_instances"), dg.AssetKey("interruption_predictions")],
    description=(
        "ec2:GetSpotPlacementScores at AZ level for each fleet shape's candidate set (its type and its cheapest "
        "compatible types, at least 3; target capacity = its instance count in the region), stored as a daily "
        "history. A configuration fetched in the last cache_minutes (>= 10) is not asked again; throttling and "
        "AWS's limit on new configurations per 24 h leave that configuration without a score, said so, never "
        "invented. spot_recommendations can gate on it (min_placement_score) and shows it in the reason."
    ),
)
def spot_placement_scores(
    context: dg.AssetExecutionContext, config: PlacementRunConfig, app_db: AppDatabase, market_apis: MarketDataAPIs
) -> dg.MaterializeResult:
    try:
        pc = core_config(PlacementConfig, config)
    except ValidationError as exc:
        raise dg.Failure(description=f"spot_placement_scores config: {exc}", allow_retries=False) from None
    now = utcnow()
    with app_db.connection() as conn:
        fleet = instance_rows.read_running_instances(conn)
        catalog, on_demand = market_rows.read_catalog(conn), market_rows.read_on_demand(conn)
        markets = ml_rows.read_predictions(conn)
        stored = placement_rows.read_since(conn, now - timedelta(hours=24))
    priced, pairs, set_aside = compatible_markets(fleet, catalog, on_demand, markets, RecommendConfig())
    wanted, skipped = requests(priced, pairs, markets, pc)
    used_24h = set(stored["config_key"]) if len(stored) else set()
    got = collect(wanted, market_apis.ec2, stored, used_24h, now=now, config=pc)
    fetched = got.scores[got.scores["fetched_at"] == now] if len(got.scores) else got.scores
    with app_db.transaction() as session:
        written = placement_rows.write_scores(session, records(fetched))
    for s in got.statuses:
        if s["status"] not in ("fetched", "cached"):
            context.log.warning(
                f"placement score for {s['instance_types']} in {s['region']}: {s['status']}: {s['detail']}"
            )
    return dg.MaterializeResult(metadata=_metadata(written, wanted, got, set_aside, skipped))


def _metadata(written: int, wanted, got, set_aside, skipped) -> dict:
    by_status: dict[str, int] = {}
    for s in got.statuses:
        by_status[s["status"]] = by_status.get(s["status"], 0) + 1
    refused = [s for s in got.statuses if s["status"] not in ("fetched", "cached")]
    return {
        "dagster/row_count": written,
        "requests": len(wanted),
        "requests_by_status": dg.MetadataValue.json(by_status),
        "scored_az_ids": len(got.scores),
        "preview": preview_table(
            records(got.scores.sort_values("score", ascending=False)),
            ["region", "availability_zone_id", "instance_types", "target_capacity", "score"],
        ),
        "unscored": preview_table(refused, ["region", "instance_types", "status", "detail"], limit=50),
        "skipped": preview_table(
            records(set_aside.rename(columns={"instance_id": "what"})[["what", "reason"]]) + records(skipped),
            ["what", "reason"],
        ),
    }
