"""Writing test rows into the app database through the models (market, operations, fleet)."""

from __future__ import annotations

import pandas as pd
from sqlalchemy import insert

from spot_pipelines.db.accounts import Account
from spot_pipelines.db.discovery import Instance
from spot_pipelines.db.engine import session_factory
from spot_pipelines.db.interruptions import SpotInterruptionEvent
from spot_pipelines.db.market_data import InstanceTypeSpec, OnDemandPrice, SpotAdvisorEntry, SpotPrice
from spot_pipelines.db.optimization import SpotRecommendation
from tests.support.aws_fakes import KEYS_ACCOUNT_ID
from tests.support.factories import END

NOW = END  # the seeded world's present


def _rows(frame: pd.DataFrame) -> list[dict]:
    return frame.astype(object).where(frame.notna(), None).to_dict("records")


def seed_market(url: str, data: dict[str, pd.DataFrame]) -> None:
    prices = data["prices"].copy()
    prices["ts"] = [t.to_pydatetime() for t in prices["ts"]]
    events = data["events"].assign(
        received_at=lambda f: f["event_time"],
        aws_account_id=KEYS_ACCOUNT_ID,
        instance_id=[f"i-{k:017x}" for k in range(len(data["events"]))],
    )
    events["event_time"] = [t.to_pydatetime() if hasattr(t, "to_pydatetime") else t for t in events["event_time"]]
    events["received_at"] = events["event_time"]
    with session_factory(url)() as session, session.begin():
        session.execute(
            insert(SpotPrice),
            _rows(
                prices[
                    [
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
                ]
            ),
        )
        session.execute(insert(OnDemandPrice), _rows(data["on_demand"].assign(source="bundled_snapshot", as_of=NOW)))
        session.execute(insert(SpotAdvisorEntry), _rows(data["advisor"].assign(source="bundled_snapshot")))
        session.execute(insert(InstanceTypeSpec), _rows(data["catalog"]))
        if len(events):
            session.execute(insert(SpotInterruptionEvent), _rows(events))


def add_keys_account(url: str, vault, name: str = "prod") -> int:
    with session_factory(url)() as session, session.begin():
        account = Account(
            name=name,
            status="active",
            aws_account_id=KEYS_ACCOUNT_ID,
            auth_method="keys",
            access_key_id="AKIAIOSFODNN7EXAMPLE",
            encrypted_secret=vault.encrypt("wJalrXUtnFEMI/K7MDENGbPxRfiCYEXAMPLEKEY"),
        )
        session.add(account)
        session.flush()
        return account.id


def add_instances(url: str, account_id: int, rows: list[dict]) -> None:
    with session_factory(url)() as session, session.begin():
        for row in rows:
            session.add(
                Instance(
                    account_id=account_id,
                    region=row.get("region", "us-east-1"),
                    availability_zone=row.get("availability_zone"),
                    availability_zone_id=row.get("availability_zone_id"),
                    instance_id=row["instance_id"],
                    instance_type=row["instance_type"],
                    lifecycle=row.get("lifecycle", "on-demand"),
                    state=row.get("state", "running"),
                    platform=row.get("platform", "Linux/UNIX"),
                    architecture=row.get("architecture"),
                    tags=row.get("tags", {}),
                    first_seen_at=NOW,
                    last_seen_at=NOW,
                )
            )


def add_recommendation(
    url: str,
    account_id: int,
    instance_id: str,
    *,
    status: str = "approved",
    current: str = "m5.large",
    target: str = "m6i.large",
    az_id: str = "use1-az1",
    action: str = "move_to_spot",
    market: str = "spot",
) -> int:
    with session_factory(url)() as session, session.begin():
        rec = SpotRecommendation(
            generation_id="test",
            account_id=account_id,
            instance_id=instance_id,
            region="us-east-1",
            availability_zone_id=az_id,
            current_instance_type=current,
            current_lifecycle="on-demand",
            action=action,
            target_instance_type=target,
            target_availability_zone_id=az_id,
            target_market=market,
            candidates=[],
            on_demand_hourly_cost=0.096,
            current_hourly_cost=0.096,
            recommended_hourly_cost=0.04,
            p_interruption=0.02,
            monthly_savings_usd=40.88,
            reason="test",
            status=status,
            generated_at=NOW,
            approved_at=NOW if status == "approved" else None,
            approved_by="tester" if status == "approved" else None,
        )
        session.add(rec)
        session.flush()
        return rec.id
