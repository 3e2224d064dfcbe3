"""Train and evaluate steps: walk-forward CV, final fit, MLflow tracking."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
from pydantic import BaseModel

from pipelines.intervals import interval_delta
from pipelines.ml.dataset import DatasetInfo
from pipelines.ml.evaluation import classification_metrics, split_eval_window, walk_forward
from pipelines.ml.modeling import SKOPS_TRUSTED_TYPES, make_model, model_params
from pipelines.ml.rows import Selection, sample_positions
from pipelines.ml.tracking import (
    attempt_tags,
    configure,
    end_abandoned_runs,
    git_commit,
    load_model_safely,
)
from pipelines.settings import Settings
from pipelines.storage import Storage


def pip_requirements() -> list[str]:
    """Exact versions the model needs to load (MLflow adds itself)."""
    from importlib.metadata import version

    return [
        f"{name}=={version(name)}" for name in ("scikit-learn", "skops", "numpy", "pandas", "scipy")
    ]


TRAIN_BYTES_PER_ROW = 320
"""Estimated memory per training row: the row (17 float32 features, label, return, close,
time, symbol: ~110 B) and the model's working copies (scikit-learn's float64 matrix of the
features, its uint8 bins, gradients and predictions: ~200 B)."""


def training_rows(
    storage: Storage, info: DatasetInfo, settings: Settings, embargo: pd.Timedelta
) -> tuple[pd.DataFrame, int | None]:
    """The labelled rows, those before the evaluation window (and its embargo) sampled down to
    what `Settings.train_memory_mb` allows; the number of such rows when they were sampled.

    The sample is random (seed 0: the same dataset gives the same sample), kept in time order,
    so every fold and month keeps its share of rows. Only the columns training and its metrics
    use are read, batch by batch (`pipelines.ml.rows`): the whole dataset is never in memory.
    """
    selection = Selection(storage, info.prefix)
    last = pd.Timestamp(selection.times[-1])
    cutoff = last - pd.Timedelta(days=settings.eval_days) - embargo
    candidates = int(np.searchsorted(selection.times, cutoff.to_datetime64(), side="right"))
    allowed = settings.train_memory_mb * 2**20 // TRAIN_BYTES_PER_ROW
    picked = sample_positions(candidates, allowed)
    columns = ["open_time", "symbol", *info.features, "label", "future_return"]
    if picked is None:
        return selection.rows(columns, np.arange(len(selection.times)), last=True), None
    keep = np.concatenate([picked, np.arange(candidates, len(selection.times))])
    return selection.rows(columns, keep, last=True), candidates


def _rows_at(frame: pd.DataFrame, positions: np.ndarray) -> pd.DataFrame:
    """``frame.iloc[positions]``: a slice (no copy) when the positions are a contiguous run, as
    walk-forward folds in time order are."""
    if len(positions) and positions[-1] - positions[0] + 1 == len(positions):
        return frame.iloc[positions[0] : positions[-1] + 1]
    return frame.iloc[positions]


class TrainResult(BaseModel):
    """The train step's result: the MLflow run and model, the evaluation window, CV metrics."""

    mlflow_run_id: str
    model_uri: str
    model_id: str | None
    model_type: str
    train_rows: int
    eval_start: str
    eval_end: str
    cv_folds: list[dict[str, float]]
    cv_mean: dict[str, float]
    git_commit: str | None
    sampled_from: int | None = None
    """Training rows before sampling down to the memory budget (None: all were used)."""


