"""The interruption model: training set, labels, time-based holdout, metrics, baseline, artifacts.

The model predicts P(a spot interruption warning in a market within `horizon_hours`) from the same
trailing-window features `core.risk` computes for scoring. Labels come from observed interruption
warnings when there are enough of them; otherwise from the Spot Advisor band as a *weak* label
(a Bernoulli draw at the band's rate), and the metadata says which. The baseline is the advisor
band alone (its empirical positive rate per band on the training days).

Rebalance recommendations are a weaker signal than warnings (AWS sends them when a pool's risk rises, and
many are followed by no interruption): they inform the model as the feature `observed_rebalances` only, and
never make a positive label. `placement_score` (the pool's stored AZ-level spot placement score, 1-10, from
scores fetched before the feature day's end) stays NaN where AWS gave none: the scaler keeps NaN as it is and
the gradient-boosting model learns where missing values go at each split, so "not scored" is its own signal
and no score is ever invented.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import joblib
import numpy as np
import pandas as pd
import sklearn
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from spot_pipelines.core.errors import SpotPipelinesError, ValidationError
from spot_pipelines.core.risk import (
    BAND_MONTHLY_RATE,
    DAY,
    FEATURES,
    INTERRUPTION_EVENT,
    MARKET_KEY,
    _day_start,
    attach_reference,
    build_panel,
    epoch_seconds,
    window_features,
)

ARTIFACT_FORMAT = 1
MAX_HORIZON_HOURS = 24 * 30
TIE_NOTE = "a tie keeps the prior"  # in a refused version's status_reason
OBSERVED, WEAK = "observed_interruptions", "advisor_band_weak"


class ModelArtifactError(SpotPipelinesError):
    """A model artifact that is missing, corrupted or incompatible with this code."""


@dataclass(frozen=True)
class TrainingConfig:
    window_days: int = 14
    horizon_hours: int = 24  # label: a warning within this many hours after the features' day ends
    holdout_fraction: float = 0.25
    min_observed_positives: int = 20
    seed: int = 0
    max_iter: int = 120  # boosting rounds

    def __post_init__(self):
        if not 1 <= self.horizon_hours <= MAX_HORIZON_HOURS:
            raise ValidationError("horizon_hours", f"must be in [1, {MAX_HORIZON_HOURS}], got {self.horizon_hours}")

    @property
    def horizon_days(self) -> int:
        """Whole days the labels reach past a feature day."""
        return -(-self.horizon_hours // 24)


@dataclass(frozen=True)
class QualityGate:
    """The model replaces the advisor-band prior only if it beats it on the holdout, since a tie is no reason
    to serve a model: a Brier score at least `min_brier_improvement` (relative) lower and an ROC AUC no worse
    than the baseline's beyond `auc_tolerance`. The per-example Brier gain and its standard error are reported
    beside it, not gated on: holdouts of a few hundred market-days rarely make a real gain significant."""

    min_brier_improvement: float = 0.01
    auc_tolerance: float = 0.01
    tie_tolerance: float = 0.01

    def ties(self, metrics: dict[str, Any]) -> bool:
        """Refused only for want of a real improvement: within `tie_tolerance` (relative Brier) of the baseline
        and no worse on ROC AUC; a warning, not an error, since the prior it keeps is as good."""
        m, b = metrics["model"], metrics["baseline"]
        auc_ok = (
            m.get("roc_auc") is None or b.get("roc_auc") is None or m["roc_auc"] >= b["roc_auc"] - self.auc_tolerance
        )
        return not self.verdict(metrics)[0] and m["brier"] <= b["brier"] * (1 + self.tie_tolerance) and auc_ok

    def verdict(self, metrics: dict[str, Any]) -> tuple[bool, str]:
        m, b = metrics["model"], metrics["baseline"]
        problems = []
        if m["brier"] > b["brier"] * (1 + self.tie_tolerance):
            problems.append(f"Brier {m['brier']:.5f} is worse than the advisor baseline's {b['brier']:.5f}")
        elif m["brier"] > b["brier"] * (1 - self.min_brier_improvement):
            problems.append(
                f"Brier {m['brier']:.5f} is not at least {self.min_brier_improvement:.0%} below the advisor "
                f"baseline's {b['brier']:.5f}: {TIE_NOTE}"
            )
        if (
            m.get("roc_auc") is not None
            and b.get("roc_auc") is not None
            and m["roc_auc"] < b["roc_auc"] - self.auc_tolerance
        ):
            problems.append(f"ROC AUC {m['roc_auc']:.4f} is worse than the advisor baseline's {b['roc_auc']:.4f}")
        if problems:
            return False, "; ".join(problems)
        return True, (
            f"Brier {m['brier']:.5f} vs baseline {b['brier']:.5f}, ROC AUC "
            f"{_fmt(m.get('roc_auc'))} vs baseline {_fmt(b.get('roc_auc'))}"
        )


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.4f}"


def training_frame(
    prices: pd.DataFrame,
    on_demand: pd.DataFrame,
    advisor: pd.DataFrame,
    events: pd.DataFrame | None,
    *,
    start: datetime,
    end: datetime,
    config: TrainingConfig = TrainingConfig(),
    placement: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """One example per (market, day): features at the day's end, `observed` = a warning within the horizon.

    The label counts interruption warnings only: a rebalance recommendation is the feature `observed_rebalances`
    (over the feature window, before the day's end), never a positive label. `placement`: stored spot placement
    scores; each day's `placement_score` uses only those fetched before that day's end."""
    start, end = _day_start(start), _day_start(end)
    n_days = (end - start).days
    w, h = config.window_days, config.horizon_days
    if n_days < w + h + 2:
        raise ValidationError(
            "training window",
            f"{n_days} day(s) of history; need at least {w + h + 2} (feature window {w} + horizon "
            f"{config.horizon_hours} h rounded up to {h} day(s) + 2)",
        )
    panel = build_panel(prices, start=start, n_days=n_days, events=events, placement=placement)
    days = np.arange(w - 1, n_days - h)
    feats = window_features(panel, days, w)
    ends = int(start.timestamp()) + (days + 1) * DAY
    feats["observed"] = _warned_within(events, panel.markets, ends, config.horizon_hours * 3600).ravel().astype(np.int8)
    frame, _skipped = attach_reference(feats, panel.markets, on_demand, advisor)
    frame["day"] = pd.Timestamp(start) + pd.to_timedelta(frame["_day"], unit="D")
    return frame.reset_index(drop=True)


def _warned_within(events: pd.DataFrame | None, markets: pd.DataFrame, ends: np.ndarray, horizon_s: int) -> np.ndarray:
    """(markets, len(ends)): a warning in the market's pool within [end, end + horizon) — exact to the second,
    so the horizon can be an hour. One searchsorted on a market-major key, no loop per market."""
    out = np.zeros((len(markets), len(ends)), dtype=bool)
    if events is None or events.empty or not len(ends):
        return out
    ev = events[events["event_type"] == INTERRUPTION_EVENT].dropna(subset=["availability_zone_id", "instance_type"])
    pool = MARKET_KEY[:3]
    hit = ev[pool].assign(_t=epoch_seconds(ev["event_time"]) if len(ev) else 0)
    hit = hit.merge(markets[pool].reset_index(names="_m"), on=pool)
    base = int(ends.min())
    hit = hit[hit["_t"] >= base]
    if hit.empty:
        return out
    span = np.int64(2**40)
    key = np.sort(hit["_m"].to_numpy(np.int64) * span + (hit["_t"].to_numpy(np.int64) - base))
    query = np.arange(len(markets), dtype=np.int64)[:, None] * span + (ends - base)[None, :]
    idx = np.searchsorted(key, query.ravel(), side="left")
    found = np.where(idx < len(key), key[np.minimum(idx, len(key) - 1)], -1)
    return ((found >= 0) & (found - query.ravel() < horizon_s) & (found // span == query.ravel() // span)).reshape(
        out.shape
    )


def weak_labels(frame: pd.DataFrame, config: TrainingConfig) -> np.ndarray:
    """Soft labels: the probability of an interruption within the horizon implied by the advisor band."""
    return band_probability(frame["advisor_band"].to_numpy(), config.horizon_hours / 24)


WEAK_NOTE = (
    "weak labels from the advisor band (each example weighted by the band's implied probability of an "
    "interruption within the horizon); the baseline is the labels' own source, so the model can at best "
    "tie it: these metrics are a sanity check, not evidence of skill"
)


def _expand(X: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(X, y, sample_weight) for probabilistic targets: each row once as positive (weight p), once as
    negative (weight 1 − p). Hard 0/1 targets stay one row each with weight 1."""
    if np.isin(target, (0.0, 1.0)).all():
        return X, target.astype(np.int8), np.ones(len(target))
    return (
        np.vstack([X, X]),
        np.r_[np.ones(len(target), np.int8), np.zeros(len(target), np.int8)],
        np.r_[target, 1 - target],
    )


def band_probability(band: np.ndarray, horizon_days: float) -> np.ndarray:
    """P(interruption within the horizon) implied by an advisor band's monthly rate (unknown band: 10%)."""
    band = np.asarray(band, dtype=np.float64)
    monthly = np.where(np.isnan(band), 0.10, BAND_MONTHLY_RATE[np.clip(np.nan_to_num(band), 0, 4).astype(int)])
    return 1 - (1 - monthly) ** (horizon_days / 30.0)


def new_pipeline(seed: int = 0, max_iter: int = 120) -> Pipeline:
    booster = HistGradientBoostingClassifier(
        max_iter=max_iter,
        learning_rate=0.06,
        max_leaf_nodes=15,
        min_samples_leaf=20,
        l2_regularization=1.0,
        random_state=seed,
    )
    return Pipeline(
        [
            ("scale", StandardScaler()),
            ("model", CalibratedClassifierCV(booster, method="sigmoid", cv=3)),
        ]
    )


class BandBaseline:
    """The advisor band alone: the training positive rate per band (Laplace-smoothed)."""

    def fit(self, band: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None) -> BandBaseline:
        band = np.nan_to_num(np.asarray(band, dtype=np.float64), nan=-1).astype(int)
        w = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
        self.overall_ = (float(np.dot(w, y)) + 1) / (float(w.sum()) + 2)
        self.rates_ = {}
        for b in range(-1, 5):
            mask = band == b
            self.rates_[b] = (float(np.dot(w[mask], y[mask])) + self.overall_ * 2) / (float(w[mask].sum()) + 2)
        return self

    def predict_proba(self, band: np.ndarray) -> np.ndarray:
        band = np.nan_to_num(np.asarray(band, dtype=np.float64), nan=-1).astype(int)
        lookup = np.array([self.rates_[b] for b in range(-1, 5)])
        return lookup[np.clip(band, -1, 4) + 1]


def _metrics(y: np.ndarray, p: np.ndarray, w: np.ndarray) -> dict[str, Any]:
    both = w[y == 1].sum() > 0 and w[y == 0].sum() > 0
    return {
        "brier": float(brier_score_loss(y, p, sample_weight=w)),
        "roc_auc": float(roc_auc_score(y, p, sample_weight=w)) if both else None,
        "log_loss": float(log_loss(y, np.clip(p, 1e-6, 1 - 1e-6), labels=[0, 1], sample_weight=w)),
        "mean_prediction": float(np.average(p, weights=w)),
    }


def brier_gain(y: np.ndarray, p_model: np.ndarray, p_base: np.ndarray, w: np.ndarray) -> dict[str, float]:
    """The per-example Brier improvement of the model over the baseline: weighted mean and its standard error
    (examples taken as independent, which market-days are only roughly)."""
    d = (p_base - y) ** 2 - (p_model - y) ** 2
    mean = float(np.average(d, weights=w))
    n_eff = float(w.sum() ** 2 / np.square(w).sum())
    var = float(np.average((d - mean) ** 2, weights=w)) * n_eff / max(n_eff - 1, 1)
    return {"mean": mean, "se": float(np.sqrt(var / n_eff))}


RELIABILITY_EDGES = (0.0, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)


def reliability(y: np.ndarray, p: np.ndarray, w: np.ndarray) -> list[dict[str, Any]]:
    """Per bin of predicted probability: the (weighted) examples, mean prediction and observed rate."""
    edges = np.asarray(RELIABILITY_EDGES)
    b = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, len(edges) - 2)
    rows = []
    for k in np.unique(b):
        m = b == k
        rows.append(
            {
                "bin": f"[{edges[k]:g}, {edges[k + 1]:g})",
                "n": float(w[m].sum()),
                "mean_predicted": float(np.average(p[m], weights=w[m])),
                "observed_rate": float(np.average(y[m], weights=w[m])),
            }
        )
    return rows


