"""Faults on the cluster path, bounded and on loopback only: each stops a service, so the module
runs its OWN services instance (other tests keep the shared one), started once and stopped by
PID at the end. Every fault ends with the service back and the data whole."""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from pipelines.archive import parse_checksum, zip_path
from pipelines.ml.registry import REGISTER_KEY_TAG
from pipelines.services.process import group_members
from pipelines.services.stack import stop_one, up
from tests.conftest import MIRROR_DAYS, MIRROR_START, REPO, SYMBOLS, ArchiveServer
from tests.services.cluster import (
    Services,
    mlops_run,
    own_services,
    pipeline_env,
    registry,
)
from tests.support.kill_proxy import kill_proxy

pytestmark = pytest.mark.integration

START = MIRROR_START.isoformat()
END = (MIRROR_START + timedelta(days=MIRROR_DAYS - 1)).isoformat()
CREATE_VERSION = "/api/2.0/mlflow/model-versions/create"


@pytest.fixture(scope="module")
def services() -> Iterator[Services]:
    with own_services() as own:
        yield own


def run_process(env: dict[str, str], source: str, log: Path, until: str) -> subprocess.Popen[str]:
    """``mlops run --until UNTIL --json`` started in the background (stdout: the summary)."""
    args = ["run", "--source", source, "--start", START, "--end", END, "--until", until, "--json"]
    return subprocess.Popen(
        [sys.executable, "-m", "pipelines", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=log.open("w"),
        text=True,
    )


def finish(process: subprocess.Popen[str], log: Path, timeout: float) -> dict[str, Any]:
    """The run's summary once it exits (killed if it outlives `timeout`)."""
    try:
        out, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate(timeout=10)
        raise AssertionError(
            f"the run did not finish in {timeout}s: {log.read_text()[-2000:]}"
        ) from None
    assert process.returncode == 0, log.read_text()[-3000:]
    return dict(json.loads(out))


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout}s"
        time.sleep(0.05)


def test_kill_9_of_mlflow_during_register_leaves_exactly_one_new_version(
    services: Services, mirror_root: Path, tmp_path: Path
) -> None:
    """The server is SIGKILLed after it committed the new version and before the client had
    its answer (the proxy holds it back); restarted, the client's retry and the register step
    end with that one version — no duplicate from the retried create, no orphan."""
    env = pipeline_env(services, tmp_path / "home")
    client = registry(env)
    name = env["MLOPS_MODEL_NAME"]

    pid, killed = services.pid("mlflow"), threading.Event()

    def kill_mlflow() -> None:  # in the proxy, holding the client's answer
        os.killpg(pid, signal.SIGKILL)
        wait_for(lambda: not group_members(pid), 30, "the kill")
        killed.set()

    with kill_proxy(env["MLFLOW_TRACKING_URI"], "POST", CREATE_VERSION, kill_mlflow) as (
        url,
        proxy,
    ):
        log = tmp_path / "run.log"
        # MLflow's client retries a failed request 7 times (backoff 2 s doubling); a backoff
        # factor of 1 keeps the test short, the same retry otherwise.
        run_env = {**env, "MLFLOW_TRACKING_URI": url, "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"}
        process = run_process(run_env, mirror_root.as_uri(), log, "register")
        assert proxy.fired.wait(timeout=240), f"register never ran: {log.read_text()[-2000:]}"
        assert killed.wait(timeout=30), "mlflow server not killed"
        restarted = services.cli("services", "restart", "mlflow", "--json")
        assert restarted.returncode == 0, restarted.stderr[-2000:]
        summary = finish(process, log, timeout=300)
    creates = [s for s in proxy.seen if s == f"POST {CREATE_VERSION}"]
    register = summary["steps"]["register"]
    versions = client.search_model_versions(f"name='{name}'")
    assert len(creates) >= 2, creates  # the lost answer's create was retried
    assert [int(v.version) for v in versions] == [register["version"]], (creates, versions)
    (version,) = versions
    assert version.tags[REGISTER_KEY_TAG] and version.tags["mlops_run_id"] == summary["run_id"]
    aliases = dict(client.get_registered_model(name).aliases)
    assert int(aliases["challenger"]) == register["version"] == int(aliases["champion"])


