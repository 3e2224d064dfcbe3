"""Evidently drift and quality reports: verdicts per column, storage layout, Workspace runs."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, log_loss, roc_auc_score

from pipelines.errors import PipelineError
from pipelines.reports.drift import DriftReport, data_drift
from pipelines.reports.quality import quality_report
from pipelines.reports.store import list_reports
from pipelines.storage import LocalStorage

FEATURES = ["ret_1", "ret_5", "vol_15", "volume_z", "spread", "rsi_14"]
SHIFTED = ["vol_15", "rsi_14"]
NOW = datetime(2026, 11, 23, 12, 5, 1, tzinfo=UTC)


def frame(seed: int, rows: int = 3000, shift: tuple[str, ...] = ()) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    data = pd.DataFrame(rng.normal(size=(rows, len(FEATURES))), columns=FEATURES)
    for column in shift:
        data[column] += 1.0  # one standard deviation
    data["label"] = rng.integers(0, 2, size=rows)  # not a feature: must be left out
    return data


@pytest.fixture(scope="module")
def shifted() -> tuple[pd.DataFrame, pd.DataFrame]:
    return frame(1), frame(2, shift=tuple(SHIFTED))


def stored_json(storage: LocalStorage, key: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(storage.read_bytes(key))
    return loaded


def test_shifted_columns_and_only_those_drift(
    tmp_path: Path, shifted: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    storage = LocalStorage(tmp_path / "store")
    reference, current = shifted
    report = data_drift(
        reference, current, FEATURES, storage=storage, env="local", drift_share=0.3, now=NOW
    )

    assert sorted(report.drifted_columns) == sorted(SHIFTED)
    assert report.drift_share == pytest.approx(2 / 6)
    assert report.dataset_drift is True and report.threshold == 0.3
    assert [c.column for c in report.columns] == FEATURES
    assert {c.column for c in report.columns if c.drifted} == set(SHIFTED)
    assert (report.reference_rows, report.current_rows) == (3000, 3000)
    assert report.timestamp == "20261123T120501Z"
    assert report.prefix == "reports/local/data_drift/20261123T120501Z"
    for key in (report.html, report.json_key, f"{report.prefix}/summary.json"):
        assert storage.exists(key), key
    assert b"<html" in storage.read_bytes(report.html)[:2000].lower()

    # Our share agrees with Evidently's own count, read from its stored JSON by metric type.
    evidently = stored_json(storage, report.json_key)
    counts = [
        m for m in evidently["metrics"] if m["config"]["type"].endswith(":DriftedColumnsCount")
    ]
    assert len(counts) == 1 and counts[0]["value"]["count"] == 2
    assert (
        DriftReport.model_validate(stored_json(storage, f"{report.prefix}/summary.json")) == report
    )

    listed = list_reports(storage)
    assert [r["path"] for r in listed] == [report.prefix]
    assert listed[0]["drifted_columns"] == report.drifted_columns

    calm = data_drift(
        reference, current, FEATURES, storage=storage, env="local", drift_share=0.5, now=NOW
    )
    assert calm.drift_share == pytest.approx(2 / 6) and calm.dataset_drift is False


def test_same_distribution_does_not_drift(tmp_path: Path) -> None:
    report = data_drift(
        frame(3), frame(4), FEATURES, storage=LocalStorage(tmp_path), env="local", now=NOW
    )

    assert report.drifted_columns == []
    assert report.drift_share == 0 and report.dataset_drift is False
    assert all(not c.drifted and c.score < c.threshold for c in report.columns)


def test_explicit_method_and_threshold_reach_every_column(
    tmp_path: Path, shifted: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    reference, current = shifted
    report = data_drift(
        reference,
        current,
        FEATURES,
        storage=LocalStorage(tmp_path),
        env="local",
        kind="live_drift",
        method="ks",
        column_threshold=0.01,
        model_version="7",
        metadata={"dataset_hash": "abc"},
        now=NOW,
    )

    assert {(c.method, c.threshold) for c in report.columns} == {("ks", 0.01)}
    assert sorted(report.drifted_columns) == sorted(SHIFTED)
    assert report.prefix.startswith("reports/local/live_drift/")
    assert (report.model_version, report.metadata) == ("7", {"dataset_hash": "abc"})


@pytest.mark.parametrize("side", ["reference", "current"])
def test_missing_feature_is_named(tmp_path: Path, side: str) -> None:
    frames = {"reference": frame(1, rows=50), "current": frame(2, rows=50)}
    frames[side] = frames[side].drop(columns=["spread"])

    with pytest.raises(PipelineError, match=f"{side} frame lacks feature column.*spread"):
        data_drift(
            frames["reference"],
            frames["current"],
            FEATURES,
            storage=LocalStorage(tmp_path),
            env="local",
        )
    assert not (tmp_path / "reports").exists()


def test_empty_frame_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match="current frame has no rows"):
        data_drift(
            frame(1, rows=50),
            frame(2, rows=50).iloc[:0],
            FEATURES,
            storage=LocalStorage(tmp_path),
            env="local",
        )


def test_workspace_gets_one_project_and_every_run(
    tmp_path: Path, shifted: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    storage, workspace = LocalStorage(tmp_path / "store"), tmp_path / "evidently"
    reference, current = shifted
    reports = [
        data_drift(
            reference.iloc[:500],
            current.iloc[:500],
            FEATURES,
            storage=storage,
            env="local",
            workspace=workspace,
            project="m-local",
            now=NOW,
        )
        for _ in range(2)
    ]

    os.environ.setdefault("DO_NOT_TRACK", "1")
    from evidently.ui.workspace import Workspace

    space = Workspace(str(workspace))
    projects = space.list_projects()
    assert [p.name for p in projects] == ["m-local"]
    runs = space.list_runs(projects[0].id)
    assert len(runs) == 2
    names = {space.get_run(projects[0].id, run).name for run in runs}
    assert names == {r.prefix for r in reports}


def test_same_time_gets_distinct_prefixes(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    reference, current = frame(1, rows=300), frame(2, rows=300, shift=("ret_1",))
    first, second, third = (
        data_drift(reference, current, FEATURES, storage=storage, env="local", now=NOW)
        for _ in range(3)
    )

    assert [first.timestamp, second.timestamp, third.timestamp] == [
        "20261123T120501Z",
        "20261123T120501Z-2",
        "20261123T120501Z-3",
    ]
    for report in (first, second, third):
        summary = stored_json(storage, f"{report.prefix}/summary.json")
        assert summary["prefix"] == report.prefix
        assert storage.exists(report.html) and storage.exists(report.json_key)
    assert [r["path"] for r in list_reports(storage, "local")] == [
        third.prefix,
        second.prefix,
        first.prefix,
    ]


def predictions(seed: int, rows: int = 2000) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    probability = rng.uniform(0.02, 0.98, size=rows)
    label = (rng.uniform(size=rows) < probability).astype(int)
    return pd.DataFrame({"label": label, "probability_up": probability})


def test_quality_matches_sklearn_and_lists_with_drift(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "store")
    live = predictions(5)
    drift = data_drift(
        frame(1, rows=300), frame(2, rows=300), FEATURES, storage=storage, env="local", now=NOW
    )
    later = datetime(2026, 11, 23, 13, 0, 0, tzinfo=UTC)
    quality = quality_report(
        live,
        storage=storage,
        env="local",
        model_version="3",
        workspace=tmp_path / "evidently",
        project="m-local",
        now=later,
    )

    y, p = live["label"], live["probability_up"]
    assert quality.rows == len(live)
    assert quality.metrics["roc_auc"] == pytest.approx(roc_auc_score(y, p), abs=1e-9)
    assert quality.metrics["log_loss"] == pytest.approx(log_loss(y, p), abs=1e-9)
    assert quality.metrics["accuracy"] == pytest.approx(accuracy_score(y, p >= 0.5), abs=1e-9)
    assert quality.prefix == "reports/local/live_quality/20261123T130000Z"
    for key in (quality.html, quality.json_key, f"{quality.prefix}/summary.json"):
        assert storage.exists(key), key

    listed = list_reports(storage, "local")
    assert [(r["kind"], r["path"]) for r in listed] == [
        ("live_quality", quality.prefix),
        ("data_drift", drift.prefix),
    ]
    assert listed[0]["metrics"]["roc_auc"] == quality.metrics["roc_auc"]
    assert list_reports(storage, "prod") == []


def test_quality_with_one_class_reports_undefined_metrics_as_none(tmp_path: Path) -> None:
    live = predictions(6, rows=200).assign(label=True)  # bool labels, all positive

    quality = quality_report(live, storage=LocalStorage(tmp_path), env="local", now=NOW)

    assert quality.metrics["roc_auc"] is None
    assert quality.metrics["accuracy"] == pytest.approx(
        float((live["probability_up"] >= 0.5).mean())
    )
    assert quality.metrics["log_loss"] == pytest.approx(
        log_loss(np.ones(200, dtype=int), live["probability_up"], labels=[0, 1])
    )


def test_quality_refuses_unknown_labels(tmp_path: Path) -> None:
    live = predictions(7, rows=50)
    live.loc[3, "label"] = np.nan

    with pytest.raises(PipelineError, match="1 of 50 rows have no 'label'"):
        quality_report(live, storage=LocalStorage(tmp_path), env="local")
