"""The decision ledger and the GitOps working copy, without a registry."""

from __future__ import annotations

import threading
import time
from itertools import pairwise
from pathlib import Path

import pytest

from pipelines.decisions import ledger
from pipelines.decisions.gitops import GitOpsRepo
from pipelines.decisions.ledger import Decision
from pipelines.decisions.monitor import trailing_degraded
from pipelines.errors import PipelineError
from pipelines.storage import LocalStorage
from tests.conftest import REPO
from tests.support.pins import make_pin
from tests.support.records import make_decision


def decision(**changes: object) -> Decision:
    moved = {"aliases_before": {"champion": 1}, "aliases_after": {"champion": 2, "previous": 1}}
    return make_decision(**{**moved, **changes})


def test_records_are_append_only_and_found_by_question(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    first = ledger.write(storage, decision())
    second = ledger.write(storage, decision(decision_id="q2", decision="reject"))
    assert first.key != second.key and first.key.startswith("decisions/local/")
    with pytest.raises(FileExistsError):
        ledger.write(storage, first)
    assert [d.key for d in ledger.read_all(storage, "local")] == [first.key, second.key]
    assert ledger.find(storage, "local", "q1") == first
    ledger.write(storage, decision(decision_id="q3", decision="failed"))
    assert ledger.find(storage, "local", "q3") is None  # a failed attempt answers nothing
    history = ledger.alias_history(storage, "local")
    assert history[0]["moves"] == {
        "champion": {"from": 1, "to": 2},
        "previous": {"from": None, "to": 1},
    }


@pytest.mark.integration
def test_gitops_pins_image_and_model_in_one_commit(tmp_path: Path) -> None:
    repo = GitOpsRepo(tmp_path / "gitops", source=REPO / "platform")
    repo.ensure()
    assert repo.pinned("prod") is None  # unreleased
    pin = make_pin(7)
    commit = repo.pin("prod", pin, "promote v7")
    assert commit == repo.head() and repo.pinned("prod") == pin
    assert repo.pin("prod", pin, "again") is None  # nothing to do, no empty commit
    overlay = repo.path / "platform/envs/prod"
    text = (overlay / "kustomization.yaml").read_text()
    assert f"newTag: {pin.image_tag}" in text and "# Serving in prod" in text  # comments kept
    model = (overlay / "model.env").read_text()
    assert f"MLOPS_MODEL_VERSION=7\nMLOPS_MODEL_SHA256={pin.model_sha256}\n" in model
    changed = repo.git("show", "--name-only", "--format=%s", "HEAD").splitlines()
    assert changed == [
        "promote v7",
        "",
        "platform/envs/prod/kustomization.yaml",
        "platform/envs/prod/model.env",
    ]
    # a new model on the same image: one commit changing model.env only
    repo.pin("prod", make_pin(8), "promote v8")
    assert repo.git("show", "--name-only", "--format=", "HEAD").split() == [
        "platform/envs/prod/model.env"
    ]
    with pytest.raises(PipelineError, match="no serving overlay for env 'qa'"):
        repo.pinned("qa")


@pytest.mark.integration  # git
@pytest.mark.hostile
def test_a_malformed_pin_in_the_overlay_is_named(tmp_path: Path) -> None:
    repo = GitOpsRepo(tmp_path / "gitops", source=REPO / "platform")
    repo.ensure()
    model = repo.path / "platform/envs/dev/model.env"
    model.write_text("MLOPS_MODEL_VERSION=3\nMLOPS_MODEL_SHA256=not-a-digest\n")
    (repo.path / "platform/envs/dev/kustomization.yaml").write_text(
        (REPO / "platform/envs/dev/kustomization.yaml")
        .read_text()
        .replace("newTag: unreleased", "newTag: 0123456789ab")
    )
    with pytest.raises(PipelineError, match="MLOPS_MODEL_SHA256='not-a-digest'"):
        repo.pinned("dev")
    model.unlink()
    with pytest.raises(PipelineError, match=r"model\.env is missing"):
        repo.pinned("dev")


def test_decisions_are_serialized_by_the_lock(tmp_path: Path) -> None:
    repo = GitOpsRepo(tmp_path / "gitops")
    spans: list[tuple[float, float]] = []

    def hold() -> None:
        with repo.lock():
            began = time.monotonic()
            time.sleep(0.3)
            spans.append((began, time.monotonic()))

    threads = [threading.Thread(target=hold) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    spans.sort()
    assert all(later[0] >= earlier[1] for earlier, later in pairwise(spans))


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ([], 0),
        ([True, True, False], 0),
        ([False, True, True], 2),
        ([True, True, True], 3),
        ([True, None, True], 2),  # an unjudged window (too few rows) neither counts nor breaks
    ],
)
def test_trailing_degraded_windows(flags: list[bool | None], expected: int) -> None:
    windows = [{"judged": flag is not None, "degraded": bool(flag)} for flag in flags]
    assert trailing_degraded(windows) == expected


@pytest.mark.integration
def test_a_remote_gitops_repository_is_cloned_and_pushed_to(tmp_path: Path) -> None:
    origin = GitOpsRepo(tmp_path / "origin", source=REPO / "platform")
    origin.ensure()
    bare = tmp_path / "bare.git"
    origin.git("clone", "-q", "--bare", str(origin.path), str(bare))
    clone = GitOpsRepo(tmp_path / "clone", remote=str(bare))
    commit = clone.pin("staging", make_pin(3), "promote v3 in staging")
    assert commit is not None
    assert origin.git("ls-remote", str(bare), "refs/heads/main").split()[0] == commit
    with pytest.raises(PipelineError, match="cloning the GitOps repository"):
        GitOpsRepo(tmp_path / "nowhere", remote=str(tmp_path / "missing.git")).ensure()


@pytest.mark.hostile
@pytest.mark.parametrize("env", ["../../etc", "../dev", "dev/../../x", "a/b"])
def test_an_env_that_is_not_one_folder_name_is_refused(tmp_path: Path, env: str) -> None:
    """`env` names a folder under platform/envs/ and storage keys: a path is refused twice —
    by the settings, and by the GitOps repository before it reads or writes (issue 15 #14)."""
    from pydantic import ValidationError

    from pipelines.decisions.gitops import GitOpsRepo
    from pipelines.errors import PipelineError
    from pipelines.settings import Settings

    with pytest.raises(ValidationError, match="env"):
        Settings(home=tmp_path, env=env)
    outside = tmp_path / "etc" / "kustomization.yaml"  # what ../../etc would reach
    outside.parent.mkdir(parents=True)
    outside.write_text("images: []\n")
    repo = GitOpsRepo(tmp_path / "repo" / "gitops")
    (repo.path / "platform" / "envs" / "dev").mkdir(parents=True)
    with pytest.raises(PipelineError, match="not one folder name"):
        repo.overlay(env)
