"""Feature drift between two frames (Evidently's DataDriftPreset), stored as a report."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TypedDict

import pandas as pd
from pydantic import BaseModel, Field

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
from pipelines.reports.volatility import StatisticCheck
from pipelines.settings import Settings
from pipelines.storage import Storage

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

CALENDAR_PREFIXES = ("tod_", "dow_")
"""Time-of-day/-week encodings: their distribution in a window is fixed by the window's length,
not by the market, so they are left out of the drift test."""


class DriftTest(TypedDict):
    """How every drift report of an env is judged (from settings)."""

    drift_share: float
    method: str | None
    column_threshold: float | None
    column_thresholds: dict[str, float] | None


class DriftOptions(DriftTest):
    """The env's drift test and where its reports are charted (from settings)."""

    workspace: Path
    project: str


def drift_test(settings: Settings, calibrated: dict[str, float] | None = None) -> DriftTest:
    """The env's drift test (``MLOPS_DRIFT_*``, ``MLOPS_GATE_MAX_DRIFT_SHARE``).

    With `calibrated` thresholds (`pipelines.reports.calibration`, PSI only) each feature is
    judged against its own, and the dataset drifted when any feature did: the false-alarm rate
    per decision is shared between the features by the thresholds themselves.
    """
    use = calibrated if calibrated and (settings.drift_method or "") == "psi" else None
    return DriftTest(
        drift_share=1 / len(use) if use else settings.gate_max_drift_share,
        method=settings.drift_method or None,
        column_threshold=settings.drift_threshold,
        column_thresholds=use,
    )


def drift_options(settings: Settings, calibrated: dict[str, float] | None = None) -> DriftOptions:
    """The env's drift test and its Evidently workspace and project."""
    return DriftOptions(
        **drift_test(settings, calibrated),
        workspace=settings.home / "evidently",
        project=f"{settings.model_name}-{settings.env}",
    )


def drift_features(features: list[str]) -> list[str]:
    """The features whose drift means the market changed."""
    return [f for f in features if not f.startswith(CALENDAR_PREFIXES)]


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


class DriftReport(ReportSummary):
    """Summary of one data drift report (``data_drift`` from the gate, ``live_drift`` from the
    monitor)."""

    drift_share: float
    """Share of the features that drifted (0..1)."""
    drifted_columns: list[str]
    dataset_drift: bool
    """``drift_share >= threshold``, or any of `statistics` drifted."""
    threshold: float
    """The drift-share threshold used."""
    columns: list[ColumnDrift]
    """One per feature, in the order the features were given."""
    reference_rows: int
    current_rows: int
    statistics: list[StatisticCheck] = Field(default_factory=list)
    """The decision's other drift statistics against their calibrated thresholds (the
    volatility level, `pipelines.reports.volatility`); empty when not calibrated."""


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
    column_thresholds: dict[str, float] | None = None,
    statistics: Sequence[StatisticCheck] = (),
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
        column_thresholds: a threshold per feature (calibrated), over `column_threshold`.
        statistics: other drift statistics of the same frames, already checked against their
            calibrated thresholds (`pipelines.reports.volatility.check`): recorded in the
            summary and in its metadata; any drifted one makes the dataset drift.
        model_version: the model version the report concerns, recorded in the summary.
        metadata: extra fields recorded in the summary (and, as strings, in the snapshot).
        workspace: a local Evidently Workspace directory to add the snapshot to.
        project: the Workspace project (created if missing); default ``mlops-{env}``.
        now: the report's time (default: now, UTC).

    Raises:
        PipelineError: on a missing or non-numeric feature, an empty frame, or bad arguments.
    """
    names = _check_drift_inputs(reference, current, features, env, kind, drift_share)
    moment = utc(now)
    quiet_evidently()
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    definition = DataDefinition(numerical_columns=names)
    preset = DataDriftPreset(
        columns=names,
        drift_share=drift_share,
        method=method,
        threshold=column_threshold,
        per_column_threshold={n: column_thresholds[n] for n in names if n in column_thresholds}
        if column_thresholds
        else None,
    )
    snapshot = Report([preset], include_tests=True).run(
        current_data=Dataset.from_pandas(current[names], data_definition=definition),
        reference_data=Dataset.from_pandas(reference[names], data_definition=definition),
        timestamp=moment.replace(tzinfo=None),
        metadata=snapshot_metadata(
            env,
            kind,
            model_version,
            {**(metadata or {}), **{s.name: _shown(s) for s in statistics}},
        ),
        tags=[env, kind],
    )
    columns = _column_drift(snapshot.dict(), names)
    drifted = [c.column for c in columns if c.drifted]
    share = len(drifted) / len(names)
    where = save_report(snapshot, storage, env=env, kind=kind, moment=moment)
    if workspace is not None:
        from pipelines.reports.workspace import add_report

        add_report(snapshot, workspace, project or f"mlops-{env}", where["prefix"], names)
    report = DriftReport(
        kind=kind,
        env=env,
        **where,
        drift_share=share,
        drifted_columns=drifted,
        dataset_drift=share >= drift_share or any(s.drifted for s in statistics),
        threshold=drift_share,
        columns=columns,
        reference_rows=len(reference),
        current_rows=len(current),
        statistics=list(statistics),
        model_version=model_version,
        metadata=dict(metadata or {}),
    )
    write_summary(storage, report)
    return report


def _shown(found: StatisticCheck) -> str:
    """A statistic against its threshold, as the snapshot's metadata shows it."""
    verdict = "drifted" if found.drifted else "within"
    return f"{found.score:+.3f} (line ±{found.threshold:.3f}, {verdict})"


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
    check_segment("env", env)
    check_segment("kind", kind)
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
