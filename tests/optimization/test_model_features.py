"""The model's rebalance and placement-score features: counted and looked up as worked out here, independently of
core.risk's arrays; a rebalance is never a label; a market AWS did not score stays NaN; and the placement score
carries signal the advisor band does not, through the product's own quality gate."""

from __future__ import annotations

import hashlib
import io
from datetime import timedelta
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
from sqlalchemy import insert, select, update

from spot_pipelines.assets.ml import evaluate_latest, interruption_predictions
from spot_pipelines.core.ml import (
    ModelArtifactError,
    QualityGate,
    TrainingConfig,
    deserialize,
    serialize,
    train,
    training_frame,
)
from spot_pipelines.core.risk import FEATURES, MARKET_KEY, score_markets
from spot_pipelines.db import ml as ml_rows
from spot_pipelines.db import placement as placement_rows
from spot_pipelines.db import risk as risk_rows
from spot_pipelines.db.engine import get_engine, session_factory
from spot_pipelines.db.frames import read_frame
from spot_pipelines.db.interruptions import SpotInterruptionEvent
from spot_pipelines.resources.app_database import AppDatabase
from spot_pipelines.resources.model_store import LocalModelStore
from tests.optimization.test_assets import ALL, mat_metadata, materialize, registry, seeded
from tests.support.factories import END, REGION, market_data, on_demand

WINDOW = 14
OLD_FEATURES = [f for f in FEATURES if f not in ("observed_rebalances", "placement_score")]


@pytest.fixture(scope="module")
def data():
    return market_data(days=30, seed=4)


def rebalance(at, az: str, itype: str) -> dict:
    return {
        "event_id": f"rb-{itype}-{az}-{at:%Y%m%d%H%M%S}",
        "event_type": "rebalance_recommendation",
        "event_time": at,
        "region": REGION,
        "availability_zone_id": az,
        "instance_type": itype,
    }


def placement_row(at, az: str, types: str, score: int) -> dict:
    return {
        "config_key": f"cfg-{types}",
        "region": REGION,
        "availability_zone_id": az,
        "instance_types": types,
        "target_capacity": 2,
        "score": score,
        "fetched_at": at,
    }


# --------------------------------------------------------------------------- rebalance recommendations


def test_rebalances_are_counted_in_the_window_and_never_change_the_warnings_or_labels(data):
    start = END - timedelta(days=WINDOW)
    inside = [start + timedelta(days=d, hours=3) for d in (0, 2, 2, 9, 13)] + [END - timedelta(seconds=1)]
    outside = [start - timedelta(seconds=1), END, END + timedelta(hours=5)]  # before the window, at/after its end
    rebalances = pd.DataFrame(
        [rebalance(t, "use1-az1", "m5.large") for t in inside + outside]
        + [rebalance(start + timedelta(days=4), "use1-az2", "m5.large")]  # another pool
    )
    with_rb = pd.concat([data["events"], rebalances], ignore_index=True)
    args = (data["prices"], data["on_demand"], data["advisor"])
    plain = score_markets(*args, data["events"], as_of=END).scores.set_index(MARKET_KEY)
    ours = score_markets(*args, with_rb, as_of=END).scores.set_index(MARKET_KEY)
    a1 = (REGION, "use1-az1", "m5.large", "Linux/UNIX")
    a2 = (REGION, "use1-az2", "m5.large", "Linux/UNIX")
    assert ours.at[a1, "observed_rebalances"] == len(inside) == 6
    assert ours.at[a2, "observed_rebalances"] == 1
    assert (ours.drop(index=[a1, a2])["observed_rebalances"] == 0).all()
    assert (plain["observed_rebalances"] == 0).all()
    # A rebalance is not a warning: the warnings, and the transparent score built on them, are unchanged.
    pd.testing.assert_series_equal(ours["observed_interruptions"], plain["observed_interruptions"])
    pd.testing.assert_series_equal(ours["score"], plain["score"])

    # In training: the same counts per market-day, worked out row by row here; labels identical with or without.
    t0 = END - timedelta(days=30)
    many = pd.DataFrame(
        [
            rebalance(t0 + timedelta(days=d, hours=h), az, it)
            for d in range(30)
            for h, az, it in ((1, "use1-az1", "m5.large"), (13, "use1-az4", "c5.large"), (23, "use1-az2", "r5.large"))
            if d % 3 != 1
        ]
    )
    frame = training_frame(*args, pd.concat([data["events"], many]), start=t0, end=END)
    base = training_frame(*args, data["events"], start=t0, end=END)
    assert frame["observed"].tolist() == base["observed"].tolist()  # no rebalance ever makes a positive label
    assert frame["observed_interruptions"].tolist() == base["observed_interruptions"].tolist()
    ends = frame["day"] + timedelta(days=1)
    expected = [
        int(
            (
                (many["availability_zone_id"] == az)
                & (many["instance_type"] == it)
                & (many["event_time"] >= e - timedelta(days=WINDOW))
                & (many["event_time"] < e)
            ).sum()
        )
        for az, it, e in zip(frame["availability_zone_id"], frame["instance_type"], ends)
    ]
    assert frame["observed_rebalances"].astype(int).tolist() == expected
    assert max(expected) > 0 and (frame["observed_rebalances"] > 0).sum() == sum(1 for n in expected if n)


