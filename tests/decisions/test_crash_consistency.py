"""A decision killed half-way (``kill -9``) leaves registry, GitOps pin and ledger consistent
once the next decision runs: a write-ahead intent is reconciled against the GitOps repository's
committed state (the remote's, when there is one), never the working copy.

Each case kills a real process running `promotion.rollback` at one point of the transaction,
checks the split it left, then runs the retry and checks the outcome. Real MLflow registry
(sqlite), real git; the second and third cases pause the child at a point no hook can reach by
wrapping the function it calls there.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from pipelines.decisions import ledger, promotion
from pipelines.decisions.gitops import GitOpsRepo
from pipelines.decisions.intent import read_intent
from pipelines.decisions.pin import read_pin
from pipelines.ml.registry import MODEL_DIGEST_TAG, SERVING_IMAGE_TAG
from pipelines.settings import Settings
from pipelines.storage import LocalStorage
from tests.conftest import REPO
from tests.support.pins import make_pin

pytestmark = [pytest.mark.integration, pytest.mark.hostile]

NAME = "market-direction"
CHILD = """
import sys, time
from pathlib import Path
from pipelines.decisions import gitops, ledger, promotion
from pipelines.settings import Settings
from pipelines.storage import open_storage

where, marker = sys.argv[1], Path(sys.argv[2])

def pause(real):
    def paused(*args, **kwargs):
        if where == "before-push" and args[1:2] == ("push",) or where == "after-commit" and (
            getattr(args[1], "decision", "failed") != "failed"
        ):
            marker.touch()
            time.sleep(120)
        return real(*args, **kwargs)
    return paused

if where == "after-commit":
    ledger.write = pause(ledger.write)
if where == "before-push":
    gitops.GitOpsRepo.git = pause(gitops.GitOpsRepo.git)
