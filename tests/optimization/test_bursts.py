"""Interruption bursts with hysteresis: a burst makes a pool hot, only a quiet period cools it; recommend() targets
no hot pool and says why a spot instance leaves one."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import pytest

from spot_pipelines.core.clock import utcnow
from spot_pipelines.core.errors import ValidationError
from spot_pipelines.core.risk import BurstConfig, hot_pools, with_hot_pools
from tests.optimization.test_recommend import by_id, instance, market, run

T0 = utcnow().replace(minute=0, second=0, microsecond=0) - timedelta(days=10)
CONFIG = BurstConfig(burst_warnings=3, burst_window_hours=6, burst_quiet_hours=24)


def warnings(*hours_after_t0: float, itype: str = "m5.large", az: str = "use1-az1") -> pd.DataFrame:
    return pd.DataFrame(
        {
            "event_type": "spot_interruption_warning",
            "event_time": [T0 + timedelta(hours=h) for h in hours_after_t0],
            "region": "us-east-1",
            "availability_zone_id": az,
            "instance_type": itype,
        }
    )


def hot_at(events: pd.DataFrame, hours: list[float]) -> list[bool]:
    return [not hot_pools(events, T0 + timedelta(hours=h), CONFIG).empty for h in hours]


def transitions(states: list[bool]) -> int:
    return sum(a != b for a, b in zip(states, states[1:]))


def test_a_burst_then_quiet_is_hot_once_and_cools_after_the_quiet_period():
    events = warnings(0, 1, 2)
    hours = [h / 2 for h in range(-2, 100)]
    states = hot_at(events, hours)
    # Hot once the third warning is stored, until 24 quiet hours after it; one way in, one way out.
    assert states == [2 < h < 26 for h in hours]
    assert transitions(states) == 2


def test_a_pool_interrupted_now_and_then_after_a_burst_stays_hot_instead_of_flapping():
    events = warnings(0, 1, 2, 22, 42, 62)  # each later warning comes before 24 quiet hours have passed
    hours = [h / 2 for h in range(0, 200)]
    states = hot_at(events, hours)
    assert states == [2 < h < 86 for h in hours]
    [row] = hot_pools(events, T0 + timedelta(hours=70), CONFIG).to_dict("records")
    assert row["warnings"] == 6 and row["last_warning"] == T0 + timedelta(hours=62)
    assert "a burst of 3 interruption warnings within 6 h" in row["hot_note"]


def test_sparse_warnings_never_make_a_pool_hot_and_a_cooled_pool_needs_a_new_burst():
    assert not any(hot_at(warnings(0, 10, 20, 30), [h for h in range(0, 60)]))
    after_cooling = warnings(0, 1, 2, 40)  # cooled at 26 h; one warning at 40 h is no burst
    assert hot_at(after_cooling, [25, 27, 41, 50]) == [True, False, False, False]


def test_hot_pools_are_per_pool_and_ignore_other_event_types():
    events = pd.concat(
        [
            warnings(0, 1, 2),
            warnings(0, 1, 2, az="use1-az2").assign(event_type="rebalance_recommendation"),
            warnings(0, 3, az="use1-az4"),
        ]
    )
    hot = hot_pools(events, T0 + timedelta(hours=5), CONFIG)
    assert hot[["availability_zone_id", "instance_type"]].values.tolist() == [["use1-az1", "m5.large"]]


def test_recommend_targets_no_hot_pool_and_says_why_a_spot_instance_leaves_one():
    markets = pd.DataFrame(
        [market("m5.large", 0.03), market("m6i.large", 0.04), market("m5.large", 0.03, az="use1-az2")]
    )
    hot = hot_pools(warnings(0, 1, 2), T0 + timedelta(hours=3), CONFIG)
    gated = with_hot_pools(markets, hot).to_dict("records")
    recs = by_id(run([instance("i-od", "m5.large"), instance("i-spot", "m5.large", lifecycle="spot")], gated))
    assert recs["i-od"]["target_instance_type"] == "m6i.large"  # the cheaper m5.large pool is hot
    assert recs["i-spot"]["action"] == "diversify" and recs["i-spot"]["target_instance_type"] == "m6i.large"
    assert "its pool is hot: a burst of 3 interruption warnings within 6 h" in recs["i-spot"]["reason"]
    # Without the burst the cheaper pool is the target again, and a spot instance in it stays.
    plain = by_id(run([instance("i-od", "m5.large"), instance("i-spot", "m5.large", lifecycle="spot")], markets))
    assert plain["i-od"]["target_instance_type"] == "m5.large" and "i-spot" not in plain


def test_a_hot_pool_with_no_alternative_returns_to_on_demand():
    hot = hot_pools(warnings(0, 1, 2), T0 + timedelta(hours=3), CONFIG)
    gated = with_hot_pools(pd.DataFrame([market("m5.large", 0.03)]), hot).to_dict("records")
    recs = by_id(run([instance("i-spot", "m5.large", lifecycle="spot")], gated))
    assert recs["i-spot"]["action"] == "return_to_on_demand"
    assert "its pool is hot" in recs["i-spot"]["reason"]


def test_bad_burst_config_names_the_field():
    with pytest.raises(ValidationError, match="burst_window_hours"):
        BurstConfig(burst_window_hours=30, burst_quiet_hours=24)
    with pytest.raises(ValidationError, match="burst_warnings"):
        BurstConfig(burst_warnings=0)


def test_spot_recommendations_reads_the_burst_from_the_stored_warnings(sqlite_url, encryption_key):
    import dagster as dg
    from sqlalchemy import insert, select

    from spot_pipelines.assets.optimization import spot_recommendations
    from spot_pipelines.db.engine import session_factory
    from spot_pipelines.db.interruptions import SpotInterruptionEvent
    from spot_pipelines.db.market_data import InstanceTypeSpec, OnDemandPrice
    from spot_pipelines.db.ml import InterruptionPrediction
    from spot_pipelines.db.optimization import SpotRecommendation
    from spot_pipelines.resources.app_database import AppDatabase
    from spot_pipelines.resources.credential_vault import CredentialVault
    from tests.support.factories import catalog, on_demand
    from tests.support.seed import add_instances, add_keys_account

    now = utcnow()
    account = add_keys_account(sqlite_url, CredentialVault(encryption_key=encryption_key))
    add_instances(
        sqlite_url,
        account,
        [
            {
                "instance_id": "i-spot",
                "instance_type": "m5.large",
                "availability_zone_id": "use1-az1",
                "lifecycle": "spot",
            }
        ],
    )
    events = [
        {
            "event_id": f"e{h}",
            "event_type": "spot_interruption_warning",
            "event_time": now - timedelta(hours=h),
            "received_at": now,
            "aws_account_id": "123456789012",
            "region": "us-east-1",
            "availability_zone_id": "use1-az1",
            "instance_id": f"i-{h:017x}",
            "instance_type": "m5.large",
        }
        for h in (1, 2, 3)
    ]
    predictions = [
        m | {"risk_score": 0.1, "on_demand_price": 0.096, "predicted_at": now}
        for m in (market("m5.large", 0.03), market("m6i.large", 0.04))
    ]
    with session_factory(sqlite_url)() as session, session.begin():
        session.execute(
            insert(OnDemandPrice), on_demand().assign(source="bundled_snapshot", as_of=now).to_dict("records")
        )
        session.execute(insert(InstanceTypeSpec), catalog().to_dict("records"))
        session.execute(insert(SpotInterruptionEvent), events)
        session.execute(insert(InterruptionPrediction), predictions)
    result = dg.materialize(
        [spot_recommendations],
        resources={"app_db": AppDatabase(url=sqlite_url)},
        instance=dg.DagsterInstance.ephemeral(),
    )
    [event] = result.get_asset_materialization_events()
    assert event.materialization.metadata["hot_pools"].value == 1
    with session_factory(sqlite_url)() as session:
        [rec] = session.scalars(select(SpotRecommendation)).all()
    assert (rec.action, rec.target_instance_type) == ("diversify", "m6i.large")
    assert "its pool is hot" in rec.reason
