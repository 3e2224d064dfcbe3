"""The cluster path on one machine for tests: the local services (the CI instance when there is
one, else started here), a bare git repository standing in for the GitOps remote, and the
environment that points every ``mlops`` command at them.

Tests that stop a service (faults) start their own instance (`own_services`): other tests
running after them keep the shared one (`shared_services`) intact. Each user of a shared
instance keeps its data apart: its own layout root in the buckets and its own model name.
"""

from __future__ import annotations

import json
import os
import random
import shlex
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines.services.config import PORT_OFFSETS
from pipelines.services.process import group_members
from tests.conftest import REPO, run_cli

INHERITED = (
    "BENTOML_HOME",  # set in-process by tests that build a Bento (bentos.build.use_bentoml_home)
    "MLFLOW_TRACKING_URI",
    "MLFLOW_REGISTRY_URI",
    "MLFLOW_EXPERIMENT_ID",
    "MLOPS_STORAGE_URL",
    "MLOPS_RAW_STORAGE_URL",
    "MLOPS_HOME",
    "MLOPS_ENV",
    "MLOPS_GITOPS_REMOTE",
    "MLOPS_GITOPS_REPO",
    "MLOPS_MODEL_NAME",
    "AWS_ENDPOINT_URL_S3",
    "MLFLOW_S3_ENDPOINT_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_DEFAULT_REGION",
)
"""Variables a test never inherits from the process that runs pytest."""
FAST_TRAINING = {
    "MLOPS_EVAL_DAYS": "1",
    "MLOPS_CV_FOLDS": "2",
    "MLOPS_CHAMPION_MIN_ROC_AUC": "0",
    "MLOPS_MODEL_PARAMS": '{"max_iter": 15}',
    "MLOPS_GATE_BOOTSTRAP_SAMPLES": "100",
    "MLOPS_INFERENCE_FLUSH_SECONDS": "0.5",
}


def free_base() -> int:
    """A port base with every service port free on 127.0.0.1."""
    for _ in range(200):
        base = random.randrange(20000, 60000)
        try:
            for offset in PORT_OFFSETS.values():
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", base + offset))
        except OSError:
            continue
        return base
    raise RuntimeError("no free port range")


def clean_env() -> dict[str, str]:
    """This process's environment without anything that would point a command elsewhere."""
    return {k: v for k, v in os.environ.items() if k not in INHERITED}


@dataclass
class Services:
    """One running services instance: its ``$MLOPS_HOME`` and the environment naming it."""

    home: Path
    env: dict[str, str]
    exports: dict[str, str] = field(default_factory=dict)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``mlops ARGS`` against this instance (the ``services`` group)."""
        return run_cli(list(args), env=self.env)

    def status(self) -> dict[str, Any]:
        """``mlops services status --json``."""
        return dict(json.loads(self.cli("services", "status", "--json").stdout))

    def pid(self, component: str) -> int:
        """The PID of a running component."""
        found = {c["name"]: c["pid"] for c in self.status()["components"]}
        assert found.get(component), f"{component} is not running: {found}"
        return int(found[component])

    def load_exports(self) -> dict[str, str]:
        """``eval "$(mlops services env)"``, as a dict."""
        done = self.cli("services", "env")
        assert done.returncode == 0, done.stderr
        pairs = {}
        for line in done.stdout.splitlines():
            name, _, value = line.removeprefix("export ").partition("=")
            pairs[name] = shlex.split(value)[0]
        self.exports = pairs
        return pairs

    def s3(self, key_id: str | None = None, secret: str | None = None) -> Any:
        """A boto3 client on this instance's S3 (its own keys unless told)."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.exports["AWS_ENDPOINT_URL_S3"],
            aws_access_key_id=key_id or self.exports["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=secret or self.exports["AWS_SECRET_ACCESS_KEY"],
            region_name="us-east-1",
            config=Config(retries={"max_attempts": 1}),
        )

    def keys(self, bucket: str, prefix: str) -> dict[str, str]:
        """Every object key under `prefix` of `bucket`, with its ETag."""
        paginator = self.s3().get_paginator("list_objects_v2")
        return {
            item["Key"]: item["ETag"]
            for page in paginator.paginate(Bucket=bucket, Prefix=prefix)
            for item in page.get("Contents", [])
        }