# --------------------------------------------------------------------------- placement scores


def test_the_placement_score_is_the_one_stored_before_the_day_and_nan_where_aws_gave_none(data):
    day = END - timedelta(days=1)  # the scored day: its end is END
    stored = pd.DataFrame(
        [
            # m5.large in use1-az1: 3 two days before, then two configurations holding it on the day (best: 8).
            placement_row(day - timedelta(days=2, hours=-10), "use1-az1", "c5.large,m5.large,m6i.large", 3),
            placement_row(day + timedelta(hours=6), "use1-az1", "c5.large,m5.large,m6i.large", 6),
            placement_row(END - timedelta(seconds=1), "use1-az1", "m5.large,m6a.large,r5.large", 8),
            # fetched at the day's end or after: not known yet, never used
            placement_row(END, "use1-az1", "m5.large,m6a.large,r5.large", 1),
            placement_row(END + timedelta(hours=9), "use1-az2", "m5.large,m6a.large,r5.large", 2),
            # m5.large in use1-az2: only a score older than the 14-day window
            placement_row(END - timedelta(days=WINDOW, seconds=1), "use1-az2", "m5.large,m6a.large,r5.large", 9),
            # c5.large in use1-az4: scored 5 five days before
            placement_row(day - timedelta(days=5), "use1-az4", "c5.large,m5.large,m6i.large", 5),
        ]
    )
    scores = score_markets(
        data["prices"], data["on_demand"], data["advisor"], data["events"], as_of=END, placement=stored
    ).scores.set_index(MARKET_KEY)
    key = lambda az, it: (REGION, az, it, "Linux/UNIX")  # noqa: E731
    assert scores.at[key("use1-az1", "m5.large"), "placement_score"] == 8
    assert scores.at[key("use1-az1", "c5.large"), "placement_score"] == 6
    assert scores.at[key("use1-az1", "r5.large"), "placement_score"] == 8
    assert scores.at[key("use1-az4", "c5.large"), "placement_score"] == 5
    assert scores.at[key("use1-az4", "m6i.large"), "placement_score"] == 5
    # AWS did not score these in the window (or only after its end): missing, not a made-up number.
    for az, it in (("use1-az2", "m5.large"), ("use1-az2", "r5.large"), ("use1-az4", "t3.large")):
        assert np.isnan(scores.at[key(az, it), "placement_score"]), (az, it)
    scored = {key("use1-az1", t) for t in ("c5.large", "m5.large", "m6i.large", "m6a.large", "r5.large")}
    scored |= {key("use1-az4", t) for t in ("c5.large", "m5.large", "m6i.large")}
    assert set(scores.index[scores["placement_score"].notna()]) == scored

    # In training, each market-day sees only the scores fetched before that day's end (and within its window),
    # worked out row by row here: the newest fetch day's best score of the configurations holding the type.
    t0 = END - timedelta(days=30)
    frame = training_frame(
        data["prices"], data["on_demand"], data["advisor"], None, start=t0, end=END, placement=stored
    )
    rows = stored.assign(types=stored["instance_types"].str.split(",")).explode("types")

    def expected(az, it, end):
        seen = rows[
            (rows["availability_zone_id"] == az)
            & (rows["types"] == it)
            & (rows["fetched_at"] < end)
            & (rows["fetched_at"] >= end - timedelta(days=WINDOW))
        ]
        if seen.empty:
            return np.nan
        newest = seen["fetched_at"].dt.floor("D").max()
        return float(seen.loc[seen["fetched_at"].dt.floor("D") == newest, "score"].max())

    want = [
        expected(az, it, d + timedelta(days=1))
        for az, it, d in zip(frame["availability_zone_id"], frame["instance_type"], frame["day"])
    ]
    np.testing.assert_array_equal(frame["placement_score"].to_numpy(), np.array(want))
    # the last example day is END − 2 days (a day of horizon after it): the day's own 8 is not yet known there
    last = frame[(frame["day"] == END - timedelta(days=2)) & (frame["instance_type"] == "m5.large")]
    assert last.set_index("availability_zone_id").at["use1-az1", "placement_score"] == 3


