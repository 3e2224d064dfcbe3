"""Orphans after a kill (issue 15 #13): a re-run of `train` ends the MLflow run a killed attempt
left RUNNING (never a live process's), and a re-run of `register` reuses the version a killed
attempt created instead of adding a second one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from pipelines.ml.dataset import DatasetInfo
from pipelines.ml.registry import register, version_tags
from pipelines.ml.tracking import client
from pipelines.ml.train import EvaluateResult, TrainResult
from pipelines.orchestration.context import RunParams, StepContext, new_run_id
from pipelines.orchestration.dag import training_pipeline
from pipelines.orchestration.runner import run_pipeline
from pipelines.settings import Settings
from pipelines.storage import LocalStorage
from tests.conftest import MIRROR_START, REPO, SYMBOLS
from tests.ml import fast_training_settings
from tests.ml.test_training import END

pytestmark = [pytest.mark.integration, pytest.mark.hostile]  # MLflow logs through subprocesses

HOLDER = """
import sys, time
from pathlib import Path
import mlflow
from pipelines.ml.tracking import attempt_tags, configure
from pipelines.settings import Settings

configure(Settings(home=Path(sys.argv[1])))
with mlflow.start_run(run_name=sys.argv[2], tags=attempt_tags(sys.argv[2])) as run:
    print(run.info.run_id, flush=True)  # the run is open, as train's is while it logs
    time.sleep(300)
"""


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("MLOPS_GIT_COMMIT", "0" * 40)
    return fast_training_settings(tmp_path / "home")


def context(settings: Settings, mirror: Path, run_id: str) -> StepContext:
    params = RunParams(
        source=mirror.as_uri(), symbols=SYMBOLS, interval="1m", start=MIRROR_START, end=END
    )
    return StepContext(run_id, params, settings, LocalStorage(Path(settings.data_url)))


@contextmanager
def runs_open_in_processes(
    settings: Settings, run_id: str, count: int
) -> Iterator[list[tuple[subprocess.Popen[str], str]]]:
    """`count` processes (started together) each holding an MLflow run of `run_id` open;
    yields (process, MLflow run id) for each."""
    client(settings)  # the store and experiment exist before the processes share them
    holders = [
        subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(settings.home), run_id],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(count)
    ]
    try:
        yield [(h, h.stdout.readline().strip()) for h in holders if h.stdout is not None]
    finally:
        for holder in holders:
            if holder.poll() is None:
                os.kill(holder.pid, signal.SIGKILL)
            holder.wait(timeout=30)


def status(settings: Settings, run_id: str) -> Any:
    return client(settings).get_run(run_id)


def test_a_train_rerun_ends_the_run_a_killed_attempt_left_running(
    settings: Settings, mirror_root: Path
) -> None:
    run_id = new_run_id()
    with runs_open_in_processes(settings, run_id, 2) as [(attempt, killed), (_, live)]:
        os.kill(attempt.pid, signal.SIGKILL)  # the attempt dies mid-run: its run stays RUNNING
        attempt.wait(timeout=30)
        assert status(settings, killed).info.status == "RUNNING"

        summary = run_pipeline(
            context(settings, mirror_root, run_id), training_pipeline().steps, until="train"
        )
        assert summary["status"] == "succeeded", summary.get("error")
        assert status(settings, killed).info.status == "KILLED"
        # a live process's run is never touched
        assert status(settings, live).info.status == "RUNNING"
        fresh = status(settings, summary["steps"]["train"]["mlflow_run_id"])
        assert fresh.info.status == "FINISHED"
        assert fresh.data.tags["mlops.replaces"] == killed
        assert fresh.data.tags["mlops.pid"] == str(os.getpid())


def test_a_register_rerun_reuses_the_version_a_killed_attempt_created(
    settings: Settings, mirror_root: Path
) -> None:
    import mlflow

    ctx = context(settings, mirror_root, new_run_id())
    steps = training_pipeline().steps
    first = run_pipeline(ctx, steps, until="evaluate")
    assert first["status"] == "succeeded", first.get("error")
    info = ctx.result("features", DatasetInfo)
    trained = ctx.result("train", TrainResult)
    evaluated = ctx.result("evaluate", EvaluateResult)
    # What a register attempt killed right after MLflow created the version leaves (simulated:
    # the version created exactly as register's first call does, with no alias set after it).
    orphan = mlflow.register_model(
        trained.model_uri,
        settings.model_name,
        tags=version_tags(info, trained, evaluated, ctx.run_id),
    )
    assert dict(client(settings).get_registered_model(settings.model_name).aliases) == {}

    rerun = run_pipeline(ctx, steps, until="register", resume=True)
    assert rerun["status"] == "succeeded", rerun.get("error")
    result = rerun["steps"]["register"]
    assert result["version"] == int(orphan.version) == 1
    assert result["aliases"] == ["challenger", "champion"]
    assert result["decision"].startswith("version 1 reused")
    versions = client(settings).search_model_versions(f"name='{settings.model_name}'")
    assert [int(v.version) for v in versions] == [1]

    # and once more, after it succeeded: still one version, its aliases kept
    again = register(settings, info, trained, evaluated, ctx.run_id)
    assert (again.version, again.aliases) == (1, ["challenger", "champion"])
    assert "already champion" in again.decision
    assert len(client(settings).search_model_versions(f"name='{settings.model_name}'")) == 1
