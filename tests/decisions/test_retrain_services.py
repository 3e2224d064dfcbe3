"""Drift-triggered retraining end to end on the real services (PostgreSQL, SeaweedFS S3, MLflow
server; the CI's instance when there is one), the local backend: a champion trained on a stable
market, then live predictions on the day the market's volatility jumps (trusted: features
re-derived from the curated S3 bars). The monitor finds the window drifted, holds (quality is
fine), and triggers a detached ``mlops run``, which trains through that day and writes its run
summary; the trigger is a ledger record. A second monitor run within the cool-down records a
suppressed trigger and starts nothing, and an env that does not train never triggers."""

from __future__ import annotations

import json
import os
import signal
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import psutil
import pytest

from pipelines.synthetic.mirror import write_mirror
from tests.conftest import MIRROR_START, SYMBOLS, run_cli
from tests.services.cluster import (
    Services,
    gitops_remote,
    mlops_run,
    pipeline_env,
    registry,
    shared_services,
)

pytestmark = pytest.mark.integration

SHIFT = MIRROR_START + timedelta(days=6)
"""The day the synthetic market's regime changes (volatility up): the live day."""
TRAIN_END = SHIFT - timedelta(days=1)
RUN_TIMEOUT = 420.0
"""Seconds the triggered training run may take on two shared cores before the test fails."""


@pytest.fixture(scope="module")
def services() -> Any:
    with shared_services() as shared:
        yield shared


@dataclass
class Scene:
    root: Path
    env: dict[str, str]

    def cli(self, *args: str, **extra: str) -> Any:
        done = run_cli(list(args), {**self.env, **extra})
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads(done.stdout) if "--json" in args else done.stdout

    def storage(self) -> Any:
        """The env's storage layout, opened here as the commands open it (the fixture has set
        the S3 credentials in this process)."""
        from pipelines.storage import open_storage

        return open_storage(self.env["MLOPS_STORAGE_URL"], self.env["MLOPS_RAW_STORAGE_URL"])

    def records(self, kind: str) -> list[dict[str, Any]]:
        from pipelines.decisions import ledger

        return [r.model_dump() for r in ledger.read_all(self.storage(), "dev") if r.kind == kind]


