"""The four optimization assets and the blocking model check, end to end on SQLite and Postgres."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
from sqlalchemy import func, select

from spot_pipelines.assets.ml import interruption_model, interruption_model_quality, interruption_predictions
from spot_pipelines.assets.optimization import spot_recommendations
from spot_pipelines.assets.risk import interruption_risk_scores
from spot_pipelines.db import frames
from spot_pipelines.db import market_data as market_rows
from spot_pipelines.db import ml as ml_rows
from spot_pipelines.db import optimization as opt
from spot_pipelines.db import risk as risk_rows
from spot_pipelines.db.engine import get_engine, session_factory
from spot_pipelines.db.market_data import SpotPrice as p
from spot_pipelines.resources.app_database import AppDatabase
from spot_pipelines.resources.credential_vault import CredentialVault
from spot_pipelines.resources.model_store import LocalModelStore
from tests.support.factories import END, market_data
from tests.support.seed import add_instances, add_keys_account, seed_market

AS_OF = END.isoformat()
ALL = [
    interruption_risk_scores,
    interruption_model,
    interruption_model_quality,
    interruption_predictions,
    spot_recommendations,
]
RUN_CONFIG = {
    "ops": {
        "interruption_risk_scores": {"config": {"as_of": AS_OF}},
        "interruption_model": {"config": {"as_of": AS_OF, "training_days": 45, "max_iter": 40}},
    }
}


class CorruptingStore(LocalModelStore):
    """Writes a truncated artifact, like a crash mid-upload would."""

    def write(self, name: str, data: bytes) -> str:
        return super().write(name, data[: len(data) // 2])


def seeded(url: str, encryption_key: str) -> int:
    seed_market(url, market_data(days=45, seed=1))
    account_id = add_keys_account(url, CredentialVault(encryption_key=encryption_key))
    add_instances(
        url,
        account_id,
        [
            {"instance_id": "i-od", "instance_type": "m5.large", "availability_zone_id": "use1-az1"},
            *(
                {
                    "instance_id": f"i-web{k}",
                    "instance_type": "m5.xlarge",
                    "availability_zone_id": "use1-az2",
                    "tags": {"aws:autoscaling:groupName": "web"},
                }
                for k in range(3)
            ),
            {"instance_id": "i-mystery", "instance_type": "q9.huge", "availability_zone_id": "use1-az1"},
            {
                "instance_id": "i-gone",
                "instance_type": "m5.large",
                "availability_zone_id": "use1-az1",
                "state": "stopped",
            },
        ],
    )
    return account_id


def materialize(url, store, assets=ALL, selection=None, config=RUN_CONFIG, instance=None):
    return dg.materialize(
        assets,
        run_config=config,
        selection=selection,
        raise_on_error=False,
        instance=instance or dg.DagsterInstance.ephemeral(),
        resources={"app_db": AppDatabase(url=url), "model_store": store},
    )


def count(url, model) -> int:
    with session_factory(url)() as session:
        return session.scalar(select(func.count()).select_from(model))


def registry(url) -> dict[int, ml_rows.ModelRegistryEntry]:
    with session_factory(url)() as session:
        return {e.version: e for e in session.scalars(select(ml_rows.ModelRegistryEntry))}


def mat_metadata(result, key: str) -> dict:
    [event] = [e for e in result.get_asset_materialization_events() if e.asset_key == dg.AssetKey(key)]
    return event.materialization.metadata


def test_end_to_end_scores_model_check_predictions_recommendations(db_url, encryption_key, tmp_path):
    seeded(db_url, encryption_key)
    store = LocalModelStore(base_dir=str(tmp_path / "models"))
    result = materialize(db_url, store)
    assert result.success

    assert count(db_url, risk_rows.InterruptionRiskScore) == 39
    risk_meta = mat_metadata(result, "interruption_risk_scores")
    assert risk_meta["dagster/row_count"].value == 39
    with session_factory(db_url)() as session:
        scored_at = session.scalar(select(func.max(risk_rows.InterruptionRiskScore.scored_at)))
    assert scored_at is not None and scored_at.tzinfo is not None

    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    check = checks.pop("interruption_model_quality")
    assert check.passed, check.description
    assert set(checks) == {
        "probabilities_in_range",
        "every_scored_market_predicted",
        "every_running_instance_accounted",
        "moves_save_money",
        "no_zero_prices",
    }
    assert all(c.passed for c in checks.values()), [c.description for c in checks.values()]
    entry = registry(db_url)[1]
    assert entry.status == "ready" and entry.label_source == "observed_interruptions"
    assert Path(entry.artifact_uri.removeprefix("file://")).exists()
    model_meta = mat_metadata(result, "interruption_model")
    assert model_meta["label_source"].value == "observed_interruptions"
    # The holdout metrics render as a table: the model's row and the baseline's, with the same Brier as stored.
    metrics = {r.data["scored_by"]: r.data for r in model_meta["metrics"].value.records}
    assert set(metrics) == {"model", "advisor band only (baseline)"}
    assert metrics["model"]["brier"] == round(model_meta["brier"].value, 5)

    with session_factory(db_url)() as session:
        predictions = list(session.scalars(select(ml_rows.InterruptionPrediction)))
    assert len(predictions) == 39 and {p.model_version for p in predictions} == {1}
    assert all(0 <= p.p_interruption <= 1 and p.spot_price > 0 for p in predictions)

    with session_factory(db_url)() as session:
        recs = {r.instance_id: r for r in session.scalars(select(opt.SpotRecommendation))}
    assert set(recs) == {"i-od", "i-web0", "i-web1", "i-web2"}
    assert all(r.status == "proposed" and r.model_version == 1 for r in recs.values())
    assert recs["i-od"].action in ("move_to_spot", "stay_on_demand")
    rec_meta = mat_metadata(result, "spot_recommendations")
    assert rec_meta["skipped_instances"].value == 1
    [skip] = [r.data for r in rec_meta["skipped"].records]
    assert skip["instance_id"] == "i-mystery" and "q9.huge is not in the instance type catalog" in skip["reason"]
    # Inline tables with account names, the top recommendations by net savings, columns described.
    top = [r.data for r in rec_meta["top_recommendations"].records]
    moves = [r for r in recs.values() if r.action != "stay_on_demand"]
    assert len(top) == len(moves) and {r["account"] for r in top} == {"prod"}
    nets = [r["net_monthly_savings_usd"] for r in top]
    assert (
        nets == sorted(nets, reverse=True) == sorted((round(r.net_monthly_savings_usd, 4) for r in moves), reverse=True)
    )
    described = {c.name: c.description for c in rec_meta["top_recommendations"].schema.columns}
    assert described["net_monthly_savings_usd"].startswith("USD/month")
    assert [r.data["account"] for r in rec_meta["savings_by_account"].records] == (["prod"] if moves else [])

    # Re-running replaces the proposed slice: the old rows are superseded, nothing duplicates.
    again = materialize(db_url, store, assets=[spot_recommendations], config=None)
    assert again.success
    with session_factory(db_url)() as session:
        rows = list(session.scalars(select(opt.SpotRecommendation)))
    assert sorted(r.status for r in rows) == ["proposed"] * 4 + ["superseded"] * 4
    history = mat_metadata(again, "spot_recommendations")["savings_over_time"]
    assert history.schema.columns[0].name == "generated_at" and len(history.records) == (2 if moves else 0)


def test_a_corrupted_model_is_blocked_and_the_previous_version_keeps_serving(sqlite_url, encryption_key, tmp_path):
    seeded(sqlite_url, encryption_key)
    good = LocalModelStore(base_dir=str(tmp_path / "models"))
    assert materialize(sqlite_url, good).success
    assert registry(sqlite_url)[1].status == "ready"

    # v2's artifact is truncated on write: the blocking check fails, predictions are not run after it.
    bad = CorruptingStore(base_dir=str(tmp_path / "models"))
    result = materialize(sqlite_url, bad)
    assert not result.success
    [check] = [c for c in result.get_asset_check_evaluations() if c.check_name == "interruption_model_quality"]
    assert not check.passed
    assert "v2" in check.description and "corrupted" in check.description
    assert "predictions keep using v1" in check.description
    assert registry(sqlite_url)[2].status == "blocked"
    assert not [
        e for e in result.get_asset_materialization_events() if e.asset_key == dg.AssetKey("interruption_predictions")
    ]

    # Materialized on its own, predictions use v1.
    alone = materialize(sqlite_url, good, assets=[interruption_predictions], config=None)
    assert alone.success
    assert mat_metadata(alone, "interruption_predictions")["model_version"].value == "1"


def test_a_ready_version_whose_artifact_broke_later_falls_back(sqlite_url, encryption_key, tmp_path):
    seeded(sqlite_url, encryption_key)
    store = LocalModelStore(base_dir=str(tmp_path / "models"))
    assert materialize(sqlite_url, store, assets=ALL[:3]).success
    assert materialize(sqlite_url, store, assets=ALL[:3]).success
    assert {v: e.status for v, e in registry(sqlite_url).items()} == {1: "ready", 2: "ready"}
    Path(registry(sqlite_url)[2].artifact_uri.removeprefix("file://")).write_bytes(b"garbage")
    result = materialize(sqlite_url, store, assets=[interruption_predictions], config=None)
    assert result.success
    meta = mat_metadata(result, "interruption_predictions")
    assert meta["model_version"].value == "1"
    assert "corrupted" in str(meta["fell_back_from"].value)
    assert registry(sqlite_url)[2].status == "blocked"
    # With no loadable version left, predictions say so and fall back to the advisor-band prior (version 0).
    Path(registry(sqlite_url)[1].artifact_uri.removeprefix("file://")).unlink()
    prior = materialize(sqlite_url, store, assets=[interruption_predictions], config=None)
    assert prior.success
    meta = mat_metadata(prior, "interruption_predictions")
    assert meta["model_version"].value == "0"
    assert "advisor-band prior" in meta["served_by"].value and "cannot be read" in meta["served_by"].value
    with session_factory(sqlite_url)() as session:
        assert set(session.scalars(select(ml_rows.InterruptionPrediction.model_version))) == {0}


def test_model_without_enough_history_fails_clearly(sqlite_url, encryption_key, tmp_path):
    seeded(sqlite_url, encryption_key)
    config = {"ops": {"interruption_model": {"config": {"as_of": (END - timedelta(days=82)).isoformat()}}}}
    result = materialize(
        sqlite_url, LocalModelStore(base_dir=str(tmp_path)), assets=[interruption_model], config=config
    )
    assert not result.success
    description = result.failure_data_for_node("interruption_model").user_failure_data.description
    assert description.startswith("interruption_model: cannot train:")
    assert registry(sqlite_url) == {}


def test_a_model_worse_than_the_baseline_is_blocked_by_the_check(sqlite_url, encryption_key, tmp_path):
    seeded(sqlite_url, encryption_key)
    store = LocalModelStore(base_dir=str(tmp_path / "models"))
    assert materialize(sqlite_url, store, assets=ALL[:3]).success
    # Pretend the holdout went badly for v1, then run the check again (direct invocation).
    with session_factory(sqlite_url)() as session, session.begin():
        entry = session.get(ml_rows.ModelRegistryEntry, 1)
        entry.metrics = {**entry.metrics, "model": {**entry.metrics["model"], "brier": 0.5, "roc_auc": 0.4}}
    result = interruption_model_quality(app_db=AppDatabase(url=sqlite_url), model_store=store)
    assert not result.passed
    assert "worse than the advisor baseline" in result.description
    assert "predictions use the advisor-band prior (model version 0)" in result.description
    assert registry(sqlite_url)[1].status == "blocked"


@pytest.mark.postgres
def test_postgres_copy_reader_returns_what_the_row_reader_does(pg_url, encryption_key):
    seeded(pg_url, encryption_key)
    start, end = (END - timedelta(days=10)).date(), END.date()
    with get_engine(pg_url).connect() as conn:
        copied = market_rows.read_prices(conn, start, end)
        rows = frames.read_frame(
            conn,
            select(
                p.ts,
                p.region,
                p.availability_zone,
                p.availability_zone_id,
                p.instance_type,
                p.product_description,
                p.price,
                p.is_day_open,
            )
            .where(p.day >= start, p.day < end)
            .order_by(p.region, p.availability_zone_id, p.instance_type, p.product_description, p.ts),
        )
    assert len(copied) == len(rows) > 0
    assert list(copied.columns) == list(rows.columns)
    assert (copied["ts"].to_numpy() == pd.to_datetime(rows["ts"], utc=True).to_numpy()).all()
    assert (copied["price"].to_numpy() == rows["price"].to_numpy()).all()
    for col in ("region", "availability_zone_id", "instance_type", "product_description"):
        assert copied[col].astype(str).tolist() == rows[col].tolist()
    assert copied["is_day_open"].tolist() == rows["is_day_open"].tolist()


def test_a_model_that_only_ties_the_baseline_is_blocked_as_a_warning(sqlite_url, encryption_key, tmp_path):
    seeded(sqlite_url, encryption_key)
    store = LocalModelStore(base_dir=str(tmp_path / "models"))
    assert materialize(sqlite_url, store, assets=ALL[:3]).success
    with session_factory(sqlite_url)() as session, session.begin():
        entry = session.get(ml_rows.ModelRegistryEntry, 1)
        entry.metrics = {**entry.metrics, "model": dict(entry.metrics["baseline"])}
    result = interruption_model_quality(app_db=AppDatabase(url=sqlite_url), model_store=store)
    assert not result.passed and result.severity == dg.AssetCheckSeverity.WARN
    assert "a tie keeps the prior" in result.description
    assert registry(sqlite_url)[1].status == "blocked"


def test_a_tied_model_leaves_the_ml_health_degraded_not_critical(sqlite_url, encryption_key, tmp_path):
    from spot_pipelines.core.health import DEGRADED, HealthThresholds
    from spot_pipelines.db.health import check_ml_model

    seeded(sqlite_url, encryption_key)
    store = LocalModelStore(base_dir=str(tmp_path / "models"))
    assert materialize(sqlite_url, store, assets=ALL[:2]).success  # trained, not yet checked
    with session_factory(sqlite_url)() as session, session.begin():
        entry = session.get(ml_rows.ModelRegistryEntry, 1)
        entry.metrics = {**entry.metrics, "model": dict(entry.metrics["baseline"])}
    interruption_model_quality(app_db=AppDatabase(url=sqlite_url), model_store=store)
    outcome = check_ml_model(get_engine(sqlite_url), HealthThresholds())
    assert outcome.status == DEGRADED and "only ties it" in outcome.details["reason"]
