"""GitOps push credentials: mounted files reach git through its environment only, never argv, a
URL, the working copy, a commit, an error or the ledger."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from pipelines.decisions import ledger, promotion
from pipelines.decisions.gitops import GitCredentials, GitOpsRepo, redact
from pipelines.errors import PipelineError
from pipelines.settings import Settings
from pipelines.storage import LocalStorage
from tests.conftest import REPO
from tests.support.pins import make_pin
from tests.support.records import make_decision

TOKEN = "tok-5b0c1e7f2a9d4c38b6e1"


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "secret" / "token"
    path.parent.mkdir()
    path.write_text(TOKEN + "\n")  # as a Kubernetes Secret volume may hold it
    return path


# ------------------------------------------------------------------ in-process


@pytest.mark.parametrize(
    ("text", "kept", "gone"),
    [
        (
            "fatal: unable to access 'https://user:secret@git.host/gitops.git/': 403",
            "https://user:***@git.host/gitops.git/",
            "secret",
        ),
        ("git push -q https://oauth2:glpat-abc@h/r.git HEAD:main", "oauth2:***@h", "glpat-abc"),
        ("remote: https://ghp_0123456789abcdefghijKLMN@github.com/o/r", "https://***@", "ghp_"),
        ("token ghp_0123456789abcdefghijKLMNop leaked", "token *** leaked", "ghp_"),
        ("> Authorization: Basic dXNlcjpzZWNyZXQ=", "Authorization: Basic ***", "dXNlcjpz"),
        (f"fatal: '{TOKEN}' is not a repository", "fatal: '***' is not", TOKEN),
    ],
)
def test_redact(text: str, kept: str, gone: str) -> None:
    redacted = redact(text, [TOKEN])
    assert kept in redacted and gone not in redacted


@pytest.mark.parametrize(
    "text",
    [
        "ssh://git@github.com/org/gitops.git",
        "git@github.com:org/gitops.git",
        "https://github.com/org/gitops.git",
        "http://mlflow.mlflow.svc.cluster.local:5000/api",
    ],
)
def test_redact_leaves_urls_without_credentials_alone(text: str) -> None:
    assert redact(text) == text


def test_the_token_reaches_git_as_a_file_path_in_its_environment(token_file: Path) -> None:
    credentials = GitCredentials(token_file=token_file)
    env = credentials.environment({})
    assert all(TOKEN not in value for value in env.values())
    assert env["MLOPS_GITOPS_TOKEN_FILE"] == str(token_file)
    assert env["GIT_TERMINAL_PROMPT"] == "0"
    assert env["GIT_CONFIG_COUNT"] == "2"
    assert (env["GIT_CONFIG_KEY_0"], env["GIT_CONFIG_VALUE_0"]) == ("credential.helper", "")
    assert env["GIT_CONFIG_VALUE_1"].startswith("!")  # our helper, alone (others reset)
    # config passed by the caller's environment is kept: ours comes after it
    appended = credentials.environment({"GIT_CONFIG_COUNT": "1"})
    assert appended["GIT_CONFIG_COUNT"] == "3" and "GIT_CONFIG_KEY_0" not in appended
    assert credentials.secrets() == [TOKEN]


def test_an_ssh_deploy_key_reaches_git_as_git_ssh_command(tmp_path: Path) -> None:
    key = tmp_path / "secret dir" / "ssh-key"
    hosts = tmp_path / "known_hosts"
    env = GitCredentials(ssh_key_file=key, known_hosts_file=hosts).environment({})
    ssh = shlex.split(env["GIT_SSH_COMMAND"])
    assert ssh[:3] == ["ssh", "-i", str(key)]  # a path with a space survives the shell
    assert "IdentitiesOnly=yes" in ssh and "BatchMode=yes" in ssh
    assert f"UserKnownHostsFile={hosts}" in ssh and "StrictHostKeyChecking=yes" in ssh
    trust_on_first_use = GitCredentials(ssh_key_file=key).environment({})["GIT_SSH_COMMAND"]
    assert "StrictHostKeyChecking=accept-new" in trust_on_first_use
    assert "GIT_CONFIG_COUNT" not in env  # no token: no helper


def test_the_commands_built_never_hold_the_token(tmp_path: Path, token_file: Path) -> None:
    repo = GitOpsRepo(
        tmp_path / "gitops",
        remote=f"file://{tmp_path / 'bare.git'}",
        credentials=GitCredentials(token_file=token_file),
    )
    push = repo.command("push", "-q", repo.remote_url(), f"HEAD:{repo.branch}")
    assert push[0] == "git" and TOKEN not in " ".join(push)
    assert all(TOKEN not in value for value in repo.environment().values())


def test_a_remote_with_a_password_in_its_url_is_refused_redacted(tmp_path: Path) -> None:
    repo = GitOpsRepo(tmp_path / "gitops", remote="https://user:secret@git.host/gitops.git")
    with pytest.raises(PipelineError) as caught:
        repo.remote_url()
    assert "user:***@git.host" in str(caught.value) and "secret" not in str(caught.value)
    assert "MLOPS_GITOPS_TOKEN_FILE" in str(caught.value)


def test_a_missing_credential_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "token"
    repo = GitOpsRepo(
        tmp_path / "gitops",
        remote="https://git.host/gitops.git",
        credentials=GitCredentials(token_file=missing),
    )
    with pytest.raises(PipelineError, match=rf"MLOPS_GITOPS_TOKEN_FILE: {missing} is not a"):
        repo.remote_url()


def test_repo_of_takes_the_credentials_from_the_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("TOKEN", "SSH_KEY", "KNOWN_HOSTS"):
        monkeypatch.delenv(f"MLOPS_GITOPS_{name}_FILE", raising=False)
    assert promotion.credentials_of(Settings(home=tmp_path)) == GitCredentials()
    # what the CronWorkflow sets for the steps that push (pipelines/orchestration/argo.py)
    monkeypatch.setenv("MLOPS_GITOPS_TOKEN_FILE", str(tmp_path / "token"))
    monkeypatch.setenv("MLOPS_GITOPS_REMOTE", "https://git.host/gitops.git")
    repo = promotion.repo_of(Settings(home=tmp_path))
    assert repo.credentials == GitCredentials(token_file=tmp_path / "token")


def test_a_failed_gitops_commit_leaves_no_credential_in_the_error_or_the_ledger(
    tmp_path: Path, token_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    aliases = {"champion": "1"}

    class Client:
        def get_registered_model(self, name: str) -> Any:
            return SimpleNamespace(aliases=dict(aliases))

        def set_registered_model_alias(self, name: str, alias: str, version: str) -> None:
            aliases[alias] = version

        def delete_registered_model_alias(self, name: str, alias: str) -> None:
            aliases.pop(alias, None)

    repo = GitOpsRepo(tmp_path / "gitops", credentials=GitCredentials(token_file=token_file))

    def pin(env: str, tag: str, message: str) -> str:
        raise RuntimeError(f"push to https://bot:hunter2@git.host/g.git failed: {TOKEN} denied")

    monkeypatch.setattr(repo, "pin", pin)
    monkeypatch.setattr(promotion, "mlflow_client", lambda settings: Client())
    monkeypatch.setattr(promotion, "repo_of", lambda settings: repo)
    storage = LocalStorage(tmp_path / "data")
    record = make_decision(reasons=["better"])
    with pytest.raises(PipelineError) as caught:
        promotion.apply(
            Settings(home=tmp_path), storage, record, {"champion": 2}, make_pin(2), "pin"
        )
    records = ledger.read_all(storage, "local")
    texts = [str(caught.value), *(r.model_dump_json() for r in records)]
    assert [r.decision for r in records] == ["failed"]
    for text in texts:
        assert TOKEN not in text and "hunter2" not in text
    assert "bot:***@git.host" in str(caught.value)
    assert aliases == {"champion": "1"}  # moved back


# ------------------------------------------------------------------ with git


def _recording(monkeypatch: pytest.MonkeyPatch) -> list[tuple[list[str], dict[str, str]]]:
    calls: list[tuple[list[str], dict[str, str]]] = []
    real = subprocess.run

    def run(argv: list[str], *args: Any, **kwargs: Any) -> Any:
        calls.append((list(argv), dict(kwargs.get("env") or {})))
        return real(argv, *args, **kwargs)

    monkeypatch.setattr(subprocess, "run", run)
    return calls


def _bare(tmp_path: Path) -> Path:
    origin = GitOpsRepo(tmp_path / "origin", source=REPO / "platform")
    origin.ensure()
    bare = tmp_path / "bare.git"
    origin.git("clone", "-q", "--bare", str(origin.path), str(bare))
    return bare


@pytest.mark.integration
@pytest.mark.parametrize("scheme", ["path", "file://"])
def test_a_push_with_a_token_file_keeps_the_token_out_of_argv_env_repo_and_commit(
    tmp_path: Path, token_file: Path, monkeypatch: pytest.MonkeyPatch, scheme: str
) -> None:
    bare = _bare(tmp_path)
    remote = str(bare) if scheme == "path" else f"file://{bare}"
    calls = _recording(monkeypatch)
    clone = GitOpsRepo(
        tmp_path / "clone", remote=remote, credentials=GitCredentials(token_file=token_file)
    )
    commit = clone.pin("staging", make_pin(3), "promote v3 in staging")
    assert commit is not None
    assert clone.git("ls-remote", remote, "refs/heads/main").split()[0] == commit
    assert any("push" in argv for argv, _ in calls) and any("clone" in argv for argv, _ in calls)
    for argv, env in calls:
        assert TOKEN not in " ".join(argv)
        assert all(TOKEN not in value for value in env.values())
    history = subprocess.run(
        ["git", "log", "--all", "-p", "--format=raw"], cwd=bare, capture_output=True, text=True
    ).stdout
    assert "promote v3 in staging" in history and TOKEN not in history
    assert TOKEN not in (clone.path / ".git" / "config").read_text()


@pytest.mark.integration
def test_git_gets_the_token_from_the_helper_and_stores_it_nowhere(
    tmp_path: Path, token_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    repo = GitOpsRepo(tmp_path / "gitops", credentials=GitCredentials(token_file=token_file))
    ask = "protocol=https\nhost=gitops.invalid\npath=org/gitops.git\n\n"
    argv = repo.command("credential", "fill")
    assert TOKEN not in " ".join(argv)
    filled = subprocess.run(
        argv, input=ask, env=repo.environment(), capture_output=True, text=True, check=True
    ).stdout
    assert f"password={TOKEN}\n" in filled and "username=x-access-token\n" in filled
    subprocess.run(
        repo.command("credential", "approve"),
        input=filled + "\n",
        env=repo.environment(),
        capture_output=True,
        text=True,
        check=True,
    )
    assert not (home / ".git-credentials").exists()  # our helper stores nothing
    assert not list(home.rglob("*credential*"))


@pytest.mark.integration
def test_a_failing_push_error_shows_no_credential(
    tmp_path: Path, token_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for proxy in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY"):
        monkeypatch.delenv(proxy, raising=False)  # 127.0.0.1:1 answers nothing; nothing leaves
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    repo = GitOpsRepo(
        tmp_path / "gitops",
        source=REPO / "platform",
        credentials=GitCredentials(token_file=token_file),
    )
    repo.ensure()
    # planted: a password in the remote URL -> refused, shown as user:***@
    repo.remote = "https://user:secret@127.0.0.1:1/gitops.git"
    with pytest.raises(PipelineError) as caught:
        repo.pin("dev", make_pin(1), "promote v1")
    assert "user:***@127.0.0.1" in str(caught.value) and "secret" not in str(caught.value)
    # planted: git itself echoes the token (here in the URL's path) -> redacted
    repo.remote = f"https://127.0.0.1:1/{TOKEN}/gitops.git"
    with pytest.raises(PipelineError) as caught:
        repo.pin("dev", make_pin(2), "promote v2")
    message = str(caught.value)
    assert "git push" in message and "unable to access" in message
    assert TOKEN not in message and "127.0.0.1:1/***/gitops.git" in message


@pytest.mark.integration
def test_a_failed_push_leaves_no_commit_and_the_retry_pushes(tmp_path: Path) -> None:
    """An unpushed commit is not a decision: the retry must commit and push again, not find
    the tag 'already pinned' in the working copy and report success."""
    repo = GitOpsRepo(tmp_path / "gitops", source=REPO / "platform")
    repo.ensure()
    remote = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", str(remote)], check=True, timeout=30)
    repo.git("push", "-q", str(remote), "HEAD:main")
    before = repo.head()
    repo.remote = str(tmp_path / "gone.git")  # the remote is unreachable: the push fails
    with pytest.raises(PipelineError, match="git push"):
        repo.pin("dev", make_pin(7), "promote v7")
    assert repo.head() == before and repo.pinned("dev") != make_pin(7)
    repo.remote = str(remote)  # reachable again: the retry commits and pushes
    commit = repo.pin("dev", make_pin(7), "promote v7")
    assert commit is not None and repo.pinned("dev") == make_pin(7)
    pushed = subprocess.run(
        ["git", "--git-dir", str(remote), "rev-parse", "main"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout.strip()
    assert pushed == commit
