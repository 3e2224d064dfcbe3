"""The cluster path on one machine: the dev stack's rendered training and monitor CronWorkflows
run by `mlops workflows run-local` — every pod a process of its own — against the real local
services (PostgreSQL-backed MLflow server, SeaweedFS S3) and a bare git stand-in for the GitOps
remote; the run summary is read back from S3."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
import yaml

from pipelines.orchestration.argo import render
from pipelines.orchestration.dag import get_pipeline
from stacks.config import load_stack_config
from tests.conftest import REPO, run_cli
from tests.support.local_services import Services, running_services

pytestmark = pytest.mark.integration

FAST = {  # a small model in seconds: the same knobs as tests/ml fast_training_settings
    "MLOPS_EVAL_DAYS": "1",
    "MLOPS_CV_FOLDS": "2",
    "MLOPS_MIN_TRAIN_ROWS": "1000",
    "MLOPS_CHAMPION_MIN_ROC_AUC": "0",
    "MLOPS_MODEL_PARAMS": '{"max_iter": 40}',
}


@pytest.fixture(scope="module")
def services() -> Iterator[Services]:
    yield from running_services()


def manifest(tmp_path: Path, pipeline: str) -> Path:
    """The dev stack's CronWorkflow, rendered by the same code, with small-model settings and a
    1 s retry backoff (what a stack's ``workflows.settings`` / ``retryBackoff`` can say)."""
    config = load_stack_config("dev").workflows
    config = config.model_copy(
        update={"settings": {**config.settings, **FAST}, "retry_backoff": "1s"}
    )
    path = tmp_path / f"{pipeline}.yaml"
    path.write_text(yaml.safe_dump(render(get_pipeline(pipeline), config)))
    return path


def run_local(services: Services, path: Path, env: dict[str, str], *params: str) -> dict:  # type: ignore[type-arg]
    args = ["workflows", "run-local", "--file", str(path), "--json"]
    for param in params:
        args += ["-p", param]
    done = run_cli(args, {**services.env, **services.exports(), **env})
    assert done.stdout, done.stderr
    document: dict = json.loads(done.stdout)  # type: ignore[type-arg]
    assert done.returncode == (0 if document["status"] == "Succeeded" else 1)
    return document


def test_training_then_monitor_run_pod_by_pod_against_the_services(
    services: Services, mirror_root: Path, tmp_path: Path
) -> None:
    remote = tmp_path / "gitops.git"  # the GitOps remote: this repository, as ArgoCD reads it
    subprocess.run(["git", "clone", "-q", "--bare", str(REPO), str(remote)], check=True)
    env = {"MLOPS_HOME": str(tmp_path / "home"), "MLOPS_GITOPS_REMOTE": remote.as_uri()}
    source = f"source={mirror_root.as_uri()}"
    training = run_local(
        services,
        manifest(tmp_path, "training"),
        env,
        source,
        "start=2024-03-01",
        "end=2024-03-06",
    )
    assert training["status"] == "Succeeded", [
        (n["name"], n["message"]) for n in training["nodes"] if n["phase"] != "Succeeded"
    ]
    names = [n["name"] for n in training["nodes"]]
    assert "fetch(0:BTCUSDT:2024-03-01:2024-03-06)" in names
    assert "validate(1:ETHUSDT:2024-03-01:2024-03-06)" in names
    assert training["exit_handler"]["phase"] == "Succeeded"
    summary = training["summary"]
    # read back from S3, as the pods left it (nothing local was shared between them)
    assert summary["storage"].startswith("s3://") and summary["status"] == "succeeded"
    assert list(summary["steps"]) == [s.name for s in get_pipeline("training").steps]
    assert (
        summary["steps"]["fetch"]["shards"] == 2
        and summary["steps"]["fetch"]["files_downloaded"]
        + summary["steps"]["fetch"]["files_skipped"]
        == 12
    )
    assert summary["steps"]["register"]["version"] >= 1
    assert summary["steps"]["package"]["model_sha256"]
    assert summary["steps"]["gate"]["decision"] in ("promote", "reject")
    exports = services.exports()
    s3 = boto3.client(
        "s3",
        endpoint_url=exports["AWS_ENDPOINT_URL_S3"],
        aws_access_key_id=exports["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=exports["AWS_SECRET_ACCESS_KEY"],
        region_name=exports["AWS_DEFAULT_REGION"],
    )
    bucket, _, prefix = exports["MLOPS_STORAGE_URL"].removeprefix("s3://").partition("/")
    key = f"{prefix}/runs/{training['workflow']}/exit.json"
    record = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    assert record["status"] == "Succeeded", "the exit handler recorded the run in S3"
    if summary["steps"]["gate"]["decision"] == "promote":
        log = subprocess.run(
            ["git", "--git-dir", str(remote), "log", "-1", "--format=%s"],
            capture_output=True,
            text=True,
            check=True,
        )
        assert "promote" in log.stdout.lower(), "the promotion was pushed to the remote"

    monitor = run_local(
        services, manifest(tmp_path, "monitor"), env, source, "start=2024-03-05", "end=2024-03-06"
    )
    assert monitor["status"] == "Succeeded", monitor["nodes"]
    assert monitor["summary"]["steps"]["monitor"]["decision"] in ("hold", "rollback")
    assert monitor["summary"]["steps"]["monitor"]["record"].startswith("decisions/dev/")
