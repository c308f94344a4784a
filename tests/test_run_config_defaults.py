"""Run config classes take their defaults from the core dataclasses they configure (one place per default), and
`core_config` carries every same-named field across."""

from __future__ import annotations

import inspect
from dataclasses import fields

import pytest

from spot_pipelines.assets import core_config
from spot_pipelines.assets.health import ComponentHealthConfig
from spot_pipelines.assets.ml import TrainModelConfig
from spot_pipelines.assets.optimization import RecommendationsConfig
from spot_pipelines.assets.risk import RiskScoreConfig
from spot_pipelines.core.health import HealthThresholds
from spot_pipelines.core.ml import TrainingConfig
from spot_pipelines.core.optimization import RecommendConfig
from spot_pipelines.core.risk import score_markets

PAIRS = [
    (RecommendationsConfig, RecommendConfig),
    (TrainModelConfig, TrainingConfig),
    (ComponentHealthConfig, HealthThresholds),
]


@pytest.mark.parametrize("run_config, core", PAIRS, ids=lambda c: c.__name__)
def test_run_config_defaults_are_the_core_defaults(run_config, core):
    shared = [f.name for f in fields(core) if f.name in run_config.model_fields]
    assert shared, f"{run_config.__name__} configures none of {core.__name__}"
    defaults = run_config()
    assert {n: getattr(defaults, n) for n in shared} == {n: getattr(core(), n) for n in shared}
    assert core_config(core, defaults) == core()


@pytest.mark.parametrize(
    "run_config, core, changes",
    [
        (RecommendationsConfig, RecommendConfig, {"min_discount_pct": 35.0, "allowed_families": {"m5": ["m6i"]}}),
        (TrainModelConfig, TrainingConfig, {"window_days": 7, "max_iter": 10}),
    ],
    ids=["recommend", "training"],
)
def test_core_config_carries_every_set_field(run_config, core, changes):
    built = core_config(core, run_config(**changes))
    assert {n: getattr(built, n) for n in changes} == changes


def test_risk_window_default_is_the_scorers():
    assert RiskScoreConfig().window_days == inspect.signature(score_markets).parameters["window_days"].default


def test_bad_values_still_fail_in_core_naming_the_field():
    with pytest.raises(Exception, match=r"^min_discount_pct: must be in \[0, 100\)"):
        core_config(RecommendConfig, RecommendationsConfig(min_discount_pct=120))