def _up(home: Path, base: str) -> Services:
    env = {**clean_env(), "MLOPS_HOME": str(home), "MLOPS_SERVICES_PORT_BASE": base}
    services = Services(home, env)
    done = services.cli("services", "up")
    assert done.returncode == 0, done.stderr[-3000:]
    services.load_exports()
    return services


def _down(services: Services, remove: bool) -> None:
    pids = [c["pid"] for c in services.status()["components"] if c["pid"]]
    done = services.cli("services", "down")
    left = {pid: group_members(pid) for pid in pids if group_members(pid)}
    if remove:
        shutil.rmtree(services.home, ignore_errors=True)
    assert done.returncode == 0 and not left, f"{done.stderr} / still running: {left}"


@contextmanager
def own_services() -> Iterator[Services]:
    """A services instance of its own (free ports, a home under /tmp that PostgreSQL's
    unprivileged account can reach), stopped by PID and removed at the end."""
    home = Path(tempfile.mkdtemp(prefix="mlops-own-svc-", dir="/tmp"))
    home.chmod(0o711)
    began = time.monotonic()
    services = _up(home, str(free_base()))
    print(f"\nown services up in {time.monotonic() - began:.1f}s")
    try:
        yield services
    finally:
        _down(services, remove=True)


@contextmanager
def shared_services() -> Iterator[Services]:
    """The CI's instance (``MLOPS_TEST_SERVICES_HOME``, left running), else one of its own."""
    given = os.environ.get("MLOPS_TEST_SERVICES_HOME")
    if not given:
        with own_services() as services:
            yield services
        return
    yield _up(Path(given), os.environ.get("MLOPS_SERVICES_PORT_BASE", "15400"))


def gitops_remote(root: Path) -> Path:
    """A bare repository standing in for the GitOps remote ArgoCD watches: branch ``main``
    holding this checkout's ``platform/``."""
    remote, seed = root / "gitops-remote.git", root / "gitops-seed"
    git = ["git", "-c", "user.name=seed", "-c", "user.email=seed@localhost"]
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(remote)], check=True)
    subprocess.run(["git", "init", "-q", "-b", "main", str(seed)], check=True)
    shutil.copytree(REPO / "platform", seed / "platform")
    subprocess.run([*git, "-C", str(seed), "add", "-A"], check=True)
    subprocess.run([*git, "-C", str(seed), "commit", "-qm", "platform"], check=True)
    subprocess.run([*git, "-C", str(seed), "push", "-q", str(remote), "main"], check=True)
    return remote


def remote_log(remote: Path) -> list[str]:
    """Subjects of the remote's ``main``, newest first."""
    done = subprocess.run(
        ["git", "--git-dir", str(remote), "log", "--format=%s", "main"],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.splitlines()


def pipeline_env(services: Services, home: Path, **extra: str) -> dict[str, str]:
    """The services' exports, a layout root and model name of this test's own, env ``dev``,
    fast training settings."""
    tag = uuid.uuid4().hex[:8]
    return {
        **clean_env(),
        **services.exports,
        "MLOPS_STORAGE_URL": f"s3://curated/t-{tag}",
        "MLOPS_RAW_STORAGE_URL": f"s3://raw/t-{tag}",
        "MLOPS_MODEL_NAME": f"path-{tag}",
        "MLOPS_HOME": str(home),
        "MLOPS_ENV": "dev",
        **FAST_TRAINING,
        **extra,
    }


def mlops_run(
    env: dict[str, str], mirror: Path, start: str, end: str, until: str | None = None
) -> dict[str, Any]:
    """``mlops run --json`` over the mirror (up to step `until`); its summary (it must
    succeed)."""
    args = ["run", "--source", mirror.as_uri(), "--start", start, "--end", end, "--json"]
    args += ["--until", until] if until else []
    done = run_cli(args, env)
    assert done.returncode == 0, done.stderr[-3000:]
    return dict(json.loads(done.stdout))


def registry(env: dict[str, str]) -> Any:
    """An MlflowClient on the env's tracking server (named explicitly: never this process's)."""
    import mlflow

    uri = env["MLFLOW_TRACKING_URI"]
    return mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
