"""Evidently reports: feature drift between two frames, and live classification quality.

Each report is stored under ``reports/{env}/{kind}/{timestamp}/`` as Evidently's
``report.html`` and ``report.json`` plus our ``summary.json`` (the pydantic model below), and
optionally added to a local Evidently Workspace so ``evidently ui`` can chart it over time.

Evidently is imported inside the functions: importing it takes ~10 s, and ``pipelines`` modules
must import fast (``mlops --help``).
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
import warnings
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import BaseModel

from pipelines.errors import PipelineError
from pipelines.storage import Storage

REPORTS = "reports"
SUMMARY = "summary.json"

# Stattests whose score is a p-value (drift when the score is BELOW the threshold), by registry
# name and by display name; every other method scores a distance (drift when at or above it).
# Only used when Evidently produced no test for a column.
_PVALUE_METHODS = frozenset(
    {
        "ks",
        "K-S p_value",
        "chisquare",
        "chi-square p_value",
        "z",
        "Z-test p_value",
        "anderson",
        "Anderson-Darling",
        "cramer_von_mises",
        "Cramer-von Mises",
        "es",
        "Epps-Singleton",
        "fisher_exact",
        "Fisher's Exact test",
        "g_test",
        "g-test",
        "mannw",
        "Mann-Whitney U-rank test",
        "t_test",
        "t-test",
        "TVD",
        "Total-Variation-Distance",
        "empirical_mmd",
        "Empirical_MMD",
    }
)

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

_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_STAMP = re.compile(r"^(\d{8}T\d{6}Z)(?:-(\d+))?$")


class ColumnDrift(BaseModel):
    """Drift of one feature between the reference and the current frame."""

    column: str
    method: str
    """Stattest, short (``ks``) or display name (``Wasserstein distance (normed)``) as Evidently
    reports it."""
    score: float
    """The stattest's score: a p-value or a distance, depending on `method`."""
    threshold: float
    drifted: bool


class DriftReport(BaseModel):
    """Summary of one data drift report; ``summary.json`` beside Evidently's files."""

    kind: str
    """``data_drift`` (gate) or ``live_drift`` (monitor)."""
    env: str
    timestamp: str
    """UTC, ``20261123T120501Z``; ``-2``, ``-3``… appended if that prefix was already taken."""
    prefix: str
    """``reports/{env}/{kind}/{timestamp}``."""
    html: str
    """Storage key of Evidently's HTML report."""
    json_key: str
    """Storage key of Evidently's JSON (``{"metrics": [...], "tests": [...]}``)."""
    drift_share: float
    """Share of the features that drifted (0..1)."""
    drifted_columns: list[str]
    dataset_drift: bool
    """``drift_share >= threshold``."""
    threshold: float
    """The drift-share threshold used."""
    columns: list[ColumnDrift]
    """One per feature, in the order the features were given."""
    reference_rows: int
    current_rows: int
    model_version: str | None = None
    metadata: dict[str, Any] = {}


class QualityReport(BaseModel):
    """Summary of one classification quality report; ``summary.json`` beside Evidently's files."""

    kind: str
    env: str
    timestamp: str
    prefix: str
    html: str
    json_key: str
    rows: int
    metrics: dict[str, float | None]
    """``accuracy``, ``precision``, ``recall``, ``f1``, ``roc_auc``, ``log_loss``, ``tpr``,
    ``tnr``, ``fpr``, ``fnr``; None where undefined (e.g. ROC-AUC with one class only)."""
    model_version: str | None = None
    metadata: dict[str, Any] = {}


