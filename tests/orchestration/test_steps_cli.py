"""`mlops step`: one step per process, as Argo runs them, sharing state only through storage."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from pipelines.cli import app
from pipelines.errors import PipelineError

RUN = "wf-test-1"


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    values = {
        "MLOPS_HOME": str(tmp_path / "home"),
        "MLOPS_EVAL_DAYS": "1",
        "MLOPS_CV_FOLDS": "2",
        "MLOPS_MODEL_PARAMS": '{"max_iter": 30}',
        "MLOPS_MIN_TRAIN_ROWS": "1000",
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    return values


def step(*args: str) -> dict[str, Any]:
    result = CliRunner().invoke(app, ["step", *args, "--json"])
    if result.exception:
        raise result.exception
    document: dict[str, Any] = json.loads(result.stdout)
    return document


@pytest.mark.integration
def test_steps_run_one_by_one_like_argo_containers(env: dict[str, str], mirror_root: Path) -> None:
    outputs = Path(env["MLOPS_HOME"]) / "outputs" / "shards.json"
    planned = step(
        "shards",
        "--run-id",
        RUN,
        "--source",
        mirror_root.as_uri(),
        "--start",
        "2024-03-01",
        "--end",
        "2024-03-06",
        "--output-file",
        str(outputs),
    )
    # the output parameter Argo's withParam expands: one shard per symbol
    shards = json.loads(outputs.read_text())
    assert (
        shards
        == planned["shards"]
        == [
            "BTCUSDT:2024-03-01:2024-03-06",
            "ETHUSDT:2024-03-01:2024-03-06",
        ]
    )
    params = json.loads(
        (Path(env["MLOPS_HOME"]) / "data" / "runs" / RUN / "params.json").read_text()
    )
    assert params["start"] == "2024-03-01" and params["symbols"] == ["BTCUSDT", "ETHUSDT"]
    one = step("fetch", "--run-id", RUN, "--shard", shards[0])
    assert one["status"] == "succeeded" and one["files_downloaded"] == 6, "one pod, one shard"
    with pytest.raises(PipelineError, match="step validate needs fetch"):
        step("validate", "--run-id", RUN, "--shard", shards[0])  # the other shard is missing
    with pytest.raises(PipelineError, match="is outside the run"):
        step("fetch", "--run-id", RUN, "--shard", "SOLUSDT:2024-03-01:2024-03-06")
    other = step("fetch", "--run-id", RUN, "--shard", shards[1])
    assert other["files_downloaded"] == 6
    # as on Argo, nobody recorded fetch's merged result: validate's pods fan in the shards
    assert step("validate", "--run-id", RUN, "--shard", shards[1])["rows_valid"] > 0
    every = step("fetch", "--run-id", RUN)  # no --shard: every shard, in this process
    assert (every["files_downloaded"], every["files_skipped"], every["shards"]) == (0, 12, 2)

    with pytest.raises(
        PipelineError, match="step features needs validate, which has not succeeded"
    ):
        step("features", "--run-id", RUN)
    with pytest.raises(PipelineError, match="already has parameters"):
        step("validate", "--run-id", RUN, "--symbols", "BTCUSDT")

    for name in ("validate", "features", "train", "evaluate"):
        assert step(name, "--run-id", RUN)["status"] == "succeeded", name
    registered = step("register", "--run-id", RUN)
    assert registered["version"] == 1 and registered["run_id"] == RUN

    listed = CliRunner().invoke(app, ["models", "list", "--json"])
    versions = json.loads(listed.stdout)["versions"]
    assert [v["version"] for v in versions] == [1]
    assert (
        versions[0]["dataset_hash"]
        == json.loads(
            (
                Path(env["MLOPS_HOME"]) / "data" / "runs" / RUN / "steps" / "features.json"
            ).read_text()
        )["dataset_hash"]
    )


def test_unknown_step_is_named(env: dict[str, str]) -> None:
    with pytest.raises(PipelineError, match="unknown step 'deploy'"):
        step("deploy", "--run-id", RUN, "--source", "file:///nowhere")
