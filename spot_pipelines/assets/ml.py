"""interruption_model (+ its blocking quality check) and interruption_predictions.

The model asset trains and registers a *candidate*; the blocking check loads the artifact back,
compares it with the advisor-band baseline and promotes it to `ready` or marks it `blocked`.
Predictions always use the newest `ready` version that loads; a broken one is blocked on the spot
and the previous good version keeps serving.
"""

from datetime import timedelta

import dagster as dg
import numpy as np

from spot_pipelines.assets import core_config, preview_table, problems_check, table_metadata, upstream_present
from spot_pipelines.core.clock import utcnow
from spot_pipelines.core.errors import ValidationError
from spot_pipelines.core.ml import (
    ModelArtifactError,
    QualityGate,
    TrainingConfig,
    band_probability,
    deserialize,
    out_of_range_probabilities,
    predict,
    registry_fields,
    serialize,
    train,
    training_frame,
    unpredicted_markets,
)
from spot_pipelines.core.reporting import records
from spot_pipelines.core.risk import FEATURES, window_end
from spot_pipelines.core.validation import parse_as_of
from spot_pipelines.db import interruptions as event_rows
from spot_pipelines.db import market_data as market_rows
from spot_pipelines.db import ml as ml_rows
from spot_pipelines.db import placement as placement_rows
from spot_pipelines.db import risk as risk_rows
from spot_pipelines.resources.app_database import AppDatabase
from spot_pipelines.resources.model_store import ModelStore

RETRAIN_CRON = "0 4 * * 1"  # weekly, Monday 04:00 UTC
BASELINE_VERSION = 0  # predictions from the advisor-band prior when no model version is usable
MODEL_COLUMNS = {
    "version": "model version (1, 2, ...); 0 in predictions is the advisor-band prior",
    "n_train": "training rows",
    "n_holdout": "holdout rows (the newest, time-based)",
    "metrics": "Brier, ROC AUC, log loss of the model and the baseline on the holdout",
    "status": "candidate, ready or blocked (by interruption_model_quality)",
    "artifact_sha256": "SHA-256 of the stored artifact, verified on load",
    "trained_at": "UTC time of training",
    "data_start": "UTC start of the training data",
    "data_end": "UTC end of the training data",
    "holdout_start": "UTC start of the holdout (rows after it are never trained on)",
    "features": "the feature columns, in order",
    "label_source": "observed_interruptions, or the advisor-band weak labels when too few were observed",
    "artifact_uri": "where the model artifact is stored",
    "sklearn_version": "scikit-learn version that trained it (must match to load)",
    "status_reason": "why the quality check promoted or blocked it",
    "checked_at": "UTC time of the quality check",
}
METRIC_COLUMNS = {  # the holdout metrics and reliability tables
    "scored_by": "the model, or the advisor-band baseline it must beat",
    "brier": "Brier score on the holdout (mean squared error of P; lower is better)",
    "roc_auc": "ROC AUC on the holdout (empty when the holdout has one class only)",
    "log_loss": "log loss on the holdout (lower is better)",
    "mean_p": "mean predicted P(interruption within the horizon)",
    "bin": "predicted-probability bin",
    "n": "holdout rows in the bin",
    "mean_predicted": "mean predicted P in the bin",
    "observed_rate": "share of the bin's rows that were interrupted within the horizon",
}


class TrainModelConfig(dg.Config):
    """Core TrainingConfig's tunables (defaults from it; `core_config` builds it), plus the data to train on."""

    training_days: int = 90
    window_days: int = TrainingConfig.window_days
    horizon_hours: int = TrainingConfig.horizon_hours
    holdout_fraction: float = TrainingConfig.holdout_fraction
    min_observed_positives: int = TrainingConfig.min_observed_positives
    max_iter: int = TrainingConfig.max_iter
    as_of: str | None = None


