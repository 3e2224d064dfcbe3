"""Serving on the cluster path, against the real services (PostgreSQL, SeaweedFS S3, MLflow
server; the CI's instance when there is one): training with ``mlops run`` (S3 storage, the
server's registry), ``mlops bento build`` from the server's registry into an empty home,
``mlops serve`` (env ``dev``) logging to S3 — SIGTERMed under load without losing an
acknowledged prediction —, the monitor reading that log and the curated Parquet from S3, and
promotion and rollback pushed to a bare repository standing in for the GitOps remote. Wrong S3
credentials fail with one clear error and write nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from pipelines.decisions.inference import read_inference
from pipelines.decisions.pin import read_pin
from pipelines.services.process import group_members
from pipelines.storage import Storage
from tests.conftest import MIRROR_START, run_cli
from tests.services import bento_server
from tests.services.cluster import (
    Services,
    gitops_remote,
    mlops_run,
    pipeline_env,
    registry,
    remote_log,
    shared_services,
)

pytestmark = pytest.mark.integration

START = MIRROR_START.isoformat()
FIRST_END = (MIRROR_START + timedelta(days=4)).isoformat()
SECOND_END = (MIRROR_START + timedelta(days=5)).isoformat()


@pytest.fixture(scope="module")
def services() -> Any:
    with shared_services() as shared:
        yield shared


@dataclass
class Trained:
    root: Path
    remote: Path
    env: dict[str, str]
    summary: dict[str, Any]

    def cli(self, *args: str, **extra: str) -> Any:
        done = run_cli(list(args), {**self.env, **extra})
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads(done.stdout) if "--json" in args else done.stdout

    def storage(self, monkeypatch: pytest.MonkeyPatch) -> Storage:
        """The env's storage layout, opened in this process as the commands open it."""
        from pipelines.storage import open_storage

        for name in ("AWS_ENDPOINT_URL_S3", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            monkeypatch.setenv(name, self.env[name])
        monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        return open_storage(self.env["MLOPS_STORAGE_URL"], self.env["MLOPS_RAW_STORAGE_URL"])

    def remote_pin(self, env: str = "dev") -> Any:
        clone = self.root / f"remote-clone-{time.monotonic_ns()}"
        subprocess.run(["git", "clone", "-q", str(self.remote), str(clone)], check=True)
        return read_pin(clone / "platform" / "envs" / env / "kustomization.yaml")


@pytest.fixture(scope="module")
def trained(
    services: Services, mirror_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> Trained:
    """One training run on the services: S3 storage, the server's registry, the bare remote."""
    root = tmp_path_factory.mktemp("cluster-path")
    remote = gitops_remote(root)
    env = pipeline_env(services, root / "home", MLOPS_GITOPS_REMOTE=str(remote))
    return Trained(root, remote, env, mlops_run(env, mirror_root, START, FIRST_END))


@pytest.fixture(scope="module")
def built(trained: Trained) -> tuple[Path, dict[str, Any]]:
    """``mlops bento build`` in an empty home: the model can only come from the server."""
    home = trained.root / "serving-home"
    # BENTOML_HOME named too: run_cli passes this process's environment, where in-process tests
    # that built a Bento have set it (bentos.build.use_bentoml_home) to their own store
    store = str(home / "bentoml")
    return home, trained.cli(
        "bento", "build", "--alias", "champion", "--json", MLOPS_HOME=str(home), BENTOML_HOME=store
    )


def test_training_on_the_services_promotes_and_pushes_to_the_gitops_remote(
    trained: Trained, services: Services
) -> None:
    summary, name = trained.summary, trained.env["MLOPS_MODEL_NAME"]
    gate, package = summary["steps"]["gate"], summary["steps"]["package"]
    assert summary["status"] == "succeeded" and gate["decision"] == "promote"
    assert summary["storage"] == trained.env["MLOPS_STORAGE_URL"]
    root = trained.env["MLOPS_STORAGE_URL"].removeprefix("s3://curated/")
    steps = services.keys("curated", f"{root}/runs/{summary['run_id']}/steps/")
    whole = {k for k in steps if "/shards/" not in k}
    assert len(whole) == len(summary["steps"])  # each step's result is an S3 object …
    shards = summary["steps"]["shards"]["count"]
    assert len(steps) - len(whole) == 2 * shards  # … and each shard's of fetch and validate
    assert package["model_archive"].startswith(f"{trained.env['MLOPS_STORAGE_URL']}/bentos/")
    # the registry is the server's: the version and its champion alias are there
    client = registry(trained.env)
    assert int(client.get_registered_model(name).aliases["champion"]) == 1
    # the promotion is a commit on the remote's main, pinning that version and archive digest
    head = subprocess.run(
        ["git", "--git-dir", str(trained.remote), "rev-parse", "main"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert head == gate["gitops_commit"] and remote_log(trained.remote)[0].startswith("gate:")
    pin = trained.remote_pin()
    assert pin is not None and pin.model_version == 1
    assert pin.model_sha256 == package["model_sha256"]


def test_bento_build_pulls_the_model_from_the_server_registry(
    trained: Trained, built: tuple[Path, dict[str, Any]]
) -> None:
    home, document = built
    assert document["imported"] is True and document["built"] is True
    assert document["model"] == f"{trained.env['MLOPS_MODEL_NAME']}:v1"
    assert document["model_version"] == 1 and "champion" in document["aliases"]
    assert Path(document["path"]).is_relative_to(home)
    assert not (home / "mlflow.db").exists(), "no local registry was used"


def feature_rows(trained: Trained, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Rows of real bars (features read back from S3) as a client sends them."""
    from pipelines.ml.dataset import read_dataset

    features = trained.summary["steps"]["features"]["features"]
    frame = read_dataset(
        trained.storage(monkeypatch), trained.summary["steps"]["features"]["prefix"]
    )
    return [
        {
            **{f: float(r[f]) for f in features},
            "symbol": r["symbol"],
            "open_time": int(r["open_time"].value // 1_000_000),
        }
        for _, r in frame.tail(40).iterrows()
    ]


def test_serving_sigterm_under_load_loses_no_acknowledged_prediction(
    trained: Trained,
    built: tuple[Path, dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """``mlops serve`` (standing in for the serving container) with its inference log on S3,
    SIGTERMed — the signal a pod gets, to its main process only — while four clients post:
    every prediction answered 200 is in the S3 log afterwards."""
    home, _ = built
    rows = feature_rows(trained, monkeypatch)
    env = {**trained.env, "MLOPS_HOME": str(home), "MLOPS_INFERENCE_FLUSH_SECONDS": "0.5"}
    acknowledged: list[str] = []
    sent: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def client(n: int, url: str) -> None:
        with httpx.Client(timeout=10) as http:
            k = 0
            while not stop.is_set():
                request_id = f"load-{n}-{k}"
                k += 1
                with lock:
                    sent.append(request_id)
                try:
                    answer = http.post(
                        f"{url}/predict",
                        json={"rows": [rows[k % len(rows)]]},
                        headers={"x-request-id": request_id},
                    )
                except httpx.HTTPError:
                    continue
                if answer.status_code == 200:
                    with lock:
                        acknowledged.append(request_id)

    with bento_server(env, tmp_path / "serve.log") as (url, process):
        threads = [threading.Thread(target=client, args=(n, url)) for n in range(4)]
        for thread in threads:
            thread.start()
        time.sleep(3)
        before = len(acknowledged)
        os.kill(process.pid, signal.SIGTERM)
        code = process.wait(timeout=90)
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
        assert code == 0, (tmp_path / "serve.log").read_text()[-3000:]
        assert not group_members(process.pid), "every serving process is gone"
    assert before > 20, f"too little load to mean anything: {before}"
    table = read_inference(trained.storage(monkeypatch), "dev", "1").to_pandas()
    logged = set(table["request_id"])
    missing = sorted(set(acknowledged) - logged)
    assert not missing, f"{len(missing)} acknowledged predictions not in the S3 log: {missing[:5]}"
    assert logged <= set(sent) and len(table) == len(logged)  # one row each, nothing invented
    assert set(table["model_version"]) == {"1"}


def log_live_predictions(trained: Trained, storage: Storage, version: int, hours: int) -> int:
    """Predictions for every bar of the last `hours` of the first run's dataset, answered live
    (30 s after each bar closed), written by the serving runtime's writer to S3."""
    from bentos.inference_log import Chunk, InferenceLog
    from pipelines.ml.dataset import read_dataset
    from pipelines.ml.features import FeatureConfig
    from pipelines.settings import Settings
    from tests.support.client_features import client_features

    features = trained.summary["steps"]["features"]["features"]
    frame = read_dataset(storage, trained.summary["steps"]["features"]["prefix"])
    part = frame[frame["open_time"] >= frame["open_time"].max() - timedelta(hours=hours)]
    interval = trained.summary["params"]["interval"]
    config = FeatureConfig(interval=interval, horizon=Settings().horizon)
    matrix = client_features(storage, part, features, interval, config)  # float64, as sent
    part = part.assign(**{f: matrix[:, i] for i, f in enumerate(features)})
    writer = InferenceLog(storage, "dev", str(version), features)
    for bar, rows in part.groupby("open_time"):
        open_ms = int(bar.value // 1_000_000)
        writer.append(
            Chunk(
                f"live-{open_ms}",
                "predict",
                open_ms + 90_000,
                rows[features].to_numpy(),
                np.clip(rows["label"].to_numpy(dtype=float) * 0.4 + 0.3, 0, 1),
                rows["symbol"].tolist(),
                [open_ms] * len(rows),
            )
        )
    writer.close()
    return len(part)


def test_the_monitor_reads_the_log_and_curated_bars_from_s3(
    trained: Trained, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = trained.storage(monkeypatch)
    logged = log_live_predictions(trained, storage, 1, hours=3)
    result = trained.cli("decisions", "monitor", "--json", MLOPS_MONITOR_MIN_ROWS="100")
    trust = result["trust"]
    assert trust["trusted_rows"] == logged, trust  # features re-derived from curated S3 bars
    record = json.loads(storage.read_bytes(result["record"]))
    assert result["record"].startswith("decisions/dev/") and record["kind"] == "monitor"
    joined = record["metrics"]["joined_rows"]
    assert 0 < joined <= logged  # outcomes joined (the last `horizon` bars are not known yet)
    assert result["decision"] == "hold"


def test_promotion_and_rollback_push_to_the_gitops_remote(
    trained: Trained, mirror_root: Path
) -> None:
    """The first run's gate pushed its promotion (see above); a second version, packaged,
    then a rollback to it by hand: one more commit on the remote, pinning it."""
    second = mlops_run(trained.env, mirror_root, START, SECOND_END, until="package")
    assert second["steps"]["package"]["model_version"] == 2
    client = registry(trained.env)
    name = trained.env["MLOPS_MODEL_NAME"]
    assert int(client.get_registered_model(name).aliases["champion"]) == 1
    target = 2
    pushed_before = len(remote_log(trained.remote))
    result = trained.cli("decisions", "rollback", "--to", str(target), "--json")
    subjects = remote_log(trained.remote)
    assert len(subjects) == pushed_before + 1 and "rollback" in subjects[0], subjects[:3]
    assert (
        result["gitops_commit"]
        == subprocess.run(
            ["git", "--git-dir", str(trained.remote), "rev-parse", "main"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    pin = trained.remote_pin()
    assert pin is not None and pin.model_version == target
    assert int(client.get_registered_model(name).aliases["champion"]) == target


@pytest.mark.parametrize("wrong", ["secret", "key id"])
def test_wrong_s3_credentials_fail_once_clearly_and_write_nothing(
    services: Services, mirror_root: Path, tmp_path: Path, wrong: str
) -> None:
    env = pipeline_env(services, tmp_path / "home")
    real_secret = env["AWS_SECRET_ACCESS_KEY"]
    if wrong == "secret":
        env["AWS_SECRET_ACCESS_KEY"] = "not-the-secret-" + real_secret[:4][::-1]
    else:
        env["AWS_ACCESS_KEY_ID"] = "AKIAWRONGKEY0000"
    root = env["MLOPS_STORAGE_URL"].removeprefix("s3://curated/")
    args = ["run", "--source", mirror_root.as_uri(), "--start", START, "--end", FIRST_END]
    done = run_cli(args, env)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
    message = lines[-1]
    assert env["AWS_ENDPOINT_URL_S3"] in message and env["AWS_ACCESS_KEY_ID"] in message, message
    assert real_secret not in done.stderr + done.stdout
    assert env["AWS_SECRET_ACCESS_KEY"] not in done.stderr + done.stdout
    assert not services.keys("curated", root + "/") and not services.keys(
        "raw", env["MLOPS_RAW_STORAGE_URL"].removeprefix("s3://raw/") + "/"
    )
    assert registry(env).get_experiment_by_name(env["MLOPS_MODEL_NAME"]) is None