@dataclass
class TrainedModel:
    pipeline: Pipeline
    features: list[str]
    label_source: str
    label_note: str
    metrics: dict[str, Any]
    data_start: datetime
    data_end: datetime
    holdout_start: datetime
    n_train: int
    n_holdout: int
    horizon_hours: int
    extra: dict[str, Any] = field(default_factory=dict)


def train(frame: pd.DataFrame, config: TrainingConfig = TrainingConfig()) -> TrainedModel:
    """Fit on the earlier days, evaluate on the later days (time-based holdout) against the baseline.

    Observed labels are used when there are at least `min_observed_positives` warning market-days and at
    least 3 on each side of the holdout split; otherwise weak (soft) labels from the advisor band."""
    if frame.empty:
        raise ValidationError("training data", "no market-day examples (no priced markets in the window)")
    days = np.sort(frame["day"].unique())
    n_hold = max(1, int(round(len(days) * config.holdout_fraction)))
    if len(days) - n_hold < 2:
        raise ValidationError("training window", f"only {len(days)} example day(s): too few for a time-based holdout")
    holdout_start = days[-n_hold]
    is_hold = (frame["day"] >= holdout_start).to_numpy()
    observed = frame["observed"].to_numpy(np.float64)
    pos_tr, pos_ho = int(observed[~is_hold].sum()), int(observed[is_hold].sum())
    if pos_tr + pos_ho >= config.min_observed_positives and min(pos_tr, pos_ho) >= 3:
        target, source = observed, OBSERVED
        note = (
            f"{pos_tr + pos_ho} observed interruption warning market-days (>= {config.min_observed_positives}; "
            f"{pos_tr} in training days, {pos_ho} in holdout days)"
        )
    else:
        target, source = weak_labels(frame, config), WEAK
        note = (
            f"only {pos_tr + pos_ho} observed interruption warning market-days ({pos_tr} training, {pos_ho} "
            f"holdout; need >= {config.min_observed_positives} and >= 3 on each side): " + WEAK_NOTE
        )
    X = frame[FEATURES].to_numpy(np.float64)
    band = frame["advisor_band"].to_numpy(np.float64)
    X_tr, y_tr, w_tr = _expand(X[~is_hold], target[~is_hold])
    X_ho, y_ho, w_ho = _expand(X[is_hold], target[is_hold])
    band_tr = _expand(band[~is_hold, None], target[~is_hold])[0][:, 0]
    band_ho = _expand(band[is_hold, None], target[is_hold])[0][:, 0]
    # A feature missing on every training row (no placement score stored yet) leaves the scaler a 0/0 mean; it
    # stays NaN, which the booster treats as missing, as it does any single missing value.
    with np.errstate(invalid="ignore", divide="ignore"):
        pipe = new_pipeline(config.seed, config.max_iter).fit(X_tr, y_tr, model__sample_weight=w_tr)
    p_model = pipe.predict_proba(X_ho)[:, 1]
    p_base = BandBaseline().fit(band_tr, y_tr, w_tr).predict_proba(band_ho)
    metrics = {
        "model": _metrics(y_ho, p_model, w_ho),
        "baseline": _metrics(y_ho, p_base, w_ho),
        "reliability": {"model": reliability(y_ho, p_model, w_ho), "baseline": reliability(y_ho, p_base, w_ho)},
        "brier_gain": brier_gain(y_ho, p_model, p_base, w_ho),
        "holdout_positive_rate": float(np.average(y_ho, weights=w_ho)),
        "train_positive_rate": float(np.average(y_tr, weights=w_tr)),
        "label_source": source,
    }
    return TrainedModel(
        pipeline=pipe,
        features=list(FEATURES),
        label_source=source,
        label_note=note,
        metrics=metrics,
        data_start=pd.Timestamp(days[0]).to_pydatetime(),
        data_end=pd.Timestamp(days[-1]).to_pydatetime(),
        holdout_start=pd.Timestamp(holdout_start).to_pydatetime(),
        n_train=int((~is_hold).sum()),
        n_holdout=int(is_hold.sum()),
        horizon_hours=config.horizon_hours,
    )


