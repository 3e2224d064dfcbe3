"""``mlflow server`` as the cluster runs it: PostgreSQL backend store, S3 artifacts.

The same requirement set as the cluster's image (the ``mlflow-server`` dependency group:
MLflow, psycopg 3, boto3). As on the cluster, the backend store URI comes from
``MLFLOW_BACKEND_STORE_URI``, never argv; it carries no password: libpq reads it from a 0600
``PGPASSFILE``. The S3 keys are in the server's environment only.
"""

from __future__ import annotations

import os
import sys
import time

import httpx

from pipelines.errors import PipelineError
from pipelines.services import postgres
from pipelines.services.config import HOST, REGION, Credentials, ServicesPaths
from pipelines.services.process import PidFile, spawn

ARTIFACTS = "s3://artifacts/mlflow"
"""Where the server puts run artifacts (it proxies them: clients need no S3 keys for them)."""


def url(ports: dict[str, int]) -> str:
    """The tracking URI."""
    return f"http://{HOST}:{ports['mlflow']}"


def start(
    paths: ServicesPaths, ports: dict[str, int], credentials: Credentials, pid_file: PidFile
) -> int:
    """Start ``mlflow server`` detached on 127.0.0.1; returns its PID."""
    folder = paths.data("mlflow")
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    passfile = folder / "pgpass"
    postgres.write_passfile(passfile, ports["postgres"], credentials)
    s3 = f"http://{HOST}:{ports['s3']}"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(folder),
        "LANG": "C.UTF-8",
        "MLFLOW_BACKEND_STORE_URI": postgres.backend_uri(ports["postgres"]),
        "PGPASSFILE": str(passfile),
        "AWS_ACCESS_KEY_ID": credentials.s3_access_key,
        "AWS_SECRET_ACCESS_KEY": credentials.s3_secret_key,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ENDPOINT_URL_S3": s3,
        "MLFLOW_S3_ENDPOINT_URL": s3,
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "true",
    }
    argv = [sys.executable, "-m", "mlflow", "server", "--host", HOST]
    argv += ["--port", str(ports["mlflow"]), "--workers", "1"]
    argv += ["--artifacts-destination", ARTIFACTS, "--allowed-hosts", "localhost:*,127.0.0.1:*"]
    return spawn(argv, env=env, log=paths.log("mlflow"), pid_file=pid_file, cwd=folder)


def healthy(ports: dict[str, int]) -> bool:
    """``GET /health`` answers 200."""
    try:
        return httpx.get(f"{url(ports)}/health", timeout=3).status_code == 200
    except httpx.HTTPError:
        return False


def wait_ready(ports: dict[str, int], pid_file: PidFile, timeout: float) -> None:
    """Wait until ``/health`` answers 200.

    Raises:
        PipelineError: if the server exits or does not answer within `timeout` seconds.
    """
    deadline = time.monotonic() + timeout
    while not healthy(ports):
        if pid_file.running() is None or time.monotonic() > deadline:
            raise PipelineError(
                f"mlflow server did not come up on {url(ports)}",
                "see services/logs/mlflow.log under MLOPS_HOME",
            )
        time.sleep(0.5)