def _metrics_table(metrics: dict) -> dg.MetadataValue:
    rows = []
    for name in ("model", "baseline"):
        m = metrics[name]
        rows.append(
            {
                "scored_by": "model" if name == "model" else "advisor band only (baseline)",
                "brier": round(m["brier"], 5),
                "roc_auc": None if m["roc_auc"] is None else round(m["roc_auc"], 4),
                "log_loss": round(m["log_loss"], 4),
                "mean_p": round(m["mean_prediction"], 4),
            }
        )
    return preview_table(rows, list(rows[0]), descriptions=METRIC_COLUMNS)


def _reliability_table(metrics: dict) -> dg.MetadataValue:
    """Predicted vs observed per probability bin, model and baseline side by side."""
    rows = [
        {"scored_by": who, **{k: round(v, 5) if isinstance(v, float) else v for k, v in row.items()}}
        for who in ("model", "baseline")
        for row in metrics.get("reliability", {}).get(who, [])
    ]
    return preview_table(rows, ["scored_by", "bin", "n", "mean_predicted", "observed_rate"], 40, METRIC_COLUMNS)


@dg.asset(
    group_name="optimization",
    metadata=table_metadata(ml_rows.ModelRegistryEntry.__table__, MODEL_COLUMNS),
    kinds={"scikitlearn"},
    owners=["team:optimization"],
    deps=[
        dg.AssetKey("interruption_risk_scores"),
        dg.AssetKey("spot_price_history"),
        dg.AssetKey("spot_advisor"),
        dg.AssetKey("on_demand_prices"),
        dg.AssetKey("spot_interruption_events"),
    ],
    # Weekly; and while there is no model yet, after each new batch of risk scores (not a week after the first
    # deploy, and a failed first training waits for the next scores rather than retrying every tick).
    automation_condition=(
        dg.AutomationCondition.cron_tick_passed(RETRAIN_CRON)
        | (
            dg.AutomationCondition.missing()
            & dg.AutomationCondition.any_deps_updated().allow(dg.AssetSelection.assets("interruption_risk_scores"))
        )
    ).since_last_handled()
    & upstream_present("interruption_risk_scores")
    & ~dg.AutomationCondition.any_deps_in_progress()
    & ~dg.AutomationCondition.in_progress(),
    description=(
        "A calibrated gradient-boosting Pipeline predicting P(spot interruption warning within the horizon) "
        "per market from interruption_risk_scores' features, rebalance recommendations and the stored spot "
        "placement score (missing where AWS gave none) among them. Labels: observed interruption warnings when "
        "there are enough (a rebalance recommendation is a feature, never a positive label), else the advisor "
        "band as a weak label (metadata says which), horizon_hours ahead (down to 1). Time-based holdout; Brier, "
        "log loss, ROC AUC and "
        "a reliability table against the advisor band alone. "
        "Registers a versioned joblib artifact as a candidate; the blocking check promotes or blocks it."
    ),
)
def interruption_model(
    context: dg.AssetExecutionContext, config: TrainModelConfig, app_db: AppDatabase, model_store: ModelStore
) -> dg.MaterializeResult:
    end = window_end(parse_as_of(config.as_of))
    start = end - timedelta(days=config.training_days)
    tc = core_config(TrainingConfig, config)
    with app_db.connection() as conn:
        prices = market_rows.read_prices(conn, start.date(), end.date())
        on_demand = market_rows.read_on_demand(conn)
        advisor = market_rows.read_advisor(conn, end.date() - timedelta(days=1))
        events = event_rows.read_events(conn, start, end)
        placement = placement_rows.read_between(conn, start, end)
    try:
        frame = training_frame(prices, on_demand, advisor, events, start=start, end=end, config=tc, placement=placement)
        model = train(frame, tc)
    except ValidationError as exc:
        raise dg.Failure(description=f"interruption_model: cannot train: {exc}", allow_retries=False) from None
    version, uri = _register_candidate(app_db, model_store, model)
    verdict_ok, verdict = QualityGate().verdict(model.metrics)
    context.log.info(f"model v{version} ({model.label_source}): {verdict}")
    return dg.MaterializeResult(metadata=_model_metadata(model, version, uri, verdict_ok))


