"""The three images built with podman (no daemon) and run on the host network against the local
services, each container as its manifest runs the pod: a pipeline step from the pipeline image,
the MLflow server image on PostgreSQL + S3, and the serving image started by
``mlops serve --container`` answering ``/readyz`` and ``/predict``.

The `images` group (``pytest -m images``); builds are cached under ``$MLOPS_IMAGES_CACHE``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
import yaml

from pipelines.images.build import engine
from pipelines.images.containers import container_argv, manifest_env
from pipelines.ml.packaging import serving_digest
from pipelines.services import postgres
from tests.bentos.conftest import training_env
from tests.conftest import MIRROR_DAYS, MIRROR_START, REPO, SYMBOLS, run_cli
from tests.services import free_port, stop, wait_http
from tests.services.test_local_services import Services, services  # noqa: F401 (fixture)

pytestmark = [pytest.mark.integration, pytest.mark.images, pytest.mark.timeout(1800)]

END = MIRROR_START.toordinal() + MIRROR_DAYS - 1
SERVICE_ENV = (
    "MLFLOW_TRACKING_URI",
    "AWS_ENDPOINT_URL_S3",
    "MLFLOW_S3_ENDPOINT_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_DEFAULT_REGION",
)
"""What replaces the cluster's endpoints and IRSA in a container's env: the services'."""


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    log = tmp_path_factory.mktemp("images") / "build.log"
    began = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "pipelines", "images", "build", "--json", "--log", str(log)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert done.returncode == 0, done.stderr[-2000:] + log.read_text()[-3000:]
    print(f"\nimages built in {time.monotonic() - began:.1f}s: {done.stdout}", file=sys.stderr)
    return {b["name"]: b for b in json.loads(done.stdout)["images"]}


def s3(exports: dict[str, str]) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=exports["AWS_ENDPOINT_URL_S3"],
        aws_access_key_id=exports["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=exports["AWS_SECRET_ACCESS_KEY"],
        region_name=exports["AWS_DEFAULT_REGION"],
    )


def keys(client: Any, bucket: str, prefix: str) -> list[str]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


def test_the_images_are_their_dockerfiles_users_and_entry_points(
    built: dict[str, dict[str, Any]],
) -> None:
    podman = engine()
    expected = {
        "pipeline": ("10001:10001", ["mlops"]),
        "mlflow": ("10001:10001", ["mlflow"]),
        "serving": ("1034:1034", ["python", "-m", "bentos.start"]),
    }
    for name, (user, entrypoint) in expected.items():
        config: Any = podman.inspect_image(built[name]["tag"])["Config"]
        assert (config["User"], config["Entrypoint"]) == (user, entrypoint), name
        assert built[name]["size_bytes"] > 50_000_000
    # the serving image is tagged with its code digest, as the GitOps pin names it
    assert built["serving"]["tag"] == f"localhost/mlops-serving:{serving_digest()[0]}"


def fetch_template() -> tuple[dict[str, Any], dict[str, Any], dict[str, str]]:
    """The fetch step of the dev training CronWorkflow (as rendered): pod, container, defaults."""
    workflow = yaml.safe_load((REPO / "tests/golden/workflows/dev/training.yaml").read_text())
    spec = workflow["spec"]["workflowSpec"]
    (template,) = [t for t in spec["templates"] if t["name"] == "fetch"]
    pod = {"securityContext": spec["securityContext"], "volumes": template["volumes"]}
    defaults = {p["name"]: str(p.get("value", "")) for p in spec["arguments"]["parameters"]}
    return pod, template["container"], defaults