# --------------------------------------------------------------------------- artifacts


def serialize(model: TrainedModel, version: int) -> tuple[bytes, str]:
    payload = {
        "format": ARTIFACT_FORMAT,
        "version": version,
        "pipeline": model.pipeline,
        "features": model.features,
        "horizon_hours": model.horizon_hours,
        "label_source": model.label_source,
        "sklearn_version": sklearn.__version__,
    }
    buf = io.BytesIO()
    joblib.dump(payload, buf, compress=3)
    data = buf.getvalue()
    return data, hashlib.sha256(data).hexdigest()


def deserialize(
    data: bytes, *, where: str, expected_sha256: str | None = None, expected_features: list[str] | None = None
) -> dict[str, Any]:
    """Load and vet an artifact; any problem is a ModelArtifactError naming the artifact and the cause."""
    if expected_sha256 is not None and hashlib.sha256(data).hexdigest() != expected_sha256:
        raise ModelArtifactError(f"model artifact {where} is corrupted: its sha256 does not match the registry")
    try:
        payload = joblib.load(io.BytesIO(data))
    except Exception as exc:  # unpickling arbitrary bytes raises anything
        raise ModelArtifactError(f"model artifact {where} cannot be loaded: {type(exc).__name__}: {exc}") from None
    if not isinstance(payload, dict) or payload.get("format") != ARTIFACT_FORMAT:
        raise ModelArtifactError(
            f"model artifact {where} is incompatible: expected format {ARTIFACT_FORMAT}, got "
            f"{payload.get('format') if isinstance(payload, dict) else type(payload).__name__}"
        )
    saved = str(payload.get("sklearn_version", ""))
    if saved.split(".")[:2] != sklearn.__version__.split(".")[:2]:
        raise ModelArtifactError(
            f"model artifact {where} is incompatible: trained with scikit-learn {saved}, "
            f"running {sklearn.__version__}; retrain the model"
        )
    features = list(expected_features if expected_features is not None else FEATURES)
    saved_features = list(payload.get("features") or [])
    if saved_features != features:
        lacks = [f for f in features if f not in saved_features]
        extra = [f for f in saved_features if f not in features]
        why = "; ".join(
            part
            for part in (
                f"it lacks feature(s) {', '.join(lacks)}" if lacks else "",
                f"it has feature(s) this code does not compute: {', '.join(extra)}" if extra else "",
                "its features are in another order" if not lacks and not extra else "",
            )
            if part
        )
        raise ModelArtifactError(
            f"model artifact {where} is incompatible: {why} (its features {saved_features} differ from this "
            f"code's {features}); retrain the model"
        )
    if not hasattr(payload.get("pipeline"), "predict_proba"):
        raise ModelArtifactError(f"model artifact {where} is incompatible: no predict_proba")
    return payload


