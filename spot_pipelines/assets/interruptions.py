"""spot_interruption_events: the EC2 interruption warnings, rebalance recommendations and state
changes recorded by `spot_interruption_sensor` (ground-truth labels for risk scoring)."""

from datetime import timedelta

import dagster as dg
from sqlalchemy import func, select

from spot_pipelines.assets import preview_table, table_metadata
from spot_pipelines.core.clock import utcnow
from spot_pipelines.db.interruptions import DeadLetter, SpotInterruptionEvent
from spot_pipelines.resources.app_database import AppDatabase

COLUMN_SCHEMA = dg.TableSchema(
    columns=[
        dg.TableColumn("event_id", "string", description="EventBridge event id (primary key)"),
        dg.TableColumn(
            "event_type", "string", description="spot_interruption_warning | rebalance_recommendation | state_change"
        ),
        dg.TableColumn("event_time", "timestamp", description="when AWS emitted the event (UTC)"),
        dg.TableColumn("received_at", "timestamp", description="when the sensor stored it (UTC)"),
        dg.TableColumn("aws_account_id", "string"),
        dg.TableColumn("account_id", "int", description="accounts.id (null once the account is removed)"),
        dg.TableColumn("region", "string"),
        dg.TableColumn("availability_zone", "string", description="from the event's ARN or the discovered instance"),
        dg.TableColumn("availability_zone_id", "string", description="from the discovered instance, when known"),
        dg.TableColumn("instance_id", "string"),
        dg.TableColumn("instance_type", "string", description="from the discovered instance, when known"),
        dg.TableColumn("action_or_state", "string", description="instance-action (warnings) or state (state changes)"),
        dg.TableColumn("detail", "json", description="the event's detail object"),
    ]
)
PREVIEW_COLUMNS = [
    "event_time",
    "event_type",
    "aws_account_id",
    "region",
    "availability_zone_id",
    "instance_id",
    "instance_type",
    "action_or_state",
]


@dg.asset(
    name="spot_interruption_events",
    group_name="operations",
    metadata=table_metadata(SpotInterruptionEvent.__table__, {c.name: c.description for c in COLUMN_SCHEMA.columns}),
    kinds={"aws", "sqs", "sql"},
    owners=["team:platform"],
    description=(
        "EC2 spot interruption warnings, rebalance recommendations and state changes received from "
        "EventBridge through SQS by `spot_interruption_sensor`, one row per event id in the "
        "`spot_interruption_events` table, enriched with the discovered instance's AZ ID and type. "
        "Materializing summarises the table; the sensor writes it."
    ),
)
def spot_interruption_events(context: dg.AssetExecutionContext, app_db: AppDatabase) -> dg.MaterializeResult:
    with app_db.transaction() as session:
        read = _read_summary(session, utcnow())
    context.log.info(
        f"{read['total']} interruption events recorded; {sum(read['by_type_24h'].values())} in the last 24 h"
    )
    return dg.MaterializeResult(metadata=_summary_metadata(read))


def _summary_metadata(read: dict) -> dict:
    preview = [{c: getattr(e, c) for c in PREVIEW_COLUMNS} for e in read["latest"]]
    pools = [
        {"instance_type": it or "?", "availability_zone_id": az or "?", "warnings_7d": n}
        for it, az, n in read["warnings_by_pool"]
    ]
    last_received = read["last_received"]
    return {
        "dagster/row_count": read["total"],
        "events_24h": sum(read["by_type_24h"].values()),
        "interruption_warnings_24h": read["by_type_24h"].get("spot_interruption_warning", 0),
        "events_24h_by_type": dg.MetadataValue.json(read["by_type_24h"]),
        "events_7d_by_type": dg.MetadataValue.json(read["by_type_7d"]),
        "warnings_7d_by_pool": preview_table(pools, ["instance_type", "availability_zone_id", "warnings_7d"]),
        "events_without_az_id": read["unenriched"],
        "dead_letters_24h": read["dead_24h"],
        "last_received_at": last_received.isoformat() if last_received else "never",
        "preview": preview_table(preview, PREVIEW_COLUMNS),
    }


def _read_summary(session, now) -> dict:
    """The counts the materialization reports: totals, events by type (24 h, 7 d), the pools with the most
    warnings in 7 d, events not matched to a discovered instance, dead letters, and the latest events."""
    day_ago, week_ago = now - timedelta(days=1), now - timedelta(days=7)
    t = SpotInterruptionEvent

    def by_type(since) -> dict:
        return dict(
            session.execute(select(t.event_type, func.count()).where(t.event_time >= since).group_by(t.event_type))
            .tuples()
            .all()
        )

    return {
        "total": session.scalar(select(func.count()).select_from(t)) or 0,
        "by_type_24h": by_type(day_ago),
        "by_type_7d": by_type(week_ago),
        "warnings_by_pool": session.execute(
            select(t.instance_type, t.availability_zone_id, func.count())
            .where(t.event_type == "spot_interruption_warning", t.event_time >= week_ago)
            .group_by(t.instance_type, t.availability_zone_id)
            .order_by(func.count().desc())
            .limit(20)
        ).all(),
        "unenriched": session.scalar(select(func.count()).select_from(t).where(t.availability_zone_id.is_(None))) or 0,
        "dead_24h": session.scalar(
            select(func.count()).select_from(DeadLetter).where(DeadLetter.received_at >= day_ago)
        )
        or 0,
        "latest": session.scalars(select(t).order_by(t.event_time.desc()).limit(20)).all(),
        "last_received": session.scalar(select(func.max(t.received_at))),
    }


spot_interruption_events_job = dg.define_asset_job(
    "refresh_spot_interruption_events",
    selection=[spot_interruption_events],
    description="Re-summarise the recorded spot interruption events (requested when new ones arrive).",
)