def data_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    features: Sequence[str],
    *,
    storage: Storage,
    env: str,
    kind: str = "data_drift",
    drift_share: float = 0.5,
    method: str | None = None,
    column_threshold: float | None = None,
    model_version: str | None = None,
    metadata: dict[str, Any] | None = None,
    workspace: Path | None = None,
    project: str | None = None,
    now: datetime | None = None,
) -> DriftReport:
    """Compare the distribution of each of `features` in `current` against `reference`.

    Args:
        reference: the frame the model was trained on (or the previous window).
        current: the frame to test.
        features: numeric columns to test, all present in both frames.
        storage: where the report goes (``reports/{env}/{kind}/{timestamp}/``).
        env: environment name.
        kind: report kind, one path segment.
        drift_share: the dataset drifted when at least this share of the features did.
        method: Evidently stattest for every feature (None: Evidently picks per column).
        column_threshold: that stattest's threshold (None: the stattest's default).
        model_version: the model version the report concerns, recorded in the summary.
        metadata: extra fields recorded in the summary (and, as strings, in the snapshot).
        workspace: a local Evidently Workspace directory to add the snapshot to.
        project: the Workspace project (created if missing); default ``mlops-{env}``.
        now: the report's time (default: now, UTC).

    Raises:
        PipelineError: on a missing or non-numeric feature, an empty frame, or bad arguments.
    """
    names = _check_drift_inputs(reference, current, features, env, kind, drift_share)
    moment = _utc(now)
    _quiet_evidently()
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    definition = DataDefinition(numerical_columns=names)
    preset = DataDriftPreset(
        columns=names, drift_share=drift_share, method=method, threshold=column_threshold
    )
    snapshot = Report([preset], include_tests=True).run(
        current_data=Dataset.from_pandas(current[names], data_definition=definition),
        reference_data=Dataset.from_pandas(reference[names], data_definition=definition),
        timestamp=moment.replace(tzinfo=None),
        metadata=_snapshot_metadata(env, kind, model_version, metadata),
        tags=[env, kind],
    )
    columns = _column_drift(snapshot.dict(), names)
    drifted = [c.column for c in columns if c.drifted]
    share = len(drifted) / len(names)
    timestamp, prefix = _save_evidently(snapshot, storage, env, kind, moment)
    report = DriftReport(
        kind=kind,
        env=env,
        timestamp=timestamp,
        prefix=prefix,
        html=f"{prefix}/report.html",
        json_key=f"{prefix}/report.json",
        drift_share=share,
        drifted_columns=drifted,
        dataset_drift=share >= drift_share,
        threshold=drift_share,
        columns=columns,
        reference_rows=len(reference),
        current_rows=len(current),
        model_version=model_version,
        metadata=dict(metadata or {}),
    )
    storage.write_bytes(f"{prefix}/{SUMMARY}", report.model_dump_json(indent=2).encode())
    if workspace is not None:
        _add_to_workspace(snapshot, workspace, project or f"mlops-{env}", prefix)
    return report


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
    moment = _utc(now)
    _quiet_evidently()
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
            metadata=_snapshot_metadata(env, kind, model_version, metadata),
            tags=[env, kind],
        )
    metrics = _quality_values(snapshot.dict())
    timestamp, prefix = _save_evidently(snapshot, storage, env, kind, moment)
    report = QualityReport(
        kind=kind,
        env=env,
        timestamp=timestamp,
        prefix=prefix,
        html=f"{prefix}/report.html",
        json_key=f"{prefix}/report.json",
        rows=len(data),
        metrics=metrics,
        model_version=model_version,
        metadata=dict(metadata or {}),
    )
    storage.write_bytes(f"{prefix}/{SUMMARY}", report.model_dump_json(indent=2).encode())
    if workspace is not None:
        _add_to_workspace(snapshot, workspace, project or f"mlops-{env}", prefix)
    return report


def list_reports(storage: Storage, env: str | None = None) -> list[dict[str, Any]]:
    """Every stored report summary under ``reports/`` (or ``reports/{env}/``), newest first.

    Each is the ``summary.json`` dict plus ``"path"``: its prefix.

    Raises:
        PipelineError: if a summary is not valid JSON.
    """
    root = f"{REPORTS}/{env}/" if env is not None else f"{REPORTS}/"
    found: list[dict[str, Any]] = []
    for key in storage.list(root):
        if not key.endswith(f"/{SUMMARY}"):
            continue
        try:
            summary = json.loads(storage.read_bytes(key))
        except ValueError as error:
            raise PipelineError(
                f"report summary {key} is not valid JSON: {error}",
                "delete that report's folder, or re-run the report",
            ) from None
        found.append({**summary, "path": key.removesuffix(f"/{SUMMARY}")})
    return sorted(found, key=_newest_key, reverse=True)


def _newest_key(summary: dict[str, Any]) -> tuple[str, int, str]:
    """Sort key: the timestamp, then its ``-N`` suffix numerically (``-10`` after ``-9``)."""
    path = str(summary["path"])
    match = _STAMP.match(str(summary.get("timestamp", path.rsplit("/", 1)[-1])))
    if match is None:
        return ("", 0, path)
    return (match.group(1), int(match.group(2) or 1), path)


def _check_segment(name: str, value: str) -> None:
    if not _SEGMENT.match(value):
        raise PipelineError(
            f"{name} {value!r} cannot be a storage path segment",
            "use letters, digits, '.', '_' and '-' only",
        )


def _check_drift_inputs(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    features: Sequence[str],
    env: str,
    kind: str,
    drift_share: float,
) -> list[str]:
    """The features as a list, once the frames are known to hold them with rows.

    Raises:
        PipelineError: naming the first problem found.
    """
    _check_segment("env", env)
    _check_segment("kind", kind)
    names = list(features)
    if not names:
        raise PipelineError("no features to test for drift", "pass at least one feature column")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise PipelineError(f"features listed twice: {', '.join(duplicates)}", "list each once")
    if not 0 <= drift_share <= 1:
        raise PipelineError(
            f"drift share threshold {drift_share} is not between 0 and 1",
            "pass the share of features (e.g. 0.5) at or above which the dataset drifted",
        )
    for label, frame in (("reference", reference), ("current", current)):
        missing = [n for n in names if n not in frame.columns]
        if missing:
            raise PipelineError(
                f"{label} frame lacks feature column(s): {', '.join(missing)}",
                "test only features present in both frames",
            )
        if frame.empty:
            raise PipelineError(f"{label} frame has no rows", "widen its time window")
        for name in names:
            column = frame[name]
            if not pd.api.types.is_numeric_dtype(column):
                raise PipelineError(
                    f"feature {name} in the {label} frame is {column.dtype}, not numeric",
                    "test numeric features only",
                )
            if column.isna().all():
                raise PipelineError(
                    f"feature {name} in the {label} frame has no values (all missing)",
                    "fix the feature computation, or leave that feature out",
                )
    return names