settings = Settings()
promotion.rollback(settings, open_storage(settings.data_url), to=2, reasons=["test"])
"""


def registry(settings: Settings) -> Any:
    """A registered model with versions 1 and 2 (each packaged: its pin tags), champion 1."""
    from pipelines.ml.tracking import client, configure

    configure(settings)
    mlflow = client(settings)
    mlflow.create_registered_model(NAME)
    for version in (1, 2):
        mlflow.create_model_version(NAME, source=f"file:///nowhere/{version}")
        pin = make_pin(version)
        mlflow.set_model_version_tag(NAME, str(version), SERVING_IMAGE_TAG, pin.image_tag)
        mlflow.set_model_version_tag(NAME, str(version), MODEL_DIGEST_TAG, pin.model_sha256)
    mlflow.set_registered_model_alias(NAME, "champion", "1")
    return mlflow


def champion(mlflow: Any) -> int:
    return int(mlflow.get_registered_model(NAME).aliases["champion"])


def committed_pin(repo: GitOpsRepo, ref: str = "HEAD") -> Any:
    """The model version the committed overlay pins (not the working copy)."""
    text = repo.git("show", f"{ref}:platform/envs/local/model.env")
    return next(
        line.split("=")[1] for line in text.splitlines() if line.startswith("MLOPS_MODEL_V")
    )


def kill_at(where: str, env: dict[str, str], tmp_path: Path) -> None:
    """Run the rollback in a child; SIGKILL it once it reaches `where`."""
    marker = tmp_path / f"{where}.reached"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, where, str(marker)],
        env={**os.environ, **env},
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while not marker.exists():
        assert child.poll() is None, child.stderr.read().decode()[-2000:] if child.stderr else ""
        assert time.monotonic() < deadline, f"the child never reached {where}"
        time.sleep(0.1)
    os.killpg(child.pid, signal.SIGKILL)
    child.wait(timeout=30)


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    home = tmp_path / "home"
    env = {"MLOPS_HOME": str(home), "MLOPS_ENV": "local"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    settings = Settings()
    storage = LocalStorage(home / "data")
    mlflow = registry(settings)
    repo = promotion.repo_of(settings)
    repo.ensure()
    repo.pin("local", make_pin(1), "serve v1")
    return {"env": env, "settings": settings, "storage": storage, "mlflow": mlflow, "repo": repo}


def records(storage: LocalStorage) -> list[tuple[str, str]]:
    return [(r.kind, r.decision) for r in ledger.read_all(storage, "local")]


def test_a_kill_during_the_gitops_commit_is_undone_then_the_retry_pins(
    world: dict[str, Any], tmp_path: Path
) -> None:
    repo, mlflow, storage = world["repo"], world["mlflow"], world["storage"]
    hook = repo.path / ".git" / "hooks" / "pre-commit"
    hook.write_text(f"#!/bin/sh\ntouch {tmp_path}/commit.reached\nsleep 120\n")
    hook.chmod(0o755)
    kill_at("commit", world["env"], tmp_path)
    hook.unlink()
    # the split a kill leaves: champion moved, overlay staged but not committed, no record
    assert champion(mlflow) == 2 and committed_pin(repo) == "1"
    assert read_pin(repo.overlay("local")) == make_pin(2)  # the working copy says v2 ...
    assert read_intent(storage, "local") is not None and records(storage) == []
    # the retry: reconciled first (aliases back, a failed record), then decided afresh
    done = promotion.rollback(world["settings"], storage, to=2, reasons=["retry"])
    assert done.decision == "rollback" and champion(mlflow) == 2
    assert committed_pin(repo) == "2" and repo.git("status", "--porcelain") == ""
    assert records(storage) == [("rollback", "failed"), ("rollback", "rollback")]
    (failed, _) = ledger.read_all(storage, "local")
    assert any("interrupted before its GitOps commit landed" in r for r in failed.reasons)
    assert failed.aliases_after["champion"] == 1  # moved back by the reconciliation
    assert read_intent(storage, "local") is None


def test_a_kill_after_the_commit_landed_is_completed_not_undone(
    world: dict[str, Any], tmp_path: Path
) -> None:
    repo, mlflow, storage = world["repo"], world["mlflow"], world["storage"]
    kill_at("after-commit", world["env"], tmp_path)
    assert champion(mlflow) == 2 and committed_pin(repo) == "2" and records(storage) == []
    # the next decision records what happened, then finds nothing left to do
    done = promotion.rollback(world["settings"], storage, to=2, reasons=["retry"])
    assert done.decision == "hold" and champion(mlflow) == 2
    assert records(storage) == [("rollback", "rollback"), ("rollback", "hold")]
    (completed, _) = ledger.read_all(storage, "local")
    assert completed.gitops_commit == repo.head() and completed.key in repo.head_message()
    assert any("recorded by reconciliation" in r for r in completed.reasons)
    assert read_intent(storage, "local") is None


def test_a_kill_before_the_push_discards_the_local_commit_and_the_retry_pushes(
    world: dict[str, Any], tmp_path: Path
) -> None:
    repo, mlflow, storage = world["repo"], world["mlflow"], world["storage"]
    remote = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", str(remote)], check=True, timeout=30)
    repo.git("push", "-q", str(remote), "HEAD:main")
    env = {**world["env"], "MLOPS_GITOPS_REMOTE": str(remote)}
    kill_at("before-push", env, tmp_path)
    assert champion(mlflow) == 2 and committed_pin(repo) == "2"  # committed locally ...
    remote_repo = GitOpsRepo(tmp_path / "view", remote=str(remote))
    remote_repo.ensure()
    assert committed_pin(remote_repo) == "1"  # ... but never pushed
    os.environ["MLOPS_GITOPS_REMOTE"] = str(remote)
    try:
        done = promotion.rollback(Settings(), storage, to=2, reasons=["retry"])
    finally:
        del os.environ["MLOPS_GITOPS_REMOTE"]
    assert done.decision == "rollback" and champion(mlflow) == 2
    remote_repo.sync()
    assert committed_pin(remote_repo) == "2" and done.gitops_commit == remote_repo.head()
    assert records(storage) == [("rollback", "failed"), ("rollback", "rollback")]
