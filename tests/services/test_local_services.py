"""`mlops services up | down | status | env`: the real PostgreSQL, SeaweedFS S3 and MLflow server
on 127.0.0.1, started once for the module in a temporary MLOPS_HOME on free ports."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import httpx
import mlflow
import psycopg
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from pipelines.services.config import PORT_OFFSETS, Credentials
from pipelines.services.process import group_members
from tests.conftest import run_cli
from tests.services.cluster import free_base

pytestmark = pytest.mark.integration

INHERITED = (
    "MLFLOW_TRACKING_URI",
    "MLOPS_STORAGE_URL",
    "MLOPS_RAW_STORAGE_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
)


@dataclass
class Services:
    home: Path
    env: dict[str, str]
    up_seconds: float

    def cli(self, *args: str, extra: dict[str, str] | None = None) -> tuple[int, str, str]:
        result = run_cli(list(args), env={**self.env, **(extra or {})})
        return result.returncode, result.stdout, result.stderr

    def status(self) -> dict[str, object]:
        _, out, _ = self.cli("services", "status", "--json")
        return dict(json.loads(out))

    def pids(self) -> dict[str, int]:
        return {c["name"]: c["pid"] for c in self.status()["components"] if c["pid"]}  # type: ignore[attr-defined]

    def credentials(self) -> Credentials:
        return Credentials.model_validate_json(
            (self.home / "services" / "credentials.json").read_text()
        )

    def exports(self) -> dict[str, str]:
        code, out, err = self.cli("services", "env")
        assert code == 0, err
        pairs = {}
        for line in out.splitlines():
            name, _, value = line.removeprefix("export ").partition("=")
            pairs[name] = shlex.split(value)[0]
        return pairs


@pytest.fixture(scope="module")
def services() -> Iterator[Services]:
    """The services, up once for the module; stopped (and checked gone) at the end."""
    # Always an instance of its own, never the CI's shared one (MLOPS_TEST_SERVICES_HOME): this
    # module stops and restarts what it uses, and other modules run beside it on xdist workers.
    # Its home is under /tmp (searchable), not pytest's 0700 tmp tree: PostgreSQL runs as an
    # unprivileged account that must reach its data folder.
    home = Path(tempfile.mkdtemp(prefix="mlops-svc-", dir="/tmp"))
    home.chmod(0o711)
    env = {k: v for k, v in os.environ.items() if k not in INHERITED}
    env.update({"MLOPS_HOME": str(home), "MLOPS_SERVICES_PORT_BASE": str(free_base())})
    svc = Services(home, env, 0.0)
    began = time.monotonic()
    code, _, err = svc.cli("services", "up")
    svc.up_seconds = time.monotonic() - began
    print(f"\nservices up in {svc.up_seconds:.1f}s", file=sys.stderr)
    try:
        assert code == 0, err
        yield svc
    finally:
        pids = svc.pids()
        code, _, err = svc.cli("services", "down")
        left = {name: group_members(pid) for name, pid in pids.items() if group_members(pid)}
        shutil.rmtree(home, ignore_errors=True)
        assert code == 0 and not left, f"{err} / still running: {left}"


def _s3(endpoint: str, key: str, secret: str) -> object:
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        region_name="us-east-1",
        config=Config(retries={"max_attempts": 1}),
    )


def test_status_reports_each_component_healthy_on_loopback_and_no_secret(services: Services):
    code, out, err = services.cli("services", "status", "--json")
    document = json.loads(out)
    assert code == 0 and document["up"] is True
    assert [c["name"] for c in document["components"]] == ["postgres", "seaweedfs", "mlflow"]
    for component in document["components"]:
        assert component["healthy"] and "127.0.0.1:" in component["endpoint"]
    secrets = services.credentials().model_dump().values()
    assert not [s for s in secrets if s in out or s in err]
    assert oct((services.home / "services" / "credentials.json").stat().st_mode & 0o777) == "0o600"


def test_s3_refuses_anonymous_and_wrong_keys_and_has_the_buckets(services: Services):
    env = services.exports()
    endpoint = env["AWS_ENDPOINT_URL_S3"]
    anonymous = httpx.get(f"{endpoint}/curated?list-type=2", timeout=10)
    assert anonymous.status_code == 403
    assert httpx.put(f"{endpoint}/curated/anon.txt", content=b"x", timeout=10).status_code == 403
    wrong = _s3(endpoint, env["AWS_ACCESS_KEY_ID"], "not-the-secret")
    with pytest.raises(ClientError, match="SignatureDoesNotMatch"):
        wrong.list_buckets()  # type: ignore[attr-defined]
    unknown = _s3(endpoint, "AKIAUNKNOWN000000000", env["AWS_SECRET_ACCESS_KEY"])
    with pytest.raises(ClientError, match="InvalidAccessKeyId"):
        unknown.put_object(Bucket="raw", Key="x", Body=b"x")  # type: ignore[attr-defined]
    good = _s3(endpoint, env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"])
    names = {b["Name"] for b in good.list_buckets()["Buckets"]}  # type: ignore[attr-defined]
    assert {"raw", "curated", "artifacts"} <= names


@pytest.mark.hostile
def test_the_filer_http_port_does_not_bypass_s3_auth(services: Services):
    """weed's filer HTTP API reads and writes every object without S3 auth unless JWT-signed."""
    base = int(services.env["MLOPS_SERVICES_PORT_BASE"])
    filer = f"http://127.0.0.1:{base + PORT_OFFSETS['weed_filer']}"
    assert httpx.get(f"{filer}/buckets/", timeout=10).status_code == 401
    put = httpx.post(f"{filer}/buckets/raw/evil.txt", files={"file": b"x"}, timeout=10)
    assert put.status_code == 401