def _register_candidate(app_db: AppDatabase, model_store: ModelStore, model) -> tuple[int, str]:
    """Store the artifact and its registry row (status candidate) under the next version; (version, uri)."""
    with app_db.transaction() as session:
        version = ml_rows.next_model_version(session)
        data, sha = serialize(model, version)
        uri = model_store.write(model_store.artifact_name(version), data)
        session.add(
            ml_rows.ModelRegistryEntry(
                version=version,
                trained_at=utcnow(),
                artifact_uri=uri,
                artifact_sha256=sha,
                sklearn_version=_sklearn_version(),
                status=ml_rows.CANDIDATE,
                **registry_fields(model),
            )
        )
    return version, uri


def _model_metadata(model, version: int, uri: str, verdict_ok: bool) -> dict:
    return {
        "dagster/row_count": model.n_train + model.n_holdout,
        "model_version": dg.MetadataValue.text(str(version)),  # an id, not a series to plot
        "label_source": model.label_source,
        "label_note": model.label_note,
        "metrics": _metrics_table(model.metrics),
        "reliability": _reliability_table(model.metrics),
        "horizon": f"{model.horizon_hours:g} h",  # a setting, not a series to plot
        "log_loss": model.metrics["model"]["log_loss"],
        "baseline_log_loss": model.metrics["baseline"]["log_loss"],
        "brier": model.metrics["model"]["brier"],
        "baseline_brier": model.metrics["baseline"]["brier"],
        "roc_auc": model.metrics["model"]["roc_auc"] if model.metrics["model"]["roc_auc"] is not None else float("nan"),
        "baseline_roc_auc": model.metrics["baseline"]["roc_auc"]
        if model.metrics["baseline"]["roc_auc"] is not None
        else float("nan"),
        "beats_baseline": verdict_ok,
        "brier_gain_per_example": model.metrics["brier_gain"]["mean"],
        "brier_gain_standard_error": model.metrics["brier_gain"]["se"],
        "n_train": model.n_train,
        "n_holdout": model.n_holdout,
        "holdout_start": model.holdout_start.isoformat(),
        "data_window": f"{model.data_start:%Y-%m-%d} .. {model.data_end:%Y-%m-%d}",
        "holdout_positive_rate": model.metrics["holdout_positive_rate"],
        "features": dg.MetadataValue.json(model.features),
        "artifact": dg.MetadataValue.path(uri),
    }


def _sklearn_version() -> str:
    import sklearn

    return sklearn.__version__


def evaluate_latest(
    app_db: AppDatabase, model_store: ModelStore, gate: QualityGate = QualityGate()
) -> tuple[bool, str, dict]:
    """Vet the newest registered version; promote it to ready or block it. Returns (passed, why, metadata)."""
    with app_db.transaction() as session:
        entry = ml_rows.latest_model(session)
        if entry is None:
            return False, "no model version is registered", {}
        meta = {"model_version": dg.MetadataValue.text(str(entry.version)), "label_source": entry.label_source}
        try:
            payload = deserialize(
                model_store.read(entry.artifact_uri),
                where=f"v{entry.version} ({entry.artifact_uri})",
                expected_sha256=entry.artifact_sha256,
                expected_features=list(FEATURES),
            )
            predict(payload, _smoke_frame())
            passed, why = gate.verdict(entry.metrics)
            meta["tie"] = gate.ties(entry.metrics)
        except ModelArtifactError as exc:
            passed, why = False, str(exc)
        ml_rows.set_model_status(
            session, entry.version, ml_rows.READY if passed else ml_rows.BLOCKED, None if passed else why
        )
        serving = ml_rows.ready_models(session)
        meta["serving_version"] = serving[0].version if serving else -1
        if not passed:
            why += (
                ("; predictions keep using v" + str(serving[0].version))
                if serving
                else "; no earlier ready version exists: predictions use the advisor-band prior (model version 0)"
            )
        meta["metrics"] = dg.MetadataValue.json(entry.metrics)
        return passed, why, meta


