"""recommendation_backtest materialized from stored history: a table per policy, numbers for the Plots tab."""

from __future__ import annotations

from datetime import timedelta

import dagster as dg
import pytest
from cryptography.fernet import Fernet

from spot_pipelines.assets.backtest import recommendation_backtest
from spot_pipelines.db.engine import ensure_schema
from spot_pipelines.resources.app_database import AppDatabase
from spot_pipelines.resources.credential_vault import CredentialVault
from tests.support.factories import END, market_data
from tests.support.seed import add_instances, add_keys_account, seed_market


@pytest.fixture(scope="module")
def seeded_url(tmp_path_factory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('backtest') / 'app.db'}"
    ensure_schema(url)
    seed_market(url, market_data(days=30, seed=3))
    account = add_keys_account(url, CredentialVault(encryption_key=Fernet.generate_key().decode()))
    add_instances(
        url,
        account,
        [
            {"instance_id": f"i-{k}", "instance_type": t, "availability_zone_id": az}
            for k, (t, az) in enumerate([("m5.large", "use1-az1"), ("m5.xlarge", "use1-az2"), ("c5.large", "use1-az4")])
        ],
    )
    return url


def materialize(url: str, **config):
    return dg.materialize(
        [recommendation_backtest],
        run_config={"ops": {"recommendation_backtest": {"config": config}}},
        resources={"app_db": AppDatabase(url=url)},
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )


def test_the_backtest_reports_every_policy_as_a_table_and_plottable_numbers(seeded_url):
    result = materialize(seeded_url, window_days=5, as_of=END.isoformat())
    assert result.success
    [event] = result.get_asset_materialization_events()
    meta = event.materialization.metadata
    table = meta["policies"].value
    policies = [r.data["policy"] for r in table.records]
    assert policies == [
        "recommend",
        "recommend_stateless",
        "recommend_model",
        "on_demand",
        "cheapest_spot",
        "lowest_advisor_band",
        "capacity_optimized",
        "hindsight_best",
    ]
    assert meta["dagster/row_count"].value == 8
    assert meta["instances"].value == 3 and meta["instance_hours"].value == 3 * 5 * 24
    assert meta["window"].value == f"{END - timedelta(days=5):%Y-%m-%d}..{END - timedelta(days=1):%Y-%m-%d}"
    for key in ("recommend_savings_vs_on_demand_pct", "recommend_regret_usd_per_instance_month"):
        assert isinstance(meta[key].value, float)
    by_policy = {r.data["policy"]: r.data for r in table.records}
    # Regret is the cost above the hindsight-best single pool (a policy that switches pools may beat it).
    best = by_policy["hindsight_best"]["cost_usd_per_instance_month"]
    assert best <= by_policy["on_demand"]["cost_usd_per_instance_month"]
    for row in by_policy.values():
        assert row["regret_usd_per_instance_month"] == pytest.approx(
            row["cost_usd_per_instance_month"] - best, abs=2e-4
        )
    assert by_policy["on_demand"]["savings_vs_on_demand_usd_per_instance_month"] == 0
    # The model's worth: recommend's cost minus recommend_model's; each window day on the model or on the prior.
    worth = meta["model_worth_usd_per_instance_month"].value
    cost = {name: row["cost_usd_per_instance_month"] for name, row in by_policy.items()}
    assert worth == pytest.approx(cost["recommend"] - cost["recommend_model"], abs=2e-4)
    assert meta["model_days_on_model"].value + meta["model_days_on_prior"].value == 5
    for name in ("recommend", "recommend_model"):
        assert isinstance(meta[f"{name}_interruptions_per_1000_instance_hours"].value, float)
    [fit] = meta["model_fits"].value.records  # 5 days, a refit every 7: one, on the window's first day
    assert fit.data["day"].startswith(f"{END - timedelta(days=5):%Y-%m-%d}")
    assert fit.data["risk"] in ("model", "prior") and fit.data["reason"]


def test_a_window_before_any_stored_history_fails_naming_the_window(seeded_url):
    long_ago = END - timedelta(days=400)
    result = materialize(seeded_url, window_days=3, as_of=long_ago.isoformat())
    assert not result.success
    failure = result.get_step_failure_events()[0].event_specific_data.error.message
    assert "backtest window" in failure
    assert f"{long_ago - timedelta(days=3):%Y-%m-%d}" in failure


def test_a_retrain_period_below_one_day_fails_naming_the_field(seeded_url):
    result = materialize(seeded_url, window_days=3, model_retrain_days=0, as_of=END.isoformat())
    assert not result.success
    failure = result.get_step_failure_events()[0].event_specific_data.error.message
    assert "model_retrain_days: must be at least 1, got 0" in failure
