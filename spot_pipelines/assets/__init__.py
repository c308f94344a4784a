"""The shared wiring of the asset modules; defines no asset (an asset module never imports another, so what
two of them need lives here): AWS errors as a run's Failure, the automation conditions of the derived assets,
a DataFrame's table schema, run config to core dataclass, and the health round that component_health and
discovery both run."""

from dataclasses import fields
from datetime import datetime, timezone
from typing import TypeVar

import dagster as dg
import pandas as pd
import sqlalchemy as sa

from spot_pipelines.core.aws_errors import describe, is_permanent
from spot_pipelines.core.health import HealthThresholds
from spot_pipelines.db.health import HealthRound, build_checks, run_health_round
from spot_pipelines.resources.app_database import AppDatabase
from spot_pipelines.resources.kubernetes import KubernetesResource
from spot_pipelines.resources.redis import RedisResource

Core = TypeVar("Core")


def core_config(core_cls: type[Core], config: dg.Config, **extra) -> Core:
    """The core dataclass from the run config fields of the same name: the run config declares its defaults
    as `= CoreDataclass.field`, so each default lives once, in core/."""
    given = type(config).model_fields
    return core_cls(**{f.name: getattr(config, f.name) for f in fields(core_cls) if f.name in given}, **extra)


# The other half of AWS_RETRY_POLICY, for every AWS-calling asset.
def aws_failure(what: str, exc: BaseException) -> dg.Failure:
    """`what: cause` as a Failure. What a retry cannot fix (credentials, permissions, bad input or
    data) bypasses the RetryPolicy and fails the run at once; throttling and network errors keep it."""
    return dg.Failure(description=f"{what}: {describe(exc)}", allow_retries=not is_permanent(exc))


# Like eager(), but without "no dependency partition may be missing": the daily market-data assets
# always have unmaterialized old partitions, which would block eager() forever.
AFTER_NEW_DATA = (
    (dg.AutomationCondition.newly_missing() | dg.AutomationCondition.any_deps_updated()).since_last_handled()
    & ~dg.AutomationCondition.any_deps_in_progress()
    & ~dg.AutomationCondition.in_progress()
).with_label("after new upstream data")


def upstream_present(*required: str) -> dg.AutomationCondition:
    """Each required upstream has at least one materialization (or gets one in this same run): scoring with
    no price history, or recommending for a fleet never discovered, would only write an empty generation."""
    present = ~dg.AutomationCondition.missing() | dg.AutomationCondition.will_be_requested()
    return (
        dg.AutomationCondition.all_deps_match(present)
        .allow(dg.AssetSelection.assets(*required))
        .with_label(f"{', '.join(required)} materialized")
    )


def problems_check(name: str, problems: list, passing: str) -> dg.AssetCheckResult:
    """A check result from a core check's offenders: passed when there are none, else the first few in words."""
    shown = "; ".join(map(str, problems[:10])) + (f"; {len(problems) - 10} more" if len(problems) > 10 else "")
    return dg.AssetCheckResult(
        check_name=name,
        passed=not problems,
        description=passing if not problems else f"{len(problems)} failing: {shown}",
        metadata={"failing": len(problems)},
    )


# Meaning and unit of the columns the stored tables share; an asset module adds its own (`table_metadata`).
COLUMN_DESCRIPTIONS = {
    "account_id": "internal id of the onboarded account (accounts.id); previews show its name",
    "aws_account_id": "12-digit AWS account id",
    "instance_id": "EC2 instance id",
    "region": "AWS region code",
    "availability_zone": "AZ name: differs per AWS account, shown only",
    "availability_zone_id": "AZ ID (e.g. use1-az1): the same zone in every account, the join key",
    "instance_type": "EC2 instance type",
    "product_description": "spot product (operating system), e.g. Linux/UNIX",
    "operating_system": "operating system of the price",
    "lifecycle": "on-demand, spot, scheduled or capacity-block",
    "state": "EC2 instance state at the last scan",
    "spot_price": "USD/h: spot price in force",
    "on_demand_price": "USD/h: list on-demand price",
    "price": "USD/h: spot price from this change on",
    "usd_per_hour": "USD/h: list on-demand price",
    "p_interruption": "probability 0-1 of an interruption within horizon_hours",
    "horizon_hours": "hours: the prediction horizon",
    "model_version": "interruption_model version that predicted (0: advisor-band prior)",
    "savings_pct": "percent: the Spot Advisor's savings over on-demand",
    "interruption_band": "Spot Advisor band 0-4 (<5%, 5-10%, 10-15%, 15-20%, >20% interruptions/month)",
    "advisor_band": "Spot Advisor band 0-4",
    "score": "risk score 0-1 (higher: riskier)",
    "risk_score": "risk score 0-1 of the market",
    "volatility": "coefficient of variation of the price over the window",
    "latency_ms": "ms the check took",
    "id": "row id",
    "predicted_at": "UTC time of the prediction",
}


