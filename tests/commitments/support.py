"""Small builders for commitments tests: fleets, RIs, Savings Plans and rates as the core frames."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd

from spot_pipelines.core import commitments as cm
from spot_pipelines.core.clock import utcnow

REGION = "us-east-1"
AZ = "use1-az1"
OD = {"m5.large": 0.096, "m5.xlarge": 0.192, "m5.2xlarge": 0.384, "c5.xlarge": 0.17, "r5.xlarge": 0.252}


def instance(iid: str, itype: str, pool: str = "p1", az: str = AZ, platform: str = cm.LINUX) -> dict:
    return {
        "pool": pool,
        "instance_id": iid,
        "region": REGION,
        "availability_zone_id": az,
        "instance_type": itype,
        "product_description": platform,
        "od": OD[itype],
    }


def fleet(*rows: dict) -> pd.DataFrame:
    return pd.DataFrame(list(rows))


def leaving(frame: pd.DataFrame, *ids: str) -> pd.DataFrame:
    return frame[frame["instance_id"].isin(ids)].assign(delta=-1)


def ri(
    rid: str,
    itype: str,
    count: int,
    *,
    pool: str = "p1",
    zonal: bool = False,
    az: str = AZ,
    platform: str = cm.LINUX,
    ends_in_hours: float = 24 * 365,
    usd_per_hour: float | None = None,
) -> dict:
    now = utcnow()
    return {
        "commitment_id": rid,
        "account_id": 1,
        "region": REGION,
        "scope": cm.ZONAL if zonal else cm.REGIONAL,
        "availability_zone_id": az if zonal else None,
        "instance_type": itype,
        "product_description": platform,
        "tenancy": "default",
        "instance_count": count,
        "offering_class": "standard",
        "start": now - timedelta(days=30),
        "end": now + timedelta(hours=ends_in_hours),
        "usd_per_hour": usd_per_hour if usd_per_hour is not None else round(OD[itype] * 0.6, 6),
        "pool": pool,
    }


def sp(
    pid: str,
    commitment: float,
    *,
    plan_type: str = cm.COMPUTE_SP,
    family: str | None = None,
    pool: str = "p1",
    ends_in_hours: float = 24 * 365,
) -> dict:
    now = utcnow()
    return {
        "commitment_id": pid,
        "account_id": 1,
        "plan_type": plan_type,
        "region": REGION if plan_type == cm.EC2_INSTANCE_SP else None,
        "instance_family": family,
        "commitment_usd_per_hour": commitment,
        "term_years": 1.0,
        "start": now - timedelta(days=30),
        "end": now + timedelta(hours=ends_in_hours),
        "pool": pool,
    }


def rate(pid: str, itype: str, usd: float, platform: str = cm.LINUX) -> dict:
    return {
        "commitment_id": pid,
        "region": REGION,
        "instance_type": itype,
        "product_description": platform,
        "usd_per_hour": usd,
    }


def book(ris=(), sps=(), rates=()) -> cm.Book:
    empty = cm.Book.empty()
    return cm.Book(
        pd.DataFrame(list(ris), columns=empty.reserved.columns),
        pd.DataFrame(list(sps), columns=empty.savings_plans.columns),
        pd.DataFrame(list(rates), columns=empty.rates.columns),
    )
