"""The canary analysis (``mlops decisions analyze``, the serving Rollout's analysis Job) against
the real services: a model trained and registered on them (S3 storage, the MLflow server's
registry), its canary predictions logged to S3 by the serving runtime's writer, judged on the
realized outcomes of the curated bars. A good canary passes (exit 0), a degraded one fails
(exit 3), too few rows are inconclusive (exit 4). Each case logs under its own env name (an env
is a value: ``inference/{env}/{version}/``), so the three share one training run.

And as the Rollout's analysis sees it: ``--push`` sends the verdict to a real Pushgateway
(Debian's), a real Prometheus scrapes it as the stack's does (``honor_labels``), the
AnalysisTemplate's exact live-quality query is run there, and its exact conditions evaluated on
the answer (`tests.support.expr`, Argo Rollouts' rule): pass → Successful, degraded → Failed,
too little evidence → Inconclusive (a pause, never a pass, never an abort)."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import yaml

from pipelines import metrics as m
from pipelines.storage import Storage
from tests.conftest import MIRROR_START, run_cli
from tests.gitops.test_analysis_conditions import metric
from tests.services import free_port, stop, wait_http
from tests.services.cluster import Services, mlops_run, pipeline_env, shared_services
from tests.support.expr import phase

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

    def analyze(self, env: str, gateway: str | None = None) -> tuple[int, dict[str, Any]]:
        args = ["decisions", "analyze", "--version", self.version, "--json"]
        settings = {**self.env, "MLOPS_ENV": env, "MLOPS_MONITOR_MIN_ROWS": "100"}
        if gateway:
            args.append("--push")
            settings["MLOPS_METRICS_PUSHGATEWAY"] = gateway
        done = run_cli(args, settings)
        assert done.stdout, done.stderr[-3000:]
        return done.returncode, dict(json.loads(done.stdout))

    def analysis_outcome(self, env: str, monitoring: Monitoring) -> tuple[str, dict[str, Any]]:
        """``analyze --push`` as the Rollout's Job runs it, then the live-quality metric as the
        controller measures it: the template's query with this version, its conditions."""
        pushed = time.time()
        code, verdict = self.analyze(env, monitoring.gateway)
        assert code == 0, verdict  # --push: the verdict travels as the gauge, not the exit code
        assert verdict["pushed_to"] == monitoring.gateway
        monitoring.wait_scraped(self.version, pushed)
        live_quality = metric("live-quality")
        query = live_quality["provider"]["prometheus"]["query"]
        result = monitoring.query(query.replace("{{args.model-version}}", self.version))
        return phase(live_quality, result), verdict


@dataclass
class Monitoring:
    """A real Pushgateway and a real Prometheus scraping it every second."""

    gateway: str
    prometheus: str

    def query(self, expr: str) -> list[float]:
        """The vector's values, as Argo Rollouts' prometheus provider hands them on."""
        answer = httpx.get(f"{self.prometheus}/api/v1/query", params={"query": expr}, timeout=10)
        data = answer.json()["data"]
        assert data["resultType"] == "vector", data
        return [float(sample["value"][1]) for sample in data["result"]]

    def wait_scraped(self, version: str, since: float, timeout: float = 30) -> None:
        """Until Prometheus holds a push of `version` made after `since` (Unix seconds)."""
        job = m.PUSHGATEWAY_JOBS["canary"]
        expr = f'push_time_seconds{{job="{job}",model_version="{version}"}} >= {since - 1}'
        deadline = time.monotonic() + timeout
        while not self.query(expr):
            assert time.monotonic() < deadline, f"no push of version {version} was scraped"
            time.sleep(0.5)