# --------------------------------------------------------------------------- the feature carries signal


def tight_pools(days: int = 60, seed: int = 11):
    """36 pools (12 types x 3 AZ IDs), types in 4 groups of 3 scored together as one configuration per AZ ID. Each
    day each (group, AZ ID) is tight or not (30%, drawn afresh daily: yesterday says nothing about today); AWS
    scores a tight one 1-3 and a calm one 7-10 that day, and a tight pool is interrupted the next day with
    probability 0.7, a calm one 0.02. Group 3 is never scored (its placement score is missing). Prices and the
    advisor band (random per type) are independent of it all: only the placement score tells tight from calm."""
    rng = np.random.default_rng(seed)
    types = ["m5.large", "m6i.large", "m6a.large", "m5.xlarge", "m6i.xlarge", "m6a.xlarge"]
    types += ["c5.large", "c5.xlarge", "r5.large", "m6g.large", "m6g.xlarge", "t3.large"]
    groups = [types[k : k + 3] for k in range(0, 12, 3)]
    azs = ["use1-az1", "use1-az2", "use1-az4"]
    t0 = END - timedelta(days=days)
    od_prices = on_demand()
    od = dict(zip(od_prices["instance_type"], od_prices["usd_per_hour"]))
    prices, events, stored = [], [], []
    for it in types:
        for az in azs:
            ratio = rng.uniform(0.3, 0.6)
            for d in range(days):
                for h in (0, 8, 16):
                    level = ratio * np.exp(rng.normal(0, 0.05))
                    prices.append((t0 + timedelta(days=d, hours=h), az, it, od[it] * level))
    for g, group in enumerate(groups):
        for az in azs:
            for d in range(days):
                tight = rng.random() < 0.3
                if g < 3:
                    score = int(rng.integers(1, 4)) if tight else int(rng.integers(7, 11))
                    at = t0 + timedelta(days=d, hours=int(rng.integers(0, 20)))
                    stored.append(placement_row(at, az, ",".join(sorted(group)), score))
                for it in group:
                    if d + 1 < days and rng.random() < (0.7 if tight else 0.02):
                        at = t0 + timedelta(days=d + 1, seconds=int(rng.integers(0, 86_000)))
                        events.append(
                            {
                                "event_type": "spot_interruption_warning",
                                "event_time": at,
                                "region": REGION,
                                "availability_zone_id": az,
                                "instance_type": it,
                            }
                        )
    price_rows = pd.DataFrame(prices, columns=["ts", "availability_zone_id", "instance_type", "price"]).assign(
        region=REGION, product_description="Linux/UNIX", availability_zone=lambda f: f["availability_zone_id"]
    )
    advisor = pd.DataFrame(
        {
            "day": (t0 - timedelta(days=1)).date(),
            "region": REGION,
            "operating_system": "Linux",
            "instance_type": types,
            "interruption_band": rng.integers(0, 5, len(types)),
            "savings_pct": 60,
        }
    )
    return price_rows, od_prices, advisor, pd.DataFrame(events), pd.DataFrame(stored), t0


@pytest.fixture(scope="module")
def tight():
    prices, od_prices, advisor, events, stored, t0 = tight_pools()
    return training_frame(prices, od_prices, advisor, events, start=t0, end=END, placement=stored)


def test_placement_scores_that_separate_pools_make_a_model_that_beats_the_advisor_through_the_gate(tight):
    config = TrainingConfig(max_iter=60)
    assert tight["placement_score"].notna().any() and tight["placement_score"].isna().any()  # group 3: never scored
    model = train(tight, config)
    assert model.label_source == "observed_interruptions"
    passed, why = QualityGate().verdict(model.metrics)
    assert passed, why
    m, b = model.metrics["model"], model.metrics["baseline"]
    assert m["brier"] < 0.8 * b["brier"] and m["roc_auc"] > b["roc_auc"] + 0.1

    # The same examples with the feature removed (as if no score had been stored): the gate refuses the model.
    blind = train(tight.assign(placement_score=np.nan), config)
    blind_ok, blind_why = QualityGate().verdict(blind.metrics)
    assert not blind_ok, blind_why
    assert blind.metrics["model"]["brier"] > 0.95 * b["brier"]  # no better than the advisor baseline
    assert (
        model.metrics["brier_gain"]["mean"]
        > blind.metrics["brier_gain"]["mean"] + 5 * model.metrics["brier_gain"]["se"]
    )


# --------------------------------------------------------------------------- old artifacts