def table_metadata(table: sa.Table, descriptions: dict[str, str] | None = None) -> dict:
    """`dagster/table_name` and `dagster/column_schema` of a stored table, for the asset definition: the catalog
    shows them before any run, and they are the ORM table the asset writes (tests compare them to the migrated
    database)."""
    known = {**COLUMN_DESCRIPTIONS, **{k: v for k, v in (descriptions or {}).items() if v}}
    columns = [
        dg.TableColumn(
            c.name,
            str(c.type).lower(),
            description=known.get(c.name),
            constraints=dg.TableColumnConstraints(nullable=c.nullable, unique=bool(c.unique)),
        )
        for c in table.columns
    ]
    return {"dagster/table_name": table.name, "dagster/column_schema": dg.TableSchema(columns=columns)}


def _cell(value):
    """A TableRecord value: numbers and text as they are, missing as None, anything else in words."""
    if value is None or (isinstance(value, float) and value != value):
        return None
    if isinstance(value, (bool, int, float, str)):
        return value
    if hasattr(value, "item"):  # numpy scalar
        return _cell(value.item())
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def _kind(values: list) -> str:
    present = [v for v in values if v is not None]
    if present and all(isinstance(v, bool) for v in present):
        return "bool"
    if present and all(isinstance(v, int) and not isinstance(v, bool) for v in present):
        return "int"
    if present and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
        return "float"
    return "string"


def preview_table(rows, columns, limit: int = 20, descriptions: dict[str, str] | None = None) -> dg.MetadataValue:
    """The first `limit` rows as table metadata (renders inline in the UI, unlike markdown), with each column's
    meaning and unit."""
    known = {**COLUMN_DESCRIPTIONS, **(descriptions or {})}
    cells = [{c: _cell(row.get(c)) for c in columns} for row in list(rows)[:limit]]
    schema = dg.TableSchema(
        columns=[dg.TableColumn(c, _kind([r[c] for r in cells]), description=known.get(c)) for c in columns]
    )
    return dg.MetadataValue.table(records=[dg.TableRecord(r) for r in cells], schema=schema)


def frame_schema(frame: pd.DataFrame) -> dg.TableSchema:
    return dg.TableSchema(columns=[dg.TableColumn(str(c), str(t)) for c, t in frame.dtypes.items()])


RECOMMENDATIONS_KEY = dg.AssetKey("spot_recommendations")


def latest_materialization_lookup(instance: dg.DagsterInstance | None, key: dg.AssetKey = RECOMMENDATIONS_KEY):
    """A callable returning when `key` last materialized successfully (None: never), or None
    without an instance."""
    if instance is None:
        return None

    def lookup() -> datetime | None:
        entry = instance.get_latest_materialization_event(key)
        return datetime.fromtimestamp(entry.timestamp, timezone.utc) if entry is not None else None

    return lookup


def refresh_component_health(
    app_db: AppDatabase,
    instance: dg.DagsterInstance | None,
    *,
    redis: RedisResource,
    kubernetes: KubernetesResource,
    thresholds: HealthThresholds | None = None,
    timeout_s: float = 1.0,
    run_id: str | None = None,
    trigger: str = "manual",
) -> HealthRound:
    """One health round with the run's resources: component_health on its schedule, discovery right after a
    successful scan."""
    url = app_db.resolved_url()
    checks = build_checks(
        url,
        thresholds=thresholds or HealthThresholds(),
        timeout_s=timeout_s,
        redis=redis,
        k8s_configured=kubernetes.is_configured(),
        latest_materialization=latest_materialization_lookup(instance),
    )
    return run_health_round(url, checks, timeout_s=timeout_s, run_id=run_id, trigger=trigger)
