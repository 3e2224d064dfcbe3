"""The canary analysis (``mlops decisions analyze``, the serving Rollout's analysis Job) against
the real services: a model trained and registered on them (S3 storage, the MLflow server's
registry), its canary predictions logged to S3 by the serving runtime's writer, judged on the
realized outcomes of the curated bars. A good canary passes (exit 0), a degraded one fails
(exit 3), too few rows are inconclusive (exit 4). Each case logs under its own env name (an env
is a value: ``inference/{env}/{version}/``), so the three share one training run."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipelines.storage import Storage
from tests.conftest import MIRROR_START, run_cli
from tests.services.cluster import Services, mlops_run, pipeline_env, shared_services

pytestmark = pytest.mark.integration

START = MIRROR_START.isoformat()
END = (MIRROR_START + timedelta(days=2)).isoformat()


@pytest.fixture(scope="module")
def services() -> Any:
    with shared_services() as shared:
        yield shared


@dataclass
class Registered:
    env: dict[str, str]
    summary: dict[str, Any]

    @property
    def version(self) -> str:
        return str(self.summary["steps"]["register"]["version"])

    def storage(self, monkeypatch: pytest.MonkeyPatch) -> Storage:
        from pipelines.storage import open_storage

        for name in ("AWS_ENDPOINT_URL_S3", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            monkeypatch.setenv(name, self.env[name])
        monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        return open_storage(self.env["MLOPS_STORAGE_URL"], self.env["MLOPS_RAW_STORAGE_URL"])

    def analyze(self, env: str) -> tuple[int, dict[str, Any]]:
        args = ["decisions", "analyze", "--version", self.version, "--json"]
        done = run_cli(args, {**self.env, "MLOPS_ENV": env, "MLOPS_MONITOR_MIN_ROWS": "100"})
        assert done.stdout, done.stderr[-3000:]
        return done.returncode, dict(json.loads(done.stdout))


@pytest.fixture(scope="module")
def registered(
    services: Services, mirror_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> Registered:
    """One training run on the services, up to the registered version (the canary's model)."""
    root = tmp_path_factory.mktemp("canary")
    env = pipeline_env(services, root / "home")
    return Registered(env, mlops_run(env, mirror_root, START, END, until="register"))


def log_canary(registered: Registered, storage: Storage, env: str, minutes: int, good: bool) -> int:
    """The canary's predictions for the last `minutes` of the run's bars, answered live (90 s
    after each bar opened), with features as a client computes them: right (the probability
    follows the outcome) or wrong (its opposite). Returns the rows."""
    from bentos.inference_log import Chunk, InferenceLog
    from pipelines.ml.dataset import read_dataset
    from pipelines.ml.features import FeatureConfig
    from pipelines.settings import Settings
    from tests.support.client_features import client_features

    steps = registered.summary["steps"]
    features = steps["features"]["features"]
    frame = read_dataset(storage, steps["features"]["prefix"])
    part = frame[frame["open_time"] >= frame["open_time"].max() - timedelta(minutes=minutes)]
    interval = registered.summary["params"]["interval"]
    config = FeatureConfig(interval=interval, horizon=Settings().horizon)
    matrix = client_features(storage, part, features, interval, config)
    part = part.assign(**{f: matrix[:, i] for i, f in enumerate(features)})
    writer = InferenceLog(storage, env, registered.version, features)
    for bar, rows in part.groupby("open_time"):
        open_ms = int(bar.value // 1_000_000)
        right = np.clip(rows["label"].to_numpy(dtype=float) * 0.4 + 0.3, 0, 1)
        writer.append(
            Chunk(
                f"canary-{open_ms}",
                "predict",
                open_ms + 90_000,
                rows[features].to_numpy(),
                right if good else 1 - right,
                rows["symbol"].tolist(),
                [open_ms] * len(rows),
            )
        )
    writer.close()
    return len(part)


def test_a_good_canary_passes(registered: Registered, monkeypatch: pytest.MonkeyPatch) -> None:
    logged = log_canary(registered, registered.storage(monkeypatch), "dev", 180, good=True)
    code, verdict = registered.analyze("dev")
    assert (code, verdict["verdict"]) == (0, "pass"), verdict
    assert verdict["trust"]["trusted_rows"] == logged  # re-derived from the curated S3 bars
    assert verdict["windows"][-1]["roc_auc"] > verdict["recorded_roc_auc"] - 0.05


def test_a_degraded_canary_fails(registered: Registered, monkeypatch: pytest.MonkeyPatch) -> None:
    log_canary(registered, registered.storage(monkeypatch), "staging", 180, good=False)
    code, verdict = registered.analyze("staging")
    assert (code, verdict["verdict"]) == (3, "degraded"), verdict
    assert verdict["windows"][-1]["roc_auc"] < verdict["recorded_roc_auc"] - 0.05
    assert "below" in verdict["reasons"][0]


def test_too_few_rows_are_inconclusive(
    registered: Registered, monkeypatch: pytest.MonkeyPatch
) -> None:
    logged = log_canary(registered, registered.storage(monkeypatch), "prod", 20, good=False)
    code, verdict = registered.analyze("prod")
    assert (code, verdict["verdict"]) == (4, "inconclusive"), verdict
    assert 0 < verdict["joined_rows"] <= logged < 100
    assert "too little evidence" in verdict["reasons"][0]


def test_a_version_with_no_logged_prediction_is_inconclusive(registered: Registered) -> None:
    code, verdict = registered.analyze("nowhere")
    assert (code, verdict["verdict"]) == (4, "inconclusive"), verdict
    assert "no logged prediction" in verdict["reasons"][0]
