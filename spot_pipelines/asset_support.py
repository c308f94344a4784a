"""Dagster helpers shared by asset modules (an asset module never imports another): AWS errors as a
run's Failure, the automation conditions of the derived assets, and a DataFrame's table schema."""

from dataclasses import fields
from typing import TypeVar

import dagster as dg
import pandas as pd

from spot_pipelines.core.aws_errors import describe, is_permanent


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
    return dg.AutomationCondition.all_deps_match(present).allow(
        dg.AssetSelection.assets(*required)).with_label(f"{', '.join(required)} materialized")


def frame_schema(frame: pd.DataFrame) -> dg.TableSchema:
    return dg.TableSchema(columns=[dg.TableColumn(str(c), str(t)) for c, t in frame.dtypes.items()])