def _smoke_frame():
    """Two rows of the features: one all zero, one as a market AWS gave no placement score (NaN) looks."""
    import pandas as pd

    frame = pd.DataFrame(np.zeros((2, len(FEATURES))), columns=FEATURES)
    frame.loc[1, "placement_score"] = np.nan
    return frame


@dg.asset_check(
    asset=interruption_model,
    blocking=True,
    description="The newest model loads, predicts, and beats the advisor-band baseline on the time-based "
    "holdout (Brier at least 1% lower; ROC AUC no worse). Otherwise that version is blocked and the previous ready "
    "version, else the advisor-band prior, keeps serving: a tie fails as a warning, a worse or broken model as an "
    "error (which also skips the predictions of the run that trained it). New risk scores refresh the predictions "
    "either way.",
)
def interruption_model_quality(app_db: AppDatabase, model_store: ModelStore) -> dg.AssetCheckResult:
    passed, why, meta = evaluate_latest(app_db, model_store)
    # A tie blocks the version but is no error: predictions still run, on the previous version or the prior.
    severity = dg.AssetCheckSeverity.WARN if meta.pop("tie", False) else dg.AssetCheckSeverity.ERROR
    return dg.AssetCheckResult(passed=passed, severity=severity, description=why, metadata=meta)


_MODEL = dg.AssetSelection.assets("interruption_model")
# New scores always refresh the predictions: they serve the newest ready version (or the prior), so a model whose
# check failed, even one that only ties (a warning), never blocks them. A new model triggers them only once its
# blocking check has passed; a failed one would predict exactly as before.
PREDICT_AFTER_NEW_SCORES_OR_A_PASSING_MODEL = (
    (
        dg.AutomationCondition.newly_missing()
        | dg.AutomationCondition.any_deps_updated().ignore(_MODEL)
        | dg.AutomationCondition.any_deps_match(
            dg.AutomationCondition.all_checks_match(
                dg.AutomationCondition.check_passed(), blocking_only=True
            ).newly_true()
        ).allow(_MODEL)
    ).since_last_handled()
    & ~dg.AutomationCondition.any_deps_in_progress()
    & ~dg.AutomationCondition.in_progress()
).with_label("after new scores, or a new model that passed its check")