def train(settings: Settings, storage: Storage, info: DatasetInfo, run_id: str) -> TrainResult:
    """Cross-validate, fit the final model before the evaluation window, log it to MLflow.

    Returns the train step's result: MLflow run and model ids, the evaluation window, CV metrics.
    An MLflow run of the same pipeline run left ``RUNNING`` by a killed earlier attempt is
    marked ``KILLED`` first (`end_abandoned_runs`), and the new run names it (``mlops.replaces``).
    """
    embargo = pd.Timedelta(interval_delta(info.interval)) * settings.effective_embargo
    rows, sampled_from = training_rows(storage, info, settings, embargo)
    window = split_eval_window(rows, settings.eval_days, embargo, settings.min_train_rows)
    features = info.features
    params = model_params(settings.model_type, settings.model_params)

    folds: list[dict[str, float]] = []
    for train_idx, test_idx in walk_forward(window.train["open_time"], settings.cv_folds, embargo):
        model = make_model(settings.model_type, settings.model_params)
        fit_rows, test_rows = _rows_at(window.train, train_idx), _rows_at(window.train, test_idx)
        model.fit(fit_rows[features], fit_rows["label"])
        probability = model.predict_proba(test_rows[features])[:, 1]
        folds.append(classification_metrics(test_rows, probability, info.horizon, settings.fee_bps))

    final = make_model(settings.model_type, settings.model_params)
    final.fit(window.train[features], window.train["label"])

    experiment_id = configure(settings)
    import mlflow
    from mlflow.models import infer_signature

    commit = git_commit()
    tags = {
        "mlflow.source.git.commit": commit,
        **attempt_tags(run_id),
        "mlops.dataset_hash": info.dataset_hash,
        "mlops.env": settings.env,
    }
    if replaced := end_abandoned_runs(experiment_id, run_id):
        tags["mlops.replaces"] = ",".join(replaced)
    with mlflow.start_run(run_name=run_id, tags=tags) as run:
        mlflow.log_params(
            {
                "model_type": settings.model_type,
                **{f"model.{k}": v for k, v in params.items()},
                "interval": info.interval,
                "source_interval": info.source_interval,
                "horizon": info.horizon,
                "embargo_bars": settings.effective_embargo,
                "cv_folds": settings.cv_folds,
                "eval_days": settings.eval_days,
                "fee_bps": settings.fee_bps,
                "symbols": ",".join(info.symbols),
                "start": info.start.isoformat(),
                "end": info.end.isoformat(),
                "train_rows": len(window.train),
                "train_sampled_from": sampled_from or len(window.train),
                "eval_rows": len(window.evaluation),
            }
        )
        for k, fold in enumerate(folds):
            mlflow.log_metrics({f"cv_{name}": value for name, value in fold.items()}, step=k)
        cv_mean = (
            {name: float(np.nanmean([f[name] for f in folds])) for name in folds[0]}
            if folds
            else {}
        )
        mlflow.log_metrics({f"cv_mean_{name}": value for name, value in cv_mean.items()})
        dataset = mlflow.data.from_pandas(  # type: ignore[attr-defined]
            window.train[[*features, "label"]].reset_index(drop=True),
            source=f"{storage.url}/{info.prefix}/labelled.parquet",
            name=f"{info.interval}-{info.dataset_hash}",
            targets="label",
            digest=info.dataset_hash,
        )
        mlflow.log_input(dataset, context="training", tags={"dataset_hash": info.dataset_hash})
        mlflow.log_dict(info.model_dump(mode="json"), "dataset/manifest.json")
        example = window.train[features].head(5).reset_index(drop=True)
        signature = infer_signature(example, final.predict_proba(example))
        logged = mlflow.sklearn.log_model(
            final,
            name="model",
            signature=signature,
            input_example=example,
            pip_requirements=pip_requirements(),
            skops_trusted_types=SKOPS_TRUSTED_TYPES,
            pyfunc_predict_fn="predict_proba",
            tags={"mlflow.source.git.commit": commit, "mlops.dataset_hash": info.dataset_hash},
        )
    return TrainResult(
        mlflow_run_id=run.info.run_id,
        model_uri=logged.model_uri,
        model_id=logged.model_id,
        model_type=settings.model_type,
        train_rows=len(window.train),
        eval_start=str(window.eval_start),
        eval_end=str(window.eval_end),
        cv_folds=folds,
        cv_mean=cv_mean,
        git_commit=commit,
        sampled_from=sampled_from,
    )


class EvaluateResult(BaseModel):
    """The evaluate step's result: metrics on the out-of-sample window the gate also uses."""

    metrics: dict[str, float]
    eval_start: str
    eval_end: str
    rows: int
    cv_mean_roc_auc: float | None


def evaluate(
    settings: Settings, storage: Storage, info: DatasetInfo, trained: TrainResult
) -> EvaluateResult:
    """Score the trained model on the latest out-of-sample window; log ``eval_*`` metrics."""
    configure(settings)
    import mlflow

    window = Selection(storage, info.prefix).between(
        ["open_time", "symbol", *info.features, "label", "future_return"],
        pd.Timestamp(trained.eval_start),
        pd.Timestamp(trained.eval_end),
        last=True,
    )
    model = load_model_safely(settings, trained.model_uri)
    probability = model.predict_proba(window[info.features])[:, 1]
    metrics = classification_metrics(window, probability, info.horizon, settings.fee_bps)
    with mlflow.start_run(run_id=trained.mlflow_run_id):
        mlflow.log_metrics({f"eval_{k}": v for k, v in metrics.items() if np.isfinite(v)})
        mlflow.log_dict(
            {
                "eval_start": trained.eval_start,
                "eval_end": trained.eval_end,
                "metrics": metrics,
            },
            "evaluation/summary.json",
        )
    return EvaluateResult(
        metrics=metrics,
        eval_start=trained.eval_start,
        eval_end=trained.eval_end,
        rows=len(window),
        cv_mean_roc_auc=trained.cv_mean.get("roc_auc"),
    )


def metrics_json(metrics: dict[str, float]) -> str:
    """Compact JSON of metrics for tags (NaN as null)."""
    return json.dumps(
        {k: (None if not np.isfinite(v) else round(v, 6)) for k, v in metrics.items()}
    )