def test_env_makes_mlops_storage_and_registry_use_the_services(services: Services):
    env = services.exports()
    assert env["MLOPS_STORAGE_URL"] == "s3://curated/v1"
    assert env["MLOPS_RAW_STORAGE_URL"] == "s3://raw/v1"
    # storage: a write through open_storage in a fresh process lands in the curated bucket
    code = (
        "from pipelines.settings import Settings; from pipelines.storage import open_storage; "
        "s = Settings(); st = open_storage(s.data_url, s.raw_storage_url); "
        "st.write_bytes('probe/hello.txt', b'hi'); st.write_bytes('raw/probe.txt', b'raw'); "
        "print(st.read_bytes('probe/hello.txt').decode())"
    )
    probe = subprocess.run(
        [sys.executable, "-c", code], env={**services.env, **env}, capture_output=True, text=True
    )
    assert probe.returncode == 0 and probe.stdout.strip() == "hi", probe.stderr
    s3 = _s3(env["AWS_ENDPOINT_URL_S3"], env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"])
    assert s3.get_object(Bucket="curated", Key="v1/probe/hello.txt")["Body"].read() == b"hi"  # type: ignore[attr-defined]
    assert s3.get_object(Bucket="raw", Key="v1/raw/probe.txt")["Body"].read() == b"raw"  # type: ignore[attr-defined]
    # registry: a version registered on the server is what `mlops models list` shows
    client = mlflow.MlflowClient(
        tracking_uri=env["MLFLOW_TRACKING_URI"], registry_uri=env["MLFLOW_TRACKING_URI"]
    )  # explicit: the registry URI otherwise falls back to whatever this process set before
    experiment = client.create_experiment(f"env-probe-{time.time_ns()}")
    run = client.create_run(experiment)
    client.log_text(run.info.run_id, "probe", "model/MLmodel")
    name = f"svc-probe-{time.time_ns()}"
    client.create_registered_model(name)
    client.create_model_version(name, f"{run.info.artifact_uri}/model", run.info.run_id)
    code_, out, err = services.cli(
        "models", "list", "--json", extra={**env, "MLOPS_MODEL_NAME": name}
    )
    assert code_ == 0, err
    versions = json.loads(out)["versions"]
    assert [(v["version"], v["mlflow_run_id"]) for v in versions] == [(1, run.info.run_id)]
    # the artifact went through the server to the artifacts bucket
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="artifacts", Prefix="mlflow/")["Contents"]]  # type: ignore[attr-defined]
    assert any(k.endswith(f"{run.info.run_id}/artifacts/model/MLmodel") for k in keys), keys


def test_no_password_or_key_in_any_started_process_argv(services: Services):
    secrets = [s for s in services.credentials().model_dump().values()]
    seen = 0
    for name, pid in services.pids().items():
        for member in group_members(pid):
            argv = Path(f"/proc/{member}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            seen += 1
            leaked = [s for s in secrets if s in argv]
            assert not leaked and "password" not in argv.lower(), f"{name} {member}: {argv}"
    assert seen >= 3


def test_postgres_runs_unprivileged_without_our_groups(services: Services):
    members = group_members(services.pids()["postgres"])
    assert members
    for member in members:
        fields = dict(
            line.split(":", 1) for line in Path(f"/proc/{member}/status").read_text().splitlines()
        )
        uids, gids = fields["Uid"].split(), fields["Gid"].split()
        groups = fields["Groups"].split()
        if os.geteuid() == 0:
            assert "0" not in uids and "0" not in gids and "0" not in groups, fields["Groups"]


def test_up_again_is_a_no_op_and_data_survives_down_up(services: Services):
    before = services.pids()
    code, out, err = services.cli("services", "up")
    assert code == 0 and err.count("already running") == 3, err
    assert services.pids() == before

    env = services.exports()
    client = mlflow.MlflowClient(
        tracking_uri=env["MLFLOW_TRACKING_URI"], registry_uri=env["MLFLOW_TRACKING_URI"]
    )  # explicit: the registry URI otherwise falls back to whatever this process set before
    experiment = f"survives-{time.time_ns()}"
    experiment_id = client.create_experiment(experiment)
    # MLflow's store is PostgreSQL: the experiment is a row in its database
    port = int(services.env["MLOPS_SERVICES_PORT_BASE"]) + PORT_OFFSETS["postgres"]
    password = services.credentials().mlflow_db_password
    query = "SELECT experiment_id FROM experiments WHERE name = %s"
    with psycopg.connect(
        host="127.0.0.1", port=port, user="mlflow", password=password, dbname="mlflow"
    ) as conn:
        assert conn.execute(query, (experiment,)).fetchone() == (int(experiment_id),)

    code, out, err = services.cli("services", "down")
    assert code == 0, err
    assert not {n: group_members(p) for n, p in before.items() if group_members(p)}
    code, out, err = services.cli("services", "status", "--json")
    assert code == 1 and not any(c["running"] for c in json.loads(out)["components"])
    code, out, err = services.cli("services", "env")
    assert code == 1 and out == "" and "not running" in err

    code, out, err = services.cli("services", "up")
    assert code == 0, err
    client = mlflow.MlflowClient(tracking_uri=services.exports()["MLFLOW_TRACKING_URI"])
    found = client.get_experiment_by_name(experiment)
    assert found is not None and found.experiment_id == experiment_id