@dg.asset(
    group_name="optimization",
    metadata=table_metadata(ml_rows.InterruptionPrediction.__table__),
    kinds={"scikitlearn", "sql"},
    owners=["team:optimization"],
    deps=[dg.AssetKey("interruption_risk_scores"), dg.AssetKey("interruption_model")],
    automation_condition=PREDICT_AFTER_NEW_SCORES_OR_A_PASSING_MODEL & upstream_present("interruption_risk_scores"),
    check_specs=[
        dg.AssetCheckSpec(
            "probabilities_in_range",
            asset="interruption_predictions",
            description="Every predicted probability is present and in [0, 1].",
        ),
        dg.AssetCheckSpec(
            "every_scored_market_predicted",
            asset="interruption_predictions",
            description="Every market of interruption_risk_scores has a prediction.",
        ),
    ],
    description="P(interruption within the model's horizon) for every scored market, from the newest ready "
    "model version that loads (else the advisor-band prior, recorded as version 0); the version is "
    "recorded on every row.",
)
def interruption_predictions(
    context: dg.AssetExecutionContext, app_db: AppDatabase, model_store: ModelStore
) -> dg.MaterializeResult:
    with app_db.connection() as conn:
        scores = risk_rows.read_risk_scores(conn)
    payload, entry, fallbacks = _serving_model(context, app_db, model_store)
    if entry is None:
        # No model version is usable: the advisor band's implied rate (the baseline every model is judged
        # against) still prices the risk, recorded as model version 0 so nobody mistakes it for the model.
        served_by = (
            "advisor-band prior (no ready model version loads: "
            + ("; ".join(fallbacks) if fallbacks else "none has passed interruption_model_quality yet")
            + ")"
        )
        context.log.warning(f"interruption_predictions: serving the {served_by}")
        version, horizon, label_source = BASELINE_VERSION, 24, "advisor_band_prior"
        p = band_probability(scores["advisor_band"].to_numpy(np.float64), horizon_days=1)
    else:
        served_by = f"model v{entry.version}"
        version, horizon, label_source = entry.version, entry.horizon_hours, entry.label_source
        try:
            p = predict(payload, scores)
        except ModelArtifactError as exc:
            raise dg.Failure(description=f"interruption_predictions: {exc}", allow_retries=False) from None
    predicted_at = utcnow()
    out = scores[list(risk_rows.MARKET_KEY)].assign(
        model_version=version,
        p_interruption=np.clip(p, 0, 1),
        horizon_hours=horizon,
        risk_score=scores["score"],
        spot_price=scores["spot_price"],
        on_demand_price=scores["on_demand_price"],
        predicted_at=predicted_at,
    )
    with app_db.transaction() as session:
        risk_rows.replace_rows(session, ml_rows.InterruptionPrediction, records(out))
    return dg.MaterializeResult(
        metadata=_predictions_metadata(out, version, served_by, label_source, fallbacks),
        check_results=_prediction_checks(scores, out),
    )


def _prediction_checks(scores, out) -> list[dg.AssetCheckResult]:
    n_bad, n_missing = out_of_range_probabilities(out), unpredicted_markets(scores, out, list(risk_rows.MARKET_KEY))
    return [
        problems_check(
            "probabilities_in_range",
            [f"{n_bad} predictions missing or outside [0, 1]"] if n_bad else [],
            f"all {len(out)} probabilities in [0, 1]",
        ),
        problems_check(
            "every_scored_market_predicted",
            [f"{n_missing} scored markets without a prediction"] if n_missing else [],
            f"all {len(scores)} scored markets predicted",
        ),
    ]


def _serving_model(context: dg.AssetExecutionContext, app_db: AppDatabase, model_store: ModelStore):
    """The newest ready version that loads, as (payload, entry, why newer ones were blocked); entry None if none."""
    fallbacks: list[str] = []
    with app_db.transaction() as session:
        for candidate in ml_rows.ready_models(session):
            try:
                payload = deserialize(
                    model_store.read(candidate.artifact_uri),
                    where=f"v{candidate.version} ({candidate.artifact_uri})",
                    expected_sha256=candidate.artifact_sha256,
                    expected_features=list(FEATURES),
                )
                return payload, candidate, fallbacks
            except ModelArtifactError as exc:
                ml_rows.set_model_status(session, candidate.version, ml_rows.BLOCKED, str(exc))
                fallbacks.append(str(exc))
                context.log.warning(f"{exc}; version {candidate.version} blocked, trying the previous one")
    return None, None, fallbacks


def _predictions_metadata(out, version: int, served_by: str, label_source: str, fallbacks: list[str]) -> dict:
    preview = out.sort_values("p_interruption", ascending=False).round(4)
    return {
        "dagster/row_count": len(out),
        "model_version": dg.MetadataValue.text(str(version)),
        "served_by": served_by,
        "label_source": label_source,
        "fell_back_from": dg.MetadataValue.json(fallbacks),
        "mean_p_interruption": float(out["p_interruption"].mean()) if len(out) else 0.0,
        "preview": preview_table(
            records(preview),
            ["region", "availability_zone_id", "instance_type", "p_interruption", "risk_score", "spot_price"],
        ),
    }