def predict(payload: dict[str, Any], frame: pd.DataFrame) -> np.ndarray:
    X = frame[payload["features"]].to_numpy(np.float64)
    if len(X) == 0:
        return np.zeros(0)
    try:
        return payload["pipeline"].predict_proba(X)[:, 1]
    except Exception as exc:
        raise ModelArtifactError(
            f"model version {payload.get('version')} failed to predict: {type(exc).__name__}: {exc}"
        ) from None


def registry_fields(model: TrainedModel) -> dict[str, Any]:
    return {
        "data_start": model.data_start,
        "data_end": model.data_end,
        "holdout_start": model.holdout_start,
        "n_train": model.n_train,
        "n_holdout": model.n_holdout,
        "metrics": {**model.metrics, "label_note": model.label_note},
        "features": model.features,
        "label_source": model.label_source,
        "horizon_hours": model.horizon_hours,
    }


__all__ = [
    "MARKET_KEY",
    "ModelArtifactError",
    "QualityGate",
    "TrainedModel",
    "TrainingConfig",
    "band_probability",
    "deserialize",
    "predict",
    "serialize",
    "train",
    "training_frame",
]


# --------------------------------------------------------------------------- what interruption_predictions' checks assert


def out_of_range_probabilities(predictions: pd.DataFrame) -> int:
    """Predictions whose probability is missing or outside [0, 1]."""
    p = pd.to_numeric(predictions["p_interruption"], errors="coerce")
    return int((~p.between(0, 1)).sum())


def unpredicted_markets(scores: pd.DataFrame, predictions: pd.DataFrame, key: list[str]) -> int:
    """Scored markets without a prediction row."""
    merged = scores[key].drop_duplicates().merge(predictions[key].drop_duplicates(), on=key, how="left", indicator=True)
    return int((merged["_merge"] == "left_only").sum())