def log_live_day(
    scene: Scene, summary: dict[str, Any], version: int, good: bool = True, after_ms: int = 90_000
) -> int:
    """Predictions of `version` for every bar of the live day, answered `after_ms` after each
    bar opened (a later answer supersedes), with the features a client computes from the
    curated bars; probabilities that track the outcome (`good`: only the market moved) or its
    opposite (the champion fails live)."""
    from bentos.inference_log import Chunk, InferenceLog
    from pipelines.ml.dataset import read_dataset
    from pipelines.ml.features import FeatureConfig
    from pipelines.settings import Settings
    from tests.support.client_features import client_features

    storage = scene.storage()
    features = summary["steps"]["features"]["features"]
    frame = read_dataset(storage, summary["steps"]["features"]["prefix"])
    part = frame[frame["open_time"].dt.date == SHIFT].dropna(subset=["label"])
    interval = summary["params"]["interval"]
    config = FeatureConfig(interval=interval, horizon=Settings().horizon)
    matrix = client_features(storage, part, features, interval, config)
    writer = InferenceLog(storage, "dev", str(version), features)
    for bar, rows in part.assign(**{f: matrix[:, i] for i, f in enumerate(features)}).groupby(
        "open_time"
    ):
        open_ms = int(bar.value // 1_000_000)
        label = rows["label"].to_numpy(dtype=float)
        writer.append(
            Chunk(
                f"live-{open_ms}-{after_ms}",
                "predict",
                open_ms + after_ms,
                rows[features].to_numpy(),
                (0.3 + 0.4 * label) if good else (0.7 - 0.4 * label),
                rows["symbol"].tolist(),
                [open_ms] * len(rows),
            )
        )
    writer.close()
    return len(part)


def wait_gone(pid: int, started: float, timeout: float) -> bool:
    """Whether the process `pid` (started at `started`) ended within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            process = psutil.Process(pid)
            if process.create_time() != started or process.status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(2)
    return False


@pytest.fixture(scope="module")
def scene(
    services: Services, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Scene, dict[str, Any]]:
    """A champion trained up to the day before the shift; the live day curated and logged; the
    monitor run once (it triggers), then its triggered run awaited."""
    with pytest.MonkeyPatch.context() as patch:
        return _scene(services, tmp_path_factory.mktemp("retrain"), patch)


def _scene(
    services: Services, root: Path, patch: pytest.MonkeyPatch
) -> tuple[Scene, dict[str, Any]]:
    mirror = root / "mirror"
    write_mirror(mirror, SYMBOLS, "1m", MIRROR_START, 8, seed=7, shift_at=SHIFT)
    env = pipeline_env(
        services,
        root / "home",
        MLOPS_GITOPS_REMOTE=str(gitops_remote(root)),
        MLOPS_SOURCE_URL=mirror.as_uri(),
        MLOPS_LOOKBACK_DAYS=str((SHIFT - MIRROR_START).days + 1),  # a retrain starts on day 1
        MLOPS_MONITOR_WINDOWS="1",
        MLOPS_MONITOR_MIN_ROWS="100",
        # the gate's limit: on 6 days no calibration applies, and at the fixed 0.5 the shift
        # (2 of 13 features over PSI 0.2, as measured) is not drift; at 0.1 it is
        MLOPS_GATE_MAX_DRIFT_SHARE="0.1",
        # the retrain's challenger must not replace the champion: the test's later monitor
        # runs judge the same champion (its logged predictions)
        MLOPS_GATE_MIN_AUC_DELTA="1",
    )
    scene = Scene(root, env)
    for name in ("AWS_ENDPOINT_URL_S3", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        patch.setenv(name, env[name])
    patch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    start = MIRROR_START.isoformat()
    trained = mlops_run(env, mirror, start, TRAIN_END.isoformat())
    assert trained["steps"]["gate"]["decision"] == "promote", trained["steps"]["gate"]
    live = mlops_run(env, mirror, TRAIN_END.isoformat(), SHIFT.isoformat(), until="features")
    seen: dict[str, Any] = {"trained": trained, "logged": log_live_day(scene, live, 1)}
    seen["first"] = scene.cli("decisions", "monitor", "--json")
    trigger = (seen["first"].get("retrain") or {}).get("trigger") or {}
    seen["second"] = scene.cli("decisions", "monitor", "--json")  # within the cool-down
    seen["not_training"] = scene.cli(
        "decisions", "monitor", "--json", MLOPS_TRAINS="false", MLOPS_RETRAIN_COOLDOWN_HOURS="0"
    )
    if trigger:
        ended = wait_gone(int(trigger["pid"]), float(trigger["started"]), RUN_TIMEOUT)
        if not ended:
            os.killpg(int(trigger["pid"]), signal.SIGTERM)
        seen["ended"] = ended
        seen["summary"] = Path(trigger["summary"]).read_text()
        seen["log"] = Path(trigger["log"]).read_text()[-3000:]
    # the champion now fails live, with no previous version to roll back to: the monitor holds
    # (it used to fail on the missing rollback target) and asks for a retrain, in the cool-down
    log_live_day(scene, live, 1, good=False, after_ms=95_000)
    # one live day is one judged window, whose clipped CUSUM steps are at most 2.5 (3.5 s.d.
    # less the allowance: pipelines.decisions.degradation), under the default line of 3.5; the line
    # is lowered so that this one bad day makes the rollback due
    degraded_env = {**env, "MLOPS_MONITOR_CUSUM_THRESHOLD": "1"}
    seen["degraded"] = run_cli(["decisions", "monitor", "--json"], degraded_env)
    seen["retrain_records"] = scene.records("retrain")
    seen["champion"] = int(
        registry(env).get_registered_model(env["MLOPS_MODEL_NAME"]).aliases["champion"]
    )
    return scene, seen


def test_a_drifted_live_window_triggers_a_training_run_recorded_in_the_ledger(
    scene: tuple[Scene, dict[str, Any]],
) -> None:
    _, seen = scene
    first = seen["first"]
    assert first["decision"] == "hold", first
    retrain = first["retrain"]
    assert retrain is not None and retrain["decision"] == "triggered", first
    assert "live drift over the gate's limit" in retrain["reasons"][0]
    assert seen["ended"], f"the triggered run did not end in {RUN_TIMEOUT}s: {seen['log']}"
    summary = json.loads(seen["summary"])
    assert summary["status"] == "succeeded", seen["log"]
    # the lookback up to the drifted day: the new model sees the new regime
    assert (summary["params"]["start"], summary["params"]["end"]) == (
        MIRROR_START.isoformat(),
        SHIFT.isoformat(),
    )
    assert summary["steps"]["register"]["version"] == 2
    assert summary["steps"]["gate"]["decision"] == "reject" and seen["champion"] == 1
    (triggered,) = [r for r in seen["retrain_records"] if r["decision"] == "triggered"]
    assert triggered["key"] == retrain["record"]
    assert triggered["inputs"]["monitor_record"] == first["record"]
    assert triggered["metrics"]["trigger"]["pid"] == retrain["trigger"]["pid"]
    assert triggered["metrics"]["drift_windows"][-1]["dataset_drift"] is True


def test_a_second_monitor_run_within_the_cool_down_is_suppressed_and_starts_nothing(
    scene: tuple[Scene, dict[str, Any]],
) -> None:
    _, seen = scene
    second = seen["second"]["retrain"]
    assert second["decision"] == "suppressed" and second["trigger"] is None, second
    assert "cool-down" in second["reasons"][-1]
    records = seen["retrain_records"]
    assert [r["decision"] for r in records] == [
        "triggered",
        "suppressed",
        "suppressed",
        "suppressed",
    ]
    assert all("trigger" not in r["metrics"] for r in records[1:])  # nothing was started
    assert len(list((scene[0].root / "home" / "retrain").glob("*.summary.json"))) == 1


def test_an_env_that_does_not_train_never_triggers(
    scene: tuple[Scene, dict[str, Any]],
) -> None:
    _, seen = scene
    result = seen["not_training"]["retrain"]
    assert result["decision"] == "suppressed" and result["trigger"] is None
    assert "does not train" in result["reasons"][-1]


def test_degraded_quality_without_a_rollback_target_holds_and_asks_for_a_retrain(
    scene: tuple[Scene, dict[str, Any]],
) -> None:
    _, seen = scene
    done = seen["degraded"]
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)
    assert result["decision"] == "hold" and "no 'previous' to roll back to" in result["reasons"][0]
    retrain = result["retrain"]
    assert retrain["decision"] == "suppressed" and "cool-down" in retrain["reasons"][-1]
    assert any("live quality degraded" in r for r in retrain["reasons"])
