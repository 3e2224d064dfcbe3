"""The cluster path on one machine: the dev stack's rendered training and monitor CronWorkflows
run by `mlops workflows run-local` — every pod a process of its own — against the real local
services (PostgreSQL-backed MLflow server, SeaweedFS S3) and a bare git stand-in for the GitOps
remote; the run summary is read back from S3."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from pipelines.orchestration.argo import render
from pipelines.orchestration.dag import get_pipeline
from stacks.config import load_stack_config
from tests.conftest import SYMBOLS, run_cli
from tests.services.cluster import (
    FAST_TRAINING,
    Services,
    gitops_remote,
    pipeline_env,
    remote_log,
    shared_services,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def services() -> Iterator[Services]:
    with shared_services() as running:
        yield running


def manifest(tmp_path: Path, pipeline: str) -> Path:
    """The dev stack's CronWorkflow, rendered by the same code, with small-model settings and a
    1 s retry backoff (what a stack's ``workflows.settings`` / ``retryBackoff`` can say)."""
    config = load_stack_config("dev").workflows
    config = config.model_copy(
        update={
            "settings": {**config.settings, **FAST_TRAINING},
            "retry_backoff": "1s",
            "symbols": ",".join(SYMBOLS),  # the test mirror's two (the default is six)
        }
    )
    path = tmp_path / f"{pipeline}.yaml"
    path.write_text(yaml.safe_dump(render(get_pipeline(pipeline), config)))
    return path


def run_local(path: Path, env: dict[str, str], *params: str) -> dict:  # type: ignore[type-arg]
    args = ["workflows", "run-local", "--file", str(path), "--json"]
    for param in params:
        args += ["-p", param]
    done = run_cli(args, env)
    assert done.stdout, done.stderr
    document: dict = json.loads(done.stdout)  # type: ignore[type-arg]
    assert done.returncode == (0 if document["status"] == "Succeeded" else 1)
    return document


def test_training_then_monitor_run_pod_by_pod_against_the_services(
    services: Services, mirror_root: Path, tmp_path: Path
) -> None:
    remote = gitops_remote(tmp_path)  # what ArgoCD would read
    # this shell: the services' exports (a layout root of this test's own) and the remote
    env = pipeline_env(services, tmp_path / "home", MLOPS_GITOPS_REMOTE=remote.as_uri())
    source = f"source={mirror_root.as_uri()}"
    dates = ("start=2024-03-01", "end=2024-03-06")
    training = run_local(manifest(tmp_path, "training"), env, source, *dates)
    assert training["status"] == "Succeeded", [
        (n["name"], n["message"]) for n in training["nodes"] if n["phase"] != "Succeeded"
    ]
    names = [n["name"] for n in training["nodes"]]
    assert "fetch(0:BTCUSDT:2024-03-01:2024-03-06)" in names
    assert "validate(1:ETHUSDT:2024-03-01:2024-03-06)" in names
    assert training["exit_handler"]["phase"] == "Succeeded"
    summary = training["summary"]
    # read back from S3, as the pods left it (nothing local was shared between them)
    assert summary["storage"] == env["MLOPS_STORAGE_URL"] and summary["status"] == "succeeded"
    assert list(summary["steps"]) == [s.name for s in get_pipeline("training").steps]
    fetched = summary["steps"]["fetch"]
    assert fetched["shards"] == 2 and fetched["files_downloaded"] + fetched["files_skipped"] == 12
    assert summary["steps"]["register"]["version"] >= 1
    assert summary["steps"]["package"]["model_sha256"]
    assert summary["steps"]["gate"]["decision"] in ("promote", "reject")
    bucket, _, prefix = env["MLOPS_STORAGE_URL"].removeprefix("s3://").partition("/")
    key = f"{prefix}/runs/{training['workflow']}/exit.json"
    record = json.loads(services.s3().get_object(Bucket=bucket, Key=key)["Body"].read())
    assert record["status"] == "Succeeded", "the exit handler recorded the run in S3"
    if summary["steps"]["gate"]["decision"] == "promote":
        assert len(remote_log(remote)) == 2, "the promotion was pushed to the remote"

    monitor = run_local(manifest(tmp_path, "monitor"), env, source, "start=2024-03-05", dates[1])
    assert monitor["status"] == "Succeeded", monitor["nodes"]
    assert monitor["summary"]["steps"]["monitor"]["decision"] in ("hold", "rollback")
    assert monitor["summary"]["steps"]["monitor"]["record"].startswith("decisions/dev/")