@pytest.fixture(scope="module")
def mirror_url(mirror_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    work = tmp_path_factory.mktemp("archive")
    (work / "faults.json").write_text("{}")
    server = [sys.executable, "-m", "tests.support.archive_server", str(mirror_root)]
    process = subprocess.Popen(
        [*server, str(work / "faults.json"), str(work / "log.jsonl")],
        cwd=REPO,
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        assert process.stdout is not None
        port = process.stdout.readline().decode().split()[1]
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(process)  # type: ignore[arg-type]


def test_a_pipeline_step_runs_in_the_pipeline_image_as_its_pod_runs(
    built: dict[str, dict[str, Any]],
    services: Services,  # noqa: F811
    mirror_url: str,
    tmp_path: Path,
) -> None:
    exports = services.exports()
    prefix = f"images-{uuid.uuid4().hex[:8]}"
    pod, container, parameters = fetch_template()
    parameters.update(
        source=mirror_url,
        symbols=",".join(SYMBOLS),
        start=MIRROR_START.isoformat(),
        end=MIRROR_START.fromordinal(END).isoformat(),
    )
    args = [a.replace("{{workflow.name}}", prefix) for a in container["args"]]
    for name, value in parameters.items():
        args = [a.replace(f"{{{{workflow.parameters.{name}}}}}", value) for a in args]
    env = {**manifest_env(container), **{k: exports[k] for k in SERVICE_ENV}}
    env["MLOPS_STORAGE_URL"] = f"s3://curated/{prefix}"
    env["MLOPS_RAW_STORAGE_URL"] = f"s3://raw/{prefix}"
    image = built["pipeline"]["tag"]
    # two pods, as Argo runs them: the run's shards step, then fetch (every shard in one pod
    # here: the template's --shard {{inputs.parameters.shard}} is what withParam fills)
    at = args.index("--shard")
    fetch = args[:at] + args[at + 2 :]
    assert fetch[:2] == ["step", "fetch"]
    for step_args in (["step", "shards", *fetch[2:]], fetch):
        name = f"{step_args[1]}-{prefix}"
        with container_argv(
            engine(), image, pod, container, env, tmp_path, name, step_args
        ) as argv:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    raw = keys(s3(exports), "raw", prefix)
    assert len([k for k in raw if k.endswith(".zip")]) == len(SYMBOLS) * MIRROR_DAYS, raw[:5]
    assert keys(s3(exports), "curated", prefix), "the step's result reached S3"
    # the same container can write only to its emptyDir: the root filesystem is read-only
    probe = "open('/tmp/ok', 'w').write('x'); open('/app/x', 'w')"
    probing = {**container, "command": ["python", "-c", probe]}
    with container_argv(engine(), image, pod, probing, env, tmp_path, f"probe-{prefix}") as argv:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "Read-only file system: '/app/x'" in done.stderr


def mlflow_pod() -> tuple[dict[str, Any], dict[str, Any]]:
    """The MLflow server Deployment's pod, as the dev stack creates it (Pulumi under mocks)."""
    from tests.stacks.test_mlflow_credentials import mocked_run

    (deployment,) = [
        r
        for r in mocked_run("dev").resources
        if r.type == "kubernetes:apps/v1:Deployment" and r.inputs["metadata"]["name"] == "mlflow"
    ]
    pod = deployment.inputs["spec"]["template"]["spec"]
    return pod, pod["containers"][0]


def test_the_mlflow_image_serves_the_registry_on_postgresql_and_s3_artifacts(
    built: dict[str, dict[str, Any]],
    services: Services,  # noqa: F811
    tmp_path: Path,
) -> None:
    exports = services.exports()
    pod, container = mlflow_pod()
    port, prefix = free_port(), f"images-{uuid.uuid4().hex[:8]}"
    command = list(container["command"])
    for flag, value in (
        ("--host", "127.0.0.1"),
        ("--port", str(port)),
        ("--artifacts-destination", f"s3://artifacts/{prefix}"),
    ):
        command[command.index(flag) + 1] = value
    local = {**container, "command": command}
    credentials = services.credentials()
    pg_port = int(services.status()["components"][0]["endpoint"].split(":")[2].split("/")[0])  # type: ignore[index]
    uri = postgres.backend_uri(pg_port).replace("@", f":{credentials.mlflow_db_password}@", 1)
    # the backend Secret's variable (the password in it, never on argv) and IRSA's stand-in
    env = {**manifest_env(container), "MLFLOW_BACKEND_STORE_URI": uri}
    env.update({k: exports[k] for k in SERVICE_ENV if k != "MLFLOW_TRACKING_URI"})
    name = f"mlflow-{prefix}"
    with container_argv(engine(), built["mlflow"]["tag"], pod, local, env, tmp_path, name) as argv:
        assert credentials.mlflow_db_password not in " ".join(argv)
        process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            url = f"http://127.0.0.1:{port}"
            wait_http(f"{url}/health", process, timeout=240)  # type: ignore[arg-type]
            from mlflow import MlflowClient

            client = MlflowClient(url)
            experiment = client.create_experiment(prefix)
            run = client.create_run(experiment)
            client.log_text(run.info.run_id, "hello", "note.txt")
            assert client.get_experiment(experiment).name == prefix
        finally:
            subprocess.run(engine().argv("stop", "-t", "10", name), capture_output=True, timeout=60)
            process.wait(timeout=60)
    stored = keys(s3(exports), "artifacts", prefix)
    assert any(k.endswith(f"{run.info.run_id}/artifacts/note.txt") for k in stored), stored


def test_mlops_serve_container_serves_the_pinned_model_from_s3(
    built: dict[str, dict[str, Any]],
    services: Services,  # noqa: F811
    mirror_root: Path,
) -> None:
    exports = services.exports()
    prefix = f"images-{uuid.uuid4().hex[:8]}"
    env = {
        **services.env,
        **exports,
        **training_env(services.home / prefix),
        "MLOPS_STORAGE_URL": f"s3://curated/{prefix}",
        "MLOPS_RAW_STORAGE_URL": f"s3://raw/{prefix}",
        "MLOPS_MODEL_NAME": prefix,
        "MLOPS_ENV": "dev",
    }
    end = MIRROR_START.fromordinal(END).isoformat()
    run = ["run", "--source", mirror_root.as_uri(), "--start", MIRROR_START.isoformat()]
    done = run_cli([*run, "--end", end, "--json"], env)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)
    version = summary["steps"]["register"]["version"]
    port = free_port()
    serve = [sys.executable, "-m", "pipelines", "serve", "--container", "--version", str(version)]
    process = subprocess.Popen(
        [*serve, "--port", str(port)],
        cwd=REPO,
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_http(f"{url}/readyz", process, timeout=300)  # type: ignore[arg-type]
        except RuntimeError:
            raise AssertionError(process.communicate(timeout=30)[1].decode()[-3000:]) from None
        features = summary["steps"]["features"]["features"]
        answer = httpx.post(f"{url}/predict", json={"rows": [dict.fromkeys(features, 0.0)]})
        assert answer.status_code == 200, answer.text
        assert answer.json()[0]["model_version"] == str(version)
        inspected = json.loads(
            subprocess.run(
                engine().argv("inspect", f"mlops-serving-{port}"),
                capture_output=True,
                text=True,
                timeout=60,
                check=True,
            ).stdout
        )[0]
        host = inspected["HostConfig"]
        assert inspected["Config"]["User"] == "1034:1034"
        assert host["ReadonlyRootfs"] is True and "no-new-privileges" in host["SecurityOpt"]
        assert inspected["EffectiveCaps"] in (None, [])
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=90)
    assert process.returncode in (0, 143, -15), process.stderr.read()[-2000:]  # type: ignore[union-attr]