def test_s3_stopped_during_fetch_is_retried_and_nothing_is_partial_or_lost(
    services: Services,
    mirror_root: Path,
    tmp_path: Path,
    archive_server: Callable[..., ArchiveServer],
) -> None:
    """SeaweedFS is stopped while the fetch step writes raw zips (one download held 2 s so the
    outage lands mid-step) and started again a few seconds later: the writes are retried, the
    run succeeds, every object is whole and every row is curated."""
    slow = "/" + zip_path(SYMBOLS[0], "1m", MIRROR_START + timedelta(days=2))
    server = archive_server(mirror_root, {slow: ["delay:2"]})
    env = pipeline_env(services, tmp_path / "home")
    log = tmp_path / "run.log"
    process = run_process(env, server.url, log, "validate")
    wait_for(lambda: any(r["action"] == "delay" for r in server.requests()), 120, "the fetch")
    began = time.monotonic()
    assert stop_one(services.home, "seaweedfs")
    time.sleep(3)
    up(services.home, lambda *_: None)
    outage = time.monotonic() - began
    summary = finish(process, log, timeout=300)
    assert summary["status"] == "succeeded" and outage >= 3
    fetch, validate = summary["steps"]["fetch"], summary["steps"]["validate"]
    files = len(SYMBOLS) * MIRROR_DAYS
    assert fetch["files_downloaded"] + fetch["files_skipped"] == files and not fetch["files_failed"]
    assert validate["rows_valid"] == files * 1440 and validate["rows_quarantined"] == 0
    # no partial object under any key: every zip matches its checksum, every Parquet reads
    raw_root = env["MLOPS_RAW_STORAGE_URL"].removeprefix("s3://raw/")
    raw = services.keys("raw", raw_root + "/")
    s3 = services.s3()
    zips = [k for k in raw if k.endswith(".zip")]
    assert len(zips) == files and len(raw) == 2 * files, sorted(raw)
    for key in zips:
        blob = s3.get_object(Bucket="raw", Key=key)["Body"].read()
        checksum = s3.get_object(Bucket="raw", Key=key + ".CHECKSUM")["Body"].read().decode()
        assert hashlib.sha256(blob).hexdigest() == parse_checksum(checksum), key
    curated_root = env["MLOPS_STORAGE_URL"].removeprefix("s3://curated/")
    parts = [
        k for k in services.keys("curated", curated_root + "/curated/") if k.endswith(".parquet")
    ]
    rows = 0
    for key in parts:
        rows += pq.read_metadata(
            io.BytesIO(s3.get_object(Bucket="curated", Key=key)["Body"].read())
        ).num_rows
    assert len(parts) == files and rows == files * 1440


def test_postgres_restarted_between_two_runs_keeps_runs_versions_and_aliases(
    services: Services, mirror_root: Path, tmp_path: Path
) -> None:
    env = pipeline_env(services, tmp_path / "home")
    name = env["MLOPS_MODEL_NAME"]
    first = mlops_run(env, mirror_root, START, END, until="register")
    client = registry(env)

    def snapshot() -> dict[str, Any]:
        experiment = client.get_experiment_by_name(name)
        assert experiment is not None
        runs = client.search_runs([experiment.experiment_id])
        versions = client.search_model_versions(f"name='{name}'")
        return {
            "runs": sorted((r.info.run_id, r.info.status) for r in runs),
            "versions": sorted((int(v.version), v.run_id, v.source) for v in versions),
            "aliases": dict(client.get_registered_model(name).aliases),
        }

    before = snapshot()
    old_pid = services.pid("postgres")
    restarted = services.cli("services", "restart", "postgres", "--json")
    assert restarted.returncode == 0, restarted.stderr[-2000:]
    assert services.pid("postgres") != old_pid and not group_members(old_pid)
    after = snapshot()  # through the MLflow server, whose connections PostgreSQL dropped
    assert (
        after == before
        and int(before["aliases"]["champion"]) == first["steps"]["register"]["version"]
    )
    second = mlops_run(env, mirror_root, START, END, until="register")
    assert second["steps"]["register"]["version"] == first["steps"]["register"]["version"] + 1
    final = snapshot()
    assert set(before["versions"]) < set(final["versions"]) and len(final["runs"]) > len(
        before["runs"]
    )
