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


def decision(**changes: object) -> Decision:
    fields: dict[str, object] = {
        "kind": "gate",
        "env": "local",
        "model_name": "m",
        "decision": "promote",
        "reasons": ["r"],
        "decision_id": "q1",
        "started_at": ledger.now_iso(),
        "aliases_before": {"champion": 1},
        "aliases_after": {"champion": 2, "previous": 1},
    }
    return Decision.model_validate({**fields, **changes})


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
def test_gitops_pins_one_tag_per_commit(tmp_path: Path) -> None:
    repo = GitOpsRepo(tmp_path / "gitops", source=REPO / "platform")
    repo.ensure()
    assert repo.pinned("prod") == "unreleased"
    commit = repo.pin("prod", "v7-abc", "promote v7")
    assert commit == repo.head() and repo.pinned("prod") == "v7-abc"
    assert repo.pin("prod", "v7-abc", "again") is None  # nothing to do, no empty commit
    text = (repo.path / "platform/envs/prod/kustomization.yaml").read_text()
    assert "newTag: v7-abc" in text and "# Serving in prod" in text  # comments kept
    assert repo.git("show", "--stat", "--format=%s", "HEAD").splitlines()[0] == "promote v7"
    with pytest.raises(PipelineError, match="no serving overlay for env 'qa'"):
        repo.pinned("qa")


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
    commit = clone.pin("staging", "v3-def", "promote v3 in staging")
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