def test_an_artifact_without_the_new_features_is_refused_naming_them(tight):
    model = train(tight, TrainingConfig(max_iter=20))
    data, _sha = serialize(model, 4)
    old = joblib.load(io.BytesIO(data))
    old["features"] = OLD_FEATURES
    buf = io.BytesIO()
    joblib.dump(old, buf)
    with pytest.raises(ModelArtifactError) as err:
        deserialize(buf.getvalue(), where="v4 (file:///models/v4.joblib)")
    text = str(err.value)
    assert "model artifact v4 (file:///models/v4.joblib) is incompatible" in text
    assert "it lacks feature(s) observed_rebalances, placement_score" in text and "retrain the model" in text
    assert deserialize(data, where="v4")["features"] == FEATURES  # the artifact as trained loads


# --------------------------------------------------------------------------- through the assets and the database


def test_the_assets_store_the_new_features_train_on_them_and_refuse_an_old_artifact(db_url, encryption_key, tmp_path):
    # On SQLite, then the real Postgres: a missing placement score is stored as NULL on both, never a number.
    seeded(db_url, encryption_key)  # 45 days of market data and warnings (tests/optimization/test_assets.py)
    start = END - timedelta(days=WINDOW)
    rb = [rebalance(start + timedelta(days=d, hours=5), "use1-az1", "m5.large") for d in (1, 4, 8)]
    rb.append(rebalance(start - timedelta(hours=1), "use1-az1", "m5.large"))  # before the scoring window
    scored = "c5.large,m5.large,m6i.large"
    with session_factory(db_url)() as session, session.begin():
        session.execute(
            insert(SpotInterruptionEvent),
            [
                {**r, "received_at": r["event_time"], "aws_account_id": "123456789012", "instance_id": "i-rb"}
                for r in rb
            ],
        )
        placement_rows.write_scores(
            session,
            [
                placement_row(END - timedelta(days=2), "use1-az1", scored, 7),
                placement_row(END + timedelta(hours=1), "use1-az1", scored, 2),  # after the window: not used
            ],
        )
    store = LocalModelStore(base_dir=str(tmp_path / "models"))
    result = materialize(db_url, store, assets=ALL[:4])
    assert result.success

    with get_engine(db_url).connect() as conn:
        stored = read_frame(conn, select(risk_rows.InterruptionRiskScore)).set_index(MARKET_KEY)
    a1 = (REGION, "use1-az1", "m5.large", "Linux/UNIX")
    assert stored.at[a1, "observed_rebalances"] == 3 and stored["observed_rebalances"].sum() == 3
    assert stored.at[a1, "placement_score"] == 7
    # c5, m5 and m6i in use1-az1 have the score; every other market's is NULL (AWS gave none), not a number.
    assert stored["placement_score"].notna().sum() == 3
    assert pd.isna(stored.at[(REGION, "use1-az2", "m5.large", "Linux/UNIX"), "placement_score"])
    meta = mat_metadata(result, "interruption_risk_scores")
    assert meta["rebalance_recommendations_in_window"].value == 3
    assert meta["markets_with_placement_score"].value == 3
    entry = registry(db_url)[1]
    assert entry.status == "ready" and entry.features == FEATURES
    assert mat_metadata(result, "interruption_predictions")["model_version"].value == "1"

    # v1's artifact rewritten as an older build stored it (its sha updated, so only the features differ).
    path = Path(entry.artifact_uri.removeprefix("file://"))
    old = joblib.load(io.BytesIO(path.read_bytes()))
    old["features"] = OLD_FEATURES
    buf = io.BytesIO()
    joblib.dump(old, buf)
    path.write_bytes(buf.getvalue())
    with session_factory(db_url)() as session, session.begin():
        session.execute(
            update(ml_rows.ModelRegistryEntry)
            .where(ml_rows.ModelRegistryEntry.version == 1)
            .values(artifact_sha256=hashlib.sha256(buf.getvalue()).hexdigest())
        )
    prior = materialize(db_url, store, assets=[interruption_predictions], config=None)
    assert prior.success
    meta = mat_metadata(prior, "interruption_predictions")
    assert meta["model_version"].value == "0"
    served = meta["served_by"].value
    assert "advisor-band prior" in served and "lacks feature(s) observed_rebalances, placement_score" in served
    v1 = registry(db_url)[1]
    assert v1.status == "blocked" and "lacks feature(s) observed_rebalances, placement_score" in v1.status_reason
    # The blocking check says the same of it, and that the prior serves.
    passed, why, _meta = evaluate_latest(AppDatabase(url=db_url), store)
    assert not passed and "lacks feature(s) observed_rebalances, placement_score" in why
    assert "predictions use the advisor-band prior (model version 0)" in why