def _check_quality_inputs(
    frame: pd.DataFrame, env: str, kind: str, target: str, probability: str
) -> pd.DataFrame:
    """The two columns, labels as int, once they are known to be complete and in range.

    Raises:
        PipelineError: naming the first problem found.
    """
    _check_segment("env", env)
    _check_segment("kind", kind)
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


def _utc(now: datetime | None) -> datetime:
    """`now` in UTC; a naive datetime is taken to be UTC already."""
    if now is None:
        return datetime.now(UTC)
    return now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)


def _quiet_evidently() -> None:
    """Opt out of Evidently's usage telemetry (it would call out to the internet)."""
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("EVIDENTLY_DISABLE_TELEMETRY", "1")


def _snapshot_metadata(
    env: str, kind: str, model_version: str | None, metadata: dict[str, Any] | None
) -> dict[str, str]:
    """Evidently accepts only string metadata values: others are stored as JSON."""
    fields: dict[str, Any] = {"env": env, "kind": kind, **(metadata or {})}
    if model_version is not None:
        fields["model_version"] = model_version
    return {
        key: value if isinstance(value, str) else json.dumps(value, default=str)
        for key, value in fields.items()
    }


def _column_drift(result: dict[str, Any], names: list[str]) -> list[ColumnDrift]:
    """Per-column drift from ``snapshot.dict()``, found by metric type and column name.

    A column drifted when its ``drift`` test failed; without a test (include_tests off, or a
    status other than SUCCESS/FAIL), by the stattest's rule.
    """
    status = {
        test["metric_config"]["metric_id"]: str(getattr(test["status"], "value", test["status"]))
        for test in result.get("tests", [])
        if test.get("id") == "drift"
    }
    by_column: dict[str, ColumnDrift] = {}
    for metric in result["metrics"]:
        config = metric["config"]
        if config["type"].rsplit(":", 1)[-1] != "ValueDrift":
            continue
        score, threshold = float(metric["value"]), float(config["threshold"])
        method = str(config["method"])
        verdict = status.get(metric["id"])
        if verdict in ("FAIL", "SUCCESS"):
            drifted = verdict == "FAIL"
        elif method in _PVALUE_METHODS:
            drifted = score < threshold
        else:
            drifted = score >= threshold
        by_column[config["column"]] = ColumnDrift(
            column=config["column"],
            method=method,
            score=score,
            threshold=threshold,
            drifted=drifted,
        )
    missing = [n for n in names if n not in by_column]
    if missing:
        raise PipelineError(
            f"Evidently reported no drift for feature(s): {', '.join(missing)}",
            "check that they are numeric columns with values in both frames",
        )
    return [by_column[n] for n in names]


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


def _unique_prefix(storage: Storage, env: str, kind: str, moment: datetime) -> tuple[str, str]:
    """``(timestamp, prefix)`` for a prefix nothing is stored under yet."""
    base = moment.strftime("%Y%m%dT%H%M%SZ")
    stamp, n = base, 1
    while storage.list(f"{REPORTS}/{env}/{kind}/{stamp}/"):
        n += 1
        stamp = f"{base}-{n}"
    return stamp, f"{REPORTS}/{env}/{kind}/{stamp}"


def _save_evidently(
    snapshot: Any, storage: Storage, env: str, kind: str, moment: datetime
) -> tuple[str, str]:
    """Store Evidently's HTML and JSON under a fresh prefix; ``(timestamp, prefix)``."""
    timestamp, prefix = _unique_prefix(storage, env, kind, moment)
    with tempfile.TemporaryDirectory(prefix="mlops-report-") as tmp:
        for name, save in (
            ("report.html", snapshot.save_html),
            ("report.json", snapshot.save_json),
        ):
            path = Path(tmp) / name
            save(str(path))  # Evidently writes only when given a str path
            storage.write_bytes(f"{prefix}/{name}", path.read_bytes())
    return timestamp, prefix


def _add_to_workspace(snapshot: Any, workspace: Path, project: str, name: str) -> None:
    """Add `snapshot` (without its data) to `project` in the local Workspace, creating either."""
    from evidently.ui.workspace import Workspace

    space = Workspace.create(str(workspace))
    # search_project matches the exact name; keep the exact check in case that changes.
    found = [p for p in space.search_project(project) if p.name == project]
    target = found[0] if found else space.create_project(project, description="mlops reports")
    space.add_run(target.id, snapshot, include_data=False, name=name)
