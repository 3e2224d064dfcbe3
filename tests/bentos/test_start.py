"""The serving image's entry point (`bentos.start`) as a pod runs it: from an empty BentoML
store, it fetches the model archive the pin names from storage, checks its sha256, imports it and
serves it — and refuses, with one line and no server, an archive that is not the pinned one."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.bentos.conftest import training_env
from tests.conftest import REPO
from tests.services import free_port, stop, wait_http

pytestmark = pytest.mark.integration


def pod_env(home: Path, storage: Path, version: Any, digest: str, store: Path) -> dict[str, str]:
    """A pod's environment: the overlay's settings, the model pin, an empty BentoML store."""
    return {
        **os.environ,
        **training_env(home),
        "MLOPS_STORAGE_URL": str(storage),
        "MLOPS_MODEL_VERSION": str(version),
        "MLOPS_MODEL_SHA256": digest,
        "BENTOML_HOME": str(store),
        "BENTOML_DO_NOT_TRACK": "true",
    }


def start(env: dict[str, str], port: int, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "bentos.start", "--host", "127.0.0.1", "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=tmp_cwd(log),
            start_new_session=True,
        )


def tmp_cwd(log: Path) -> Path:
    """A working directory outside the checkout: the entry point must find its code itself."""
    cwd = log.parent / "cwd"
    cwd.mkdir(exist_ok=True)
    return cwd


def refused(env: dict[str, str], tmp_path: Path) -> str:
    """Run the entry point that must refuse; its output (it must exit 1, fast, serving nothing)."""
    done = subprocess.run(
        [sys.executable, "-m", "bentos.start", "--port", str(free_port())],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    return done.stderr


def test_a_pod_fetches_checks_and_serves_the_pinned_model(
    trained: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    home, summary = trained
    package = summary["steps"]["package"]
    store = tmp_path / "bentoml"  # empty: the model can only come from storage
    env = pod_env(home, home / "data", 1, package["model_sha256"], store)
    port = free_port()
    process = start(env, port, tmp_path / "pod.log")
    try:
        wait_http(f"http://127.0.0.1:{port}/readyz", process, timeout=120)
        card = httpx.get(f"http://127.0.0.1:{port}/metadata", timeout=10).json()
        assert card["model_version"] == "1"
        assert card["dataset_hash"] == summary["steps"]["features"]["dataset_hash"]
    finally:
        stop(process)
    log = (tmp_path / "pod.log").read_text()
    assert "serving market-direction:v1 (sha256 checked)" in log
    assert (store / "models" / "market-direction" / "v1").is_dir()


def test_an_archive_that_is_not_the_pinned_one_is_refused(
    trained: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    home, summary = trained
    package = summary["steps"]["package"]
    key = package["model_archive"].removeprefix(str(home / "data") + "/")
    # a copy of the storage with the archive replaced after packaging (one byte flipped)
    storage = tmp_path / "data"
    (storage / key).parent.mkdir(parents=True)
    data = bytearray((home / "data" / key).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (storage / key).write_bytes(bytes(data))
    env = pod_env(home, storage, 1, package["model_sha256"], tmp_path / "bentoml")
    message = refused(env, tmp_path)
    assert f"but the pin names {package['model_sha256']}: refusing to serve it" in message
    assert not (tmp_path / "bentoml" / "models" / "market-direction").exists()
    # the right bytes under the same pin: accepted (the control: only the bytes differed)
    shutil.copyfile(home / "data" / key, storage / key)
    from bentos.runtime import ServingSettings
    from bentos.start import ModelPin, fetch_model

    os.environ["BENTOML_HOME"] = str(tmp_path / "control")
    try:
        pin = ModelPin(model_version=1, model_sha256=package["model_sha256"])
        assert fetch_model(ServingSettings(storage_url=str(storage)), pin) == "market-direction:v1"
    finally:
        del os.environ["BENTOML_HOME"]


@pytest.mark.parametrize(
    ("version", "digest", "expected"),
    [
        ("unreleased", "unreleased", "no valid model pin: MLOPS_MODEL_VERSION, MLOPS_MODEL_SHA256"),
        ("1", "f" * 63, "no valid model pin: MLOPS_MODEL_SHA256"),
        ("9", "a" * 64, "market-direction/v9.bentomodel does not exist"),
    ],
)
def test_no_pin_a_malformed_pin_or_a_missing_archive_is_one_line(
    trained: tuple[Path, dict[str, Any]], tmp_path: Path, version: str, digest: str, expected: str
) -> None:
    home, _ = trained
    env = pod_env(home, home / "data", version, digest, tmp_path / "bentoml")
    assert expected in refused(env, tmp_path)
