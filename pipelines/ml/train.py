"""Train and evaluate steps: walk-forward CV, final fit, MLflow tracking."""

from __future__ import annotations

import json
from dataclasses import dataclass

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


TRAIN_BYTES_PER_ROW = 480
"""Peak memory of the train step per training row, measured (benchmarks/README.md, scale,
2026-12-01: 419 B with the default model, 469 B with the logistic regression, fitting the four
walk-forward folds and the final model on 1 M rows): the features as one float64 matrix
(17 x 8 B; scikit-learn's own dtype, so it makes no copy), the row's time, symbol, label and
return (32 B), and the model's working arrays (its uint8 bins, gradients, hessians, raw
predictions, encoded labels, partition indices; the scaler's copy for the logistic
regression)."""


@dataclass(frozen=True)
class TrainingRows:
    """The rows the train step fits on, in time order, held once."""

    data: pd.DataFrame
    """The features as float64, one block over one C-contiguous matrix: scikit-learn fits on it
    without a copy of its own (a float32 frame, or a view of some of a matrix's columns, it
    copies), and `features` gives views of it."""
    meta: pd.DataFrame
    """``open_time``, ``symbol``, ``label`` and ``future_return`` of the same rows."""
    sampled_from: int | None
    """How many rows were before the evaluation window when they were sampled (None: all)."""

    def features(self, rows: slice) -> pd.DataFrame:
        """The features of `rows` (a view of the matrix, never a copy)."""
        return self.data.iloc[rows]


def training_rows(
    storage: Storage, info: DatasetInfo, settings: Settings, embargo: pd.Timedelta
) -> TrainingRows:
    """The labelled rows, those before the evaluation window (and its embargo) sampled down to
    what `Settings.train_memory_mb` allows at `TRAIN_BYTES_PER_ROW`.

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
    keep = (
        np.arange(len(selection.times))
        if picked is None
        else np.concatenate([picked, np.arange(candidates, len(selection.times))])
    )
    del selection.times
    meta = selection.rows(["open_time", "symbol", "label", "future_return"], keep)
    matrix = selection.matrix(info.features, keep, last=True)
    data = pd.DataFrame(matrix, columns=info.features, copy=False)
    return TrainingRows(data, meta, None if picked is None else candidates)


def _span(positions: np.ndarray) -> slice:
    """Walk-forward positions (a contiguous run in time order) as a slice: the rows they name
    are then a view, not a copy."""
    if len(positions) and positions[-1] - positions[0] + 1 != len(positions):
        raise ValueError("walk-forward positions must be one contiguous run")
    return slice(int(positions[0]), int(positions[-1]) + 1) if len(positions) else slice(0, 0)


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
    rows = training_rows(storage, info, settings, embargo)
    sampled_from = rows.sampled_from
    window = split_eval_window(rows.meta, settings.eval_days, embargo, settings.min_train_rows)
    params = model_params(settings.model_type, settings.model_params)
    trained = slice(0, len(window.train))  # the rows are in time order: training is a prefix
    label = window.train["label"]

    folds: list[dict[str, float]] = []
    for train_idx, test_idx in walk_forward(window.train["open_time"], settings.cv_folds, embargo):
        model = make_model(settings.model_type, settings.model_params)
        fit, test = _span(train_idx), _span(test_idx)
        del train_idx, test_idx
        model.fit(rows.features(fit), label.iloc[fit])
        probability = model.predict_proba(rows.features(test))[:, 1]
        folds.append(
            classification_metrics(
                window.train.iloc[test],
                probability,
                info.horizon,
                settings.fee_bps,
                settings.monitor_window_hours,
            )
        )

    final = make_model(settings.model_type, settings.model_params)
    final.fit(rows.features(trained), label)

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
            pd.concat(  # type: ignore[call-overload]  # pandas-stubs lacks `copy`
                [rows.features(trained), label], axis=1, copy=False
            ),  # views of the rows, no copy
            source=f"{storage.url}/{info.prefix}/labelled.parquet",
            name=f"{info.interval}-{info.dataset_hash}",
            targets="label",
            digest=info.dataset_hash,
        )
        mlflow.log_input(dataset, context="training", tags={"dataset_hash": info.dataset_hash})
        mlflow.log_dict(info.model_dump(mode="json"), "dataset/manifest.json")
        example = rows.features(slice(0, 5)).astype(np.float32).reset_index(drop=True)
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
    metrics = classification_metrics(
        window, probability, info.horizon, settings.fee_bps, settings.monitor_window_hours
    )
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
