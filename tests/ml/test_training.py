"""The whole training DAG in-process on the local MLflow store: registry, aliases, lineage."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipelines.ml.dataset import read_dataset
from pipelines.ml.registry import list_versions
from pipelines.orchestration.context import RunParams, StepContext, new_run_id
from pipelines.orchestration.dag import training_pipeline
from pipelines.orchestration.runner import run_pipeline
from pipelines.settings import Settings
from pipelines.storage import LocalStorage
from tests.conftest import MIRROR_DAYS, MIRROR_START, SYMBOLS
from tests.ml import fast_training_settings

pytestmark = pytest.mark.integration  # every test here starts a process

END = MIRROR_START.replace(day=MIRROR_START.day + MIRROR_DAYS - 1)


@pytest.fixture
def train_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return fast_training_settings(tmp_path / "home")


def run(settings: Settings, mirror: Path, **overrides: Any) -> dict[str, Any]:
    params = RunParams(
        source=mirror.as_uri(), symbols=SYMBOLS, interval="1m", start=MIRROR_START, end=END
    )
    ctx = StepContext(
        new_run_id(),
        params.model_copy(update=overrides),
        settings,
        LocalStorage(Path(settings.data_url)),
    )
    return run_pipeline(ctx, training_pipeline().steps)


def test_first_run_bootstraps_champion_second_adds_a_challenger(
    train_settings: Settings, mirror_root: Path
) -> None:
    import mlflow
    from mlflow import MlflowClient

    first = run(train_settings, mirror_root)
    assert first["status"] == "succeeded", first.get("error")
    steps = first["steps"]
    assert steps["register"]["version"] == 1
    assert steps["register"]["aliases"] == ["challenger", "champion"]
    assert steps["features"]["rows"] > 10_000 and len(steps["features"]["dataset_hash"]) == 16
    metrics = steps["evaluate"]["metrics"]
    assert {
        "accuracy",
        "roc_auc",
        "log_loss",
        "f1",
        "brier",
        "base_rate",
        "strategy_return",
    } <= set(metrics)
    assert 0.0 <= metrics["roc_auc"] <= 1.0 and metrics["rows"] > 0

    # the local store never leaks into the environment (child processes would inherit it)
    assert "MLFLOW_TRACKING_URI" not in os.environ

    second = run(train_settings, mirror_root)
    assert second["status"] == "succeeded", second.get("error")
    assert second["steps"]["features"]["reused"] is True
    assert second["steps"]["register"]["version"] == 2
    assert second["steps"]["register"]["aliases"] == ["challenger"]

    versions = {v["version"]: v for v in list_versions(train_settings)}
    assert versions[1]["aliases"] == ["champion"] and versions[2]["aliases"] == ["challenger"]
    assert versions[2]["dataset_hash"] == steps["features"]["dataset_hash"]
    assert versions[2]["metrics"]["roc_auc"] == pytest.approx(
        second["steps"]["evaluate"]["metrics"]["roc_auc"], abs=1e-6
    )

    # the champion loads by alias and scores the dataset's rows as probabilities
    rows = read_dataset(
        LocalStorage(Path(train_settings.data_url)), steps["features"]["prefix"]
    ).head(50)
    champion = mlflow.pyfunc.load_model("models:/market-direction@champion")
    probability = np.asarray(champion.predict(rows[steps["features"]["features"]]))
    assert probability.shape == (50, 2) and np.allclose(probability.sum(axis=1), 1.0)

    # lineage: dataset digest, git commit, params, per-fold metrics on the MLflow run
    client = MlflowClient()
    mlflow_run = client.get_run(steps["train"]["mlflow_run_id"])
    assert mlflow_run.inputs is not None
    dataset = mlflow_run.inputs.dataset_inputs[0].dataset
    assert dataset.digest == steps["features"]["dataset_hash"]
    assert mlflow_run.data.tags["mlflow.source.git.commit"] == steps["train"]["git_commit"]
    assert mlflow_run.data.params["horizon"] == "12"
    assert (
        "eval_roc_auc" in mlflow_run.data.metrics and "cv_mean_roc_auc" in mlflow_run.data.metrics
    )
    assert len(client.get_metric_history(mlflow_run.info.run_id, "cv_roc_auc")) == 2
    tags = client.get_model_version("market-direction", "1").tags
    assert tags["features"].split(",") == steps["features"]["features"]
    assert json.loads(tags["eval_metrics"])["roc_auc"] == pytest.approx(
        metrics["roc_auc"], abs=1e-6
    )
    # what the monitor's ROC-AUC deficit is measured against (docs/decisions.md)
    within = json.loads(tags["eval_metrics"])["roc_auc_within_symbol"]
    assert 0.0 < within < 1.0 and within != pytest.approx(metrics["roc_auc"], abs=1e-9)


def test_no_champion_below_the_quality_floor(train_settings: Settings, mirror_root: Path) -> None:
    strict = train_settings.model_copy(update={"champion_min_roc_auc": 0.99})
    summary = run(strict, mirror_root)
    assert summary["status"] == "succeeded"
    assert summary["steps"]["register"]["aliases"] == ["challenger"]
    assert "below the floor" in summary["steps"]["register"]["decision"]


def test_too_few_rows_fails_clearly_and_registers_nothing(
    train_settings: Settings, mirror_root: Path
) -> None:
    greedy = train_settings.model_copy(update={"eval_days": 5.8})
    summary = run(greedy, mirror_root)
    assert summary["status"] == "failed" and summary["failed_step"] == "train"
    assert "too few labelled rows" in summary["error"] and "MLOPS_EVAL_DAYS" in summary["error"]
    assert list_versions(greedy) == []


def test_logistic_regression_is_a_config_change(
    train_settings: Settings, mirror_root: Path
) -> None:
    linear = train_settings.model_copy(
        update={"model_type": "logistic_regression", "model_params": {}}
    )
    summary = run(linear, mirror_root)
    assert summary["status"] == "succeeded", summary.get("error")
    assert summary["steps"]["train"]["model_type"] == "logistic_regression"
