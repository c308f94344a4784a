"""Spot placement scores through the real boto3 client (botocore's Stubber stands in for AWS: moto lacks the API):
paginated AZ-level scores, the 10-minute cache, throttling and the 24 h configuration limit, never a made-up
score; recommend()'s gate and reason."""

from __future__ import annotations

from datetime import timedelta

import boto3
import dagster as dg
import pandas as pd
import pytest
from botocore.stub import Stubber
from sqlalchemy import select

from spot_pipelines.core.clock import utcnow
from spot_pipelines.core.errors import ValidationError
from spot_pipelines.core.optimization import RecommendConfig, compatible_markets
from spot_pipelines.core.placement import (
    SCORE_COLUMNS,
    PlacementConfig,
    Request,
    collect,
    fetch,
    requests,
    with_placement_scores,
)
from tests.optimization.test_recommend import by_id, instance, market, run
from tests.support.factories import catalog, on_demand

REQ = Request("us-east-1", ("m5.large", "m6a.large", "m6i.large"), 4)
PARAMS = {
    "InstanceTypes": list(REQ.instance_types),
    "TargetCapacity": 4,
    "TargetCapacityUnitType": "units",
    "SingleAvailabilityZone": True,
    "RegionNames": ["us-east-1"],
}


def ec2():
    return boto3.client("ec2", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y")


def page(*scores, token=None) -> dict:
    body = {"SpotPlacementScores": [{"Region": "us-east-1", "AvailabilityZoneId": az, "Score": s} for az, s in scores]}
    return body | ({"NextToken": token} if token else {})


def test_scores_come_per_az_id_through_the_paginator_and_only_for_what_aws_scored():
    client = ec2()
    with Stubber(client) as stub:
        stub.add_response("get_spot_placement_scores", page(("use1-az1", 9), token="t1"), PARAMS)
        stub.add_response("get_spot_placement_scores", page(("use1-az2", 3)), PARAMS | {"NextToken": "t1"})
        rows = fetch(client, REQ)
        stub.assert_no_pending_responses()
    # use1-az4 was not scored: it has no row, not a guessed one.
    assert rows == [
        {"region": "us-east-1", "availability_zone_id": "use1-az1", "score": 9},
        {"region": "us-east-1", "availability_zone_id": "use1-az2", "score": 3},
    ]


def stored(minutes_ago: float, key: str = REQ.key) -> pd.DataFrame:
    return pd.DataFrame(
        [[key, "us-east-1", "use1-az1", ",".join(REQ.instance_types), 4, 7, utcnow() - timedelta(minutes=minutes_ago)]],
        columns=SCORE_COLUMNS,
    )


def test_a_configuration_fetched_within_10_minutes_is_not_asked_again():
    client = ec2()
    with Stubber(client):  # no response queued: any call would fail the test
        got = collect([REQ], lambda region: client, stored(5), set(), now=utcnow())
    assert got.statuses[0]["status"] == "cached" and got.scores["score"].tolist() == [7]
    with Stubber(client) as stub:
        stub.add_response("get_spot_placement_scores", page(("use1-az1", 8)), PARAMS)
        got = collect([REQ], lambda region: client, stored(11), set(), now=utcnow())
    assert got.statuses[0]["status"] == "fetched" and got.scores["score"].tolist() == [8]
    with pytest.raises(ValidationError, match="cache_minutes"):
        PlacementConfig(cache_minutes=5)


def test_throttling_and_the_24h_configuration_limit_leave_no_score_and_say_why():
    other = Request("us-east-1", ("c5.large", "c5.xlarge", "m5.large"), 2)
    used = Request("us-east-1", ("m5.xlarge", "m6a.xlarge", "m6i.xlarge"), 1)
    throttled = Request("us-east-1", ("r5.large", "m5.2xlarge", "m6i.xlarge"), 1)
    client = ec2()
    with Stubber(client) as stub:
        stub.add_client_error("get_spot_placement_scores", "RequestLimitExceeded", "Request limit exceeded.")
        stub.add_client_error(
            "get_spot_placement_scores",
            "MaxConfigLimitExceeded",
            "You have exceeded your maximum allowed Spot placement configurations.",
        )
        # After the limit only a configuration used within 24 h is asked, and AWS still answers it.
        stub.add_response("get_spot_placement_scores", page(("use1-az1", 6)))
        got = collect([throttled, REQ, other, used], lambda region: client, stored(0)[:0], {used.key}, now=utcnow())
        stub.assert_no_pending_responses()
    status = {s["instance_types"]: (s["status"], s["detail"]) for s in got.statuses}
    assert status[",".join(throttled.instance_types)][0] == "throttled"
    assert status[",".join(REQ.instance_types)] == (
        "config_limit",
        "AWS refused a new request configuration (limit per 24 h): no score, none invented",
    )
    assert status[",".join(other.instance_types)][0] == "config_limit"
    assert "not asked" in status[",".join(other.instance_types)][1]
    assert status[",".join(used.instance_types)][0] == "fetched"
    assert got.scores["config_key"].tolist() == [used.key]


def test_each_shape_asks_for_its_candidate_set_with_its_count_or_is_skipped_saying_why():
    fleet = pd.DataFrame(
        [instance(f"i-{k}", "m5.large") for k in range(3)]
        + [instance("i-x", "m5.large", az="use1-az2"), instance("i-arm", "m6g.large")]
    )
    markets = pd.DataFrame(
        [market(t, p) for t, p in [("m5.large", 0.03), ("m6i.large", 0.035), ("m6a.large", 0.04), ("m5.xlarge", 0.05)]]
        + [market("m6g.large", 0.02)]
    )
    priced, pairs, _ = compatible_markets(fleet, catalog(), on_demand(), markets, RecommendConfig())
    wanted, skipped = requests(priced, pairs, markets, PlacementConfig(max_types=3))
    # m5.large: its own type and its two cheapest compatible ones; 4 instances in the region.
    assert wanted == [Request("us-east-1", ("m5.large", "m6a.large", "m6i.large"), 4)]
    assert skipped.to_dict("records") == [
        {
            "what": "m6g.large in us-east-1",
            "reason": "only 1 compatible instance type(s): a placement score needs at least 3 (AWS scores fewer low)",
        }
    ]


def test_recommend_gates_on_the_placement_score_and_shows_it_in_the_reason():
    markets = pd.DataFrame([market("m5.large", 0.03), market("m6i.large", 0.04), market("m6a.large", 0.045)])
    scores = pd.DataFrame(
        [
            ["k1", "us-east-1", "use1-az1", "m5.large,m6i.large,m6a.large", 1, 2, utcnow()],
            ["k2", "us-east-1", "use1-az1", "m6i.large,m6a.large,m5.xlarge", 1, 8, utcnow()],
        ],
        columns=SCORE_COLUMNS,
    )
    scored = with_placement_scores(markets, scores).to_dict("records")
    # m5.large's best configuration scored 2; m6i.large's best 8.
    plain = by_id(run([instance("i-1", "m5.large")], scored))
    assert plain["i-1"]["target_instance_type"] == "m5.large"
    assert "placement score 2/10 in use1-az1" in plain["i-1"]["reason"]
    gated = by_id(run([instance("i-1", "m5.large")], scored, min_placement_score=5))
    assert gated["i-1"]["target_instance_type"] == "m6i.large"
    assert "placement score 8/10 in use1-az1, at least 5 required" in gated["i-1"]["reason"]
    unscored = with_placement_scores(markets, scores[scores["config_key"] == "k2"]).to_dict("records")
    other = by_id(run([instance("i-1", "m5.large")], unscored))
    assert "AWS gave no placement score for m5.large in use1-az1" in other["i-1"]["reason"]
    with pytest.raises(ValidationError, match="min_placement_score"):
        RecommendConfig(min_placement_score=11)


_CLIENT = {}


class StubbedAPIs(dg.ConfigurableResource):
    """MarketDataAPIs' ec2() handing out the stubbed real client."""

    def ec2(self, region: str = "us-east-1"):
        return _CLIENT["ec2"]


def test_the_asset_stores_a_daily_history_and_reuses_a_fresh_fetch(sqlite_url, encryption_key):
    from sqlalchemy import insert

    from spot_pipelines.assets.placement import spot_placement_scores
    from spot_pipelines.db.engine import session_factory
    from spot_pipelines.db.market_data import InstanceTypeSpec, OnDemandPrice
    from spot_pipelines.db.ml import InterruptionPrediction
    from spot_pipelines.db.placement import SpotPlacementScore
    from spot_pipelines.resources.app_database import AppDatabase
    from spot_pipelines.resources.credential_vault import CredentialVault
    from tests.support.seed import add_instances, add_keys_account

    now = utcnow()
    account = add_keys_account(sqlite_url, CredentialVault(encryption_key=encryption_key))
    add_instances(
        sqlite_url,
        account,
        [{"instance_id": f"i-{k}", "instance_type": "m5.large", "availability_zone_id": "use1-az1"} for k in range(4)],
    )
    with session_factory(sqlite_url)() as session, session.begin():
        session.execute(
            insert(OnDemandPrice), on_demand().assign(source="bundled_snapshot", as_of=now).to_dict("records")
        )
        session.execute(insert(InstanceTypeSpec), catalog().to_dict("records"))
        session.execute(
            insert(InterruptionPrediction),
            [
                market(t, p) | {"risk_score": 0.1, "on_demand_price": 0.096, "predicted_at": now}
                for t, p in [("m5.large", 0.03), ("m6i.large", 0.035), ("m6a.large", 0.04)]
            ],
        )
    _CLIENT["ec2"] = ec2()

    def materialize():
        return dg.materialize(
            [spot_placement_scores],
            resources={"app_db": AppDatabase(url=sqlite_url), "market_apis": StubbedAPIs()},
            instance=dg.DagsterInstance.ephemeral(),
        )

    with Stubber(_CLIENT["ec2"]) as stub:
        stub.add_response("get_spot_placement_scores", page(("use1-az1", 9), ("use1-az2", 4)), PARAMS)
        first = materialize()
        stub.assert_no_pending_responses()
    [event] = first.get_asset_materialization_events()
    assert event.materialization.metadata["dagster/row_count"].value == 2
    assert event.materialization.metadata["requests_by_status"].value == {"fetched": 1}
    with Stubber(_CLIENT["ec2"]):  # within 10 minutes: nothing is asked
        again = materialize()
    [event] = again.get_asset_materialization_events()
    assert event.materialization.metadata["requests_by_status"].value == {"cached": 1}
    with session_factory(sqlite_url)() as session:
        rows = session.scalars(select(SpotPlacementScore)).all()
    assert sorted((r.availability_zone_id, r.score, r.day) for r in rows) == [
        ("use1-az1", 9, now.date()),
        ("use1-az2", 4, now.date()),
    ]
