"""The shared wiring of the asset modules; defines no asset (an asset module never imports another, so what
two of them need lives here): AWS errors as a run's Failure, the automation conditions of the derived assets,
a DataFrame's table schema, run config to core dataclass, and the health round that component_health and
discovery both run."""

from dataclasses import fields
from datetime import datetime, timezone
from typing import TypeVar

import dagster as dg
import pandas as pd

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