@pytest.fixture(scope="module")
def monitoring(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Monitoring]:
    root = tmp_path_factory.mktemp("monitoring")
    gateway_port, prometheus_port = free_port(), free_port()
    started: list[subprocess.Popen[bytes]] = []
    logs = [(root / name).open("wb") for name in ("pushgateway.log", "prometheus.log")]
    config = {
        "global": {"scrape_interval": "1s"},
        "scrape_configs": [
            {  # as the chart's ServiceMonitor (honorLabels): the pushed job label is kept
                "job_name": "pushgateway",
                "honor_labels": True,
                "static_configs": [{"targets": [f"127.0.0.1:{gateway_port}"]}],
            }
        ],
    }
    (root / "prometheus.yml").write_text(yaml.safe_dump(config))
    commands = [
        [
            "prometheus-pushgateway",
            f"--web.listen-address=127.0.0.1:{gateway_port}",
            "--persistence.file=",
        ],
        [
            "prometheus",
            f"--config.file={root / 'prometheus.yml'}",
            f"--storage.tsdb.path={root / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{prometheus_port}",
        ],
    ]
    try:
        for command, log in zip(commands, logs, strict=True):
            started.append(
                subprocess.Popen(
                    command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
                )
            )
        gateway, prometheus = (f"http://127.0.0.1:{p}" for p in (gateway_port, prometheus_port))
        wait_http(f"{gateway}/-/ready", started[0], timeout=30)
        wait_http(f"{prometheus}/-/ready", started[1], timeout=60)
        yield Monitoring(gateway, prometheus)
    finally:
        for process in started:
            stop(process)
        for log in logs:
            log.close()


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


def test_a_good_canary_passes(
    registered: Registered, monitoring: Monitoring, monkeypatch: pytest.MonkeyPatch
) -> None:
    logged = log_canary(registered, registered.storage(monkeypatch), "dev", 180, good=True)
    code, verdict = registered.analyze("dev")
    assert (code, verdict["verdict"]) == (0, "pass"), verdict
    assert verdict["trust"]["trusted_rows"] == logged  # re-derived from the curated S3 bars
    assert verdict["windows"][-1]["roc_auc"] > verdict["recorded_roc_auc"] - 0.05
    outcome, pushed = registered.analysis_outcome("dev", monitoring)
    assert (outcome, pushed["verdict"]) == ("Successful", "pass"), pushed


def test_a_degraded_canary_fails(
    registered: Registered, monitoring: Monitoring, monkeypatch: pytest.MonkeyPatch
) -> None:
    log_canary(registered, registered.storage(monkeypatch), "staging", 180, good=False)
    code, verdict = registered.analyze("staging")
    assert (code, verdict["verdict"]) == (3, "degraded"), verdict
    assert verdict["windows"][-1]["roc_auc"] < verdict["recorded_roc_auc"] - 0.05
    assert "below" in verdict["reasons"][0]
    outcome, pushed = registered.analysis_outcome("staging", monitoring)
    assert (outcome, pushed["verdict"]) == ("Failed", "degraded"), pushed


def test_too_few_rows_are_inconclusive(
    registered: Registered, monitoring: Monitoring, monkeypatch: pytest.MonkeyPatch
) -> None:
    logged = log_canary(registered, registered.storage(monkeypatch), "prod", 20, good=False)
    code, verdict = registered.analyze("prod")
    assert (code, verdict["verdict"]) == (4, "inconclusive"), verdict
    assert 0 < verdict["joined_rows"] <= logged < 100
    assert "too little evidence" in verdict["reasons"][0]
    outcome, pushed = registered.analysis_outcome("prod", monitoring)
    assert (outcome, pushed["verdict"]) == ("Inconclusive", "inconclusive"), pushed


def test_a_push_to_no_pushgateway_is_an_error_not_a_verdict(registered: Registered) -> None:
    """The Job then fails, which aborts the canary: a verdict that did not arrive is no pass."""
    args = ["decisions", "analyze", "--version", registered.version, "--push"]
    gone = f"http://127.0.0.1:{free_port()}"
    for settings, message in (
        ({}, "--push needs a Pushgateway: set MLOPS_METRICS_PUSHGATEWAY"),
        ({"MLOPS_METRICS_PUSHGATEWAY": gone}, f"could not be pushed to {gone}"),
    ):
        done = run_cli(args, {**registered.env, "MLOPS_ENV": "nowhere", **settings})
        assert done.returncode == 1 and message in done.stderr, done.stderr[-2000:]
        assert "Traceback" not in done.stderr


def test_a_version_with_no_logged_prediction_is_inconclusive(registered: Registered) -> None:
    code, verdict = registered.analyze("nowhere")
    assert (code, verdict["verdict"]) == (4, "inconclusive"), verdict
    assert "no logged prediction" in verdict["reasons"][0]
