"""Binary classification quality of logged predictions against realised labels (Evidently)."""

from __future__ import annotations

import math
import warnings
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from pipelines.errors import PipelineError
from pipelines.reports.store import (
    ReportSummary,
    check_segment,
    quiet_evidently,
    save_report,
    snapshot_metadata,
    utc,
    write_summary,
)
from pipelines.storage import Storage

# Evidently's classification metric types -> our metric names.
_QUALITY_METRICS = {
    "Accuracy": "accuracy",
    "Precision": "precision",
    "Recall": "recall",
    "F1Score": "f1",
    "RocAuc": "roc_auc",
    "LogLoss": "log_loss",
    "TPR": "tpr",
    "TNR": "tnr",
    "FPR": "fpr",
    "FNR": "fnr",
}


class QualityReport(ReportSummary):
    """Summary of one classification quality report."""

    rows: int
    metrics: dict[str, float | None]
    """``accuracy``, ``precision``, ``recall``, ``f1``, ``roc_auc``, ``log_loss``, ``tpr``,
    ``tnr``, ``fpr``, ``fnr``; None where undefined (e.g. ROC-AUC with one class only)."""


def quality_report(
    frame: pd.DataFrame,
    *,
    storage: Storage,
    env: str,
    target: str = "label",
    probability: str = "probability_up",
    model_version: str | None = None,
    metadata: dict[str, Any] | None = None,
    workspace: Path | None = None,
    project: str | None = None,
    now: datetime | None = None,
    kind: str = "live_quality",
) -> QualityReport:
    """Binary classification quality of logged predictions against their realised labels.

    Args:
        frame: one row per prediction, with `target` (0/1) and `probability` (P(target=1)).
        storage: where the report goes (``reports/{env}/{kind}/{timestamp}/``).
        env: environment name.
        target: the label column.
        probability: the predicted probability column.
        model_version: the model version that made the predictions.
        metadata: extra fields recorded in the summary (and, as strings, in the snapshot).
        workspace: a local Evidently Workspace directory to add the snapshot to.
        project: the Workspace project (created if missing); default ``mlops-{env}``.
        now: the report's time (default: now, UTC).
        kind: report kind, one path segment.

    Raises:
        PipelineError: on a missing column, no rows, missing values, labels other than 0/1 or
            probabilities outside [0, 1].
    """
    data = _check_quality_inputs(frame, env, kind, target, probability)
    moment = utc(now)
    quiet_evidently()
    from evidently import BinaryClassification, DataDefinition, Dataset, Report

    definition = DataDefinition(
        classification=[BinaryClassification(target=target, prediction_probas=probability)]
    )
    with warnings.catch_warnings():
        # With one class only, sklearn warns that ROC-AUC, TNR... are undefined: they come back
        # as NaN and are reported as None.
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.filterwarnings("ignore", message=".*(ill-defined|not defined|meaningless).*")
        # The preset's default tests compare against a dummy model ("LogLoss: Less 0.000"
        # always fails without a reference), so they are left out.
        snapshot = Report(_quality_metrics(data[target].nunique() > 1), include_tests=False).run(
            current_data=Dataset.from_pandas(data, data_definition=definition),
            reference_data=None,
            timestamp=moment.replace(tzinfo=None),
            metadata=snapshot_metadata(env, kind, model_version, metadata),
            tags=[env, kind],
        )
    metrics = _quality_values(snapshot.dict())
    where = save_report(snapshot, storage, env=env, kind=kind, moment=moment)
    if workspace is not None:
        from pipelines.reports.workspace import add_report

        add_report(snapshot, workspace, project or f"mlops-{env}", where["prefix"], [])
    report = QualityReport(
        kind=kind,
        env=env,
        **where,
        rows=len(data),
        metrics=metrics,
        model_version=model_version,
        metadata=dict(metadata or {}),
    )
    write_summary(storage, report)
    return report


def _check_quality_inputs(
    frame: pd.DataFrame, env: str, kind: str, target: str, probability: str
) -> pd.DataFrame:
    """The two columns, labels as int, once they are known to be complete and in range.

    Raises:
        PipelineError: naming the first problem found.
    """
    check_segment("env", env)
    check_segment("kind", kind)
    missing = [c for c in (target, probability) if c not in frame.columns]
    if missing:
        raise PipelineError(
            f"prediction frame lacks column(s): {', '.join(missing)}",
            f"pass a frame with the label ({target!r}) and the probability ({probability!r})",
        )
    if frame.empty:
        raise PipelineError("prediction frame has no rows", "widen its time window")
    data = frame[[target, probability]]
    for column in (target, probability):
        if data[column].isna().any():
            raise PipelineError(
                f"{int(data[column].isna().sum())} of {len(data)} rows have no {column!r}",
                "keep only predictions whose label is known",
            )
    labels = set(pd.unique(data[target]).tolist())
    if not labels <= {0, 1}:
        shown = ", ".join(sorted(map(str, labels - {0, 1}))[:5])
        raise PipelineError(f"labels in {target!r} are not 0/1: {shown}", "pass binary labels")
    probabilities = pd.to_numeric(data[probability], errors="coerce")
    if probabilities.isna().any() or not probabilities.between(0, 1).all():
        raise PipelineError(
            f"values of {probability!r} are not probabilities in [0, 1]",
            "pass the predicted probability of label 1",
        )
    # bool or float labels confuse Evidently's label handling: plain 0/1 ints.
    return pd.DataFrame(
        {target: data[target].astype(int).to_numpy(), probability: probabilities.to_numpy()}
    )


def _quality_metrics(both_classes: bool) -> list[Any]:
    """The ClassificationPreset; with one class only, its scalar metrics one by one, since the
    preset's per-label metrics raise (KeyError) when a class is absent."""
    from evidently import metrics
    from evidently.presets import ClassificationPreset

    if both_classes:
        return [ClassificationPreset()]
    return [getattr(metrics, name)() for name in _QUALITY_METRICS]


def _quality_values(result: dict[str, Any]) -> dict[str, float | None]:
    """Our metric names -> values, found by metric type; NaN (undefined) becomes None."""
    values: dict[str, float | None] = dict.fromkeys(_QUALITY_METRICS.values())
    for metric in result["metrics"]:
        name = _QUALITY_METRICS.get(metric["config"]["type"].rsplit(":", 1)[-1])
        if name is None or not isinstance(metric["value"], int | float):
            continue
        value = float(metric["value"])
        values[name] = value if math.isfinite(value) else None
    return values
