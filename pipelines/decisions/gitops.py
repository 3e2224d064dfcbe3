"""The GitOps repository: promotion and rollback change what an env's serving overlay pins —
the serving image's tag and the model with its archive digest (`pipelines.decisions.pin`) — in
one commit each.

Locally the repository is ``$MLOPS_HOME/gitops`` (``MLOPS_GITOPS_REPO``), initialised from this
checkout's ``platform/``; on the cluster it is a clone of the repo ArgoCD watches, pushed to
``MLOPS_GITOPS_REMOTE`` when set. Gates are serialized by a lock file.

Credentials (`GitCredentials`) are files mounted from a Kubernetes Secret: a token (HTTPS) or an
SSH deploy key. git gets them through its environment only — a credential helper that reads the
token file when git asks (``GIT_CONFIG_*``), or ``GIT_SSH_COMMAND`` naming the key file — so no
credential is ever in argv, in a URL, in the working copy's config or in a commit. A remote URL
with a password in it is refused, and every message built from git's output is `redact`-ed.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from pipelines.decisions.pin import ServingPin, read_pin, write_pin
from pipelines.errors import PipelineError
from pipelines.settings import REPO_ROOT

IDENTITY = ["-c", "user.name=mlops-platform", "-c", "user.email=mlops-platform@localhost"]
TOKEN_USERNAME = "x-access-token"
"""The HTTPS username sent with a token (GitHub's for app and fine-grained tokens; GitHub and
GitLab accept any username with a personal access token)."""
REDACTED = "***"

_URL_PASSWORD = re.compile(r"(?i)\b(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^\s:/@]*):[^\s/@]*@")
_URL_TOKEN_USER = re.compile(r"(?i)\b(?P<scheme>[a-z][a-z0-9+.-]*://)[^\s:/@]{20,}@")
_TOKENS = re.compile(
    r"\b(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}|glpat-[A-Za-z0-9_-]{20,})"
)
_AUTH_HEADER = re.compile(r"(?i)\b(authorization:\s*(?:basic|bearer|token)\s+)\S+")
# git runs a helper starting with "!" through the shell, with the operation (get, store, erase)
# as its argument; it answers `get` from the token file and ignores the rest (stores nothing).
_CREDENTIAL_HELPER = (
    '!f() { test "$1" = get || return 0; '
    'printf "username=%s\\n" "$MLOPS_GITOPS_USERNAME"; '
    'printf "password=%s\\n" "$(tr -d "\\r\\n" < "$MLOPS_GITOPS_TOKEN_FILE")"; }; f'
)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` without credentials: the literal `secrets`, ``user:password@`` in URLs (kept as
    ``user:***@``), a token used as a URL's user, well-known token formats and auth headers."""
    for secret in sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    text = _URL_PASSWORD.sub(rf"\g<scheme>\g<user>:{REDACTED}@", text)
    text = _URL_TOKEN_USER.sub(rf"\g<scheme>{REDACTED}@", text)
    text = _TOKENS.sub(REDACTED, text)
    return _AUTH_HEADER.sub(rf"\g<1>{REDACTED}", text)


def has_password(url: str) -> bool:
    """Whether `url` carries a password (``scheme://user:password@host/…``)."""
    return bool(_URL_PASSWORD.search(url))


GIT_TIMEOUT_SECONDS = 120
"""Bound on any one git command (a push to an unreachable remote)."""


@dataclass(frozen=True)
class GitCredentials:
    """How git authenticates to the GitOps remote: files mounted from a Kubernetes Secret.

    Args:
        token_file: a token for HTTPS remotes (``MLOPS_GITOPS_TOKEN_FILE``).
        ssh_key_file: a private deploy key for SSH remotes (``MLOPS_GITOPS_SSH_KEY_FILE``); ssh
            refuses a key file its user owns that others may read (mount it with mode 0400, or
            0440 with the pod's fsGroup).
        known_hosts_file: the SSH host keys to trust (``MLOPS_GITOPS_KNOWN_HOSTS_FILE``); without
            it the first host key seen is trusted and remembered (``accept-new``).
        username: the HTTPS username sent with the token.
    """

    token_file: Path | None = None
    ssh_key_file: Path | None = None
    known_hosts_file: Path | None = None
    username: str = TOKEN_USERNAME

    def check(self) -> None:
        """Each configured file exists and is readable.

        Raises:
            PipelineError: naming the file (never its content).
        """
        for setting, path in (
            ("MLOPS_GITOPS_TOKEN_FILE", self.token_file),
            ("MLOPS_GITOPS_SSH_KEY_FILE", self.ssh_key_file),
            ("MLOPS_GITOPS_KNOWN_HOSTS_FILE", self.known_hosts_file),
        ):
            if path is not None and not (path.is_file() and os.access(path, os.R_OK)):
                raise PipelineError(
                    f"{setting}: {path} is not a readable file",
                    "mount the Secret holding it into the step and point the setting at it",
                )

    def environment(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """The variables to add to git's environment (paths only, never a credential)."""
        base = os.environ if base is None else base
        env = {"GIT_TERMINAL_PROMPT": "0"}  # fail instead of waiting for a password
        if self.token_file is not None:
            count = int(base.get("GIT_CONFIG_COUNT", "0") or 0)
            pairs = [("credential.helper", ""), ("credential.helper", _CREDENTIAL_HELPER)]
            for index, (key, value) in enumerate(pairs, start=count):
                env[f"GIT_CONFIG_KEY_{index}"] = key
                env[f"GIT_CONFIG_VALUE_{index}"] = value
            env["GIT_CONFIG_COUNT"] = str(count + len(pairs))
            env["MLOPS_GITOPS_TOKEN_FILE"] = str(self.token_file)
            env["MLOPS_GITOPS_USERNAME"] = self.username
        if self.ssh_key_file is not None:
            ssh = ["ssh", "-i", str(self.ssh_key_file), "-o", "IdentitiesOnly=yes"]
            ssh += ["-o", "BatchMode=yes"]
            if self.known_hosts_file is not None:
                ssh += ["-o", f"UserKnownHostsFile={self.known_hosts_file}"]
                ssh += ["-o", "StrictHostKeyChecking=yes"]
            else:
                ssh += ["-o", "StrictHostKeyChecking=accept-new"]
            env["GIT_SSH_COMMAND"] = shlex.join(ssh)
        return env

    def secrets(self) -> list[str]:
        """The token, read only to take it out of messages (``[]`` when unreadable)."""
        if self.token_file is None:
            return []
        try:
            token = self.token_file.read_text().strip()
        except (OSError, UnicodeDecodeError):
            return []
        return [token] if token else []


class GitOpsRepo:
    """One working copy of the GitOps repository.

    Args:
        path: the working copy (created from `source` when missing).
        branch: the branch commits go to.
        remote: optional remote URL/name to push each commit to (no password in it: see
            `GitCredentials`).
        source: the ``platform/`` directory the repository starts from.
        credentials: how git authenticates to `remote` (none: as the environment allows).
    """

    def __init__(
        self,
        path: Path,
        branch: str = "main",
        remote: str | None = None,
        source: Path = REPO_ROOT / "platform",
        credentials: GitCredentials | None = None,
    ) -> None:
        self.path = path
        self.branch = branch
        self.remote = remote
        self.source = source
        self.credentials = credentials or GitCredentials()

    def command(self, *args: str) -> list[str]:
        """The argv of one git command (identity and `args`; credentials are never in it)."""
        return ["git", *IDENTITY, *args]

    def environment(self) -> dict[str, str]:
        """git's environment: this process's plus the credentials' variables."""
        return {**os.environ, **self.credentials.environment()}

    def redact(self, text: str) -> str:
        """`text` without the token or any credential in a URL (see `redact`)."""
        return redact(text, self.credentials.secrets())

    def _run(self, args: list[str], cwd: Path | None, what: str, hint: str) -> str:
        """Run git; a failure is a PipelineError with `what` and git's message, redacted."""
        try:
            done = subprocess.run(
                self.command(*args),
                cwd=cwd,
                env=self.environment(),
                capture_output=True,
                text=True,
                timeout=GIT_TIMEOUT_SECONDS,
            )
        except subprocess.TimeoutExpired:
            raise PipelineError(
                f"{what}: git gave no answer in {GIT_TIMEOUT_SECONDS} s", hint
            ) from None
        except OSError as error:
            raise PipelineError(f"{what}: cannot run git: {error}", hint) from None
        if done.returncode != 0:
            output = (done.stderr.strip() or done.stdout.strip())[-4000:]
            raise PipelineError(self.redact(f"{what}: {output}"), hint)
        return done.stdout.strip()

    def git(self, *args: str) -> str:
        """Run git in the working copy; a failure is a PipelineError with git's message."""
        return self._run(
            list(args),
            self.path,
            f"git {' '.join(args)} failed in {self.path}",
            "check the GitOps repository (MLOPS_GITOPS_REPO) and its branch",
        )

    def remote_url(self) -> str:
        """The remote, once checked: set, and without a password in it.

        Raises:
            PipelineError: without a remote, or when its URL holds a password (redacted).
        """
        if not self.remote:
            raise PipelineError("no GitOps remote is set", "set MLOPS_GITOPS_REMOTE")
        if has_password(self.remote):
            raise PipelineError(
                f"the GitOps remote {self.redact(self.remote)} has a password in its URL",
                "remove it from MLOPS_GITOPS_REMOTE; mount the token as a file and set "
                "MLOPS_GITOPS_TOKEN_FILE (or an SSH deploy key: MLOPS_GITOPS_SSH_KEY_FILE)",
            )
        self.credentials.check()
        return self.remote

    def ensure(self) -> None:
        """Clone the remote (when set) or create the repository from ``platform/`` (one initial
        commit), if the working copy does not exist yet."""
        if (self.path / ".git").exists():
            return
        if self.remote:
            remote = self.remote_url()
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._run(
                ["clone", "-q", "--branch", self.branch, remote, str(self.path)],
                None,
                f"cloning the GitOps repository {remote} failed",
                "check MLOPS_GITOPS_REMOTE, MLOPS_GITOPS_BRANCH and the git credentials",
            )
            return
        self.path.mkdir(parents=True, exist_ok=True)
        shutil.copytree(self.source, self.path / "platform", dirs_exist_ok=True)
        self.git("init", "-q", "-b", self.branch)
        self.git("add", "-A")
        self.git("commit", "-q", "-m", "GitOps repository initialised from platform/")

    def overlay(self, env: str) -> Path:
        """The serving overlay of `env`."""
        envs = (self.path / "platform" / "envs").resolve()
        path = self.path / "platform" / "envs" / env / "kustomization.yaml"
        if path.resolve().parent.parent != envs:
            raise PipelineError(
                f"env {env!r} is not one folder name: its overlay would be outside platform/envs/",
                "use letters, digits and '-' (MLOPS_ENV)",
            )
        if not path.is_file():
            raise PipelineError(
                f"no serving overlay for env {env!r} in the GitOps repository ({path})",
                "add platform/envs/<env>/kustomization.yaml (see platform/envs/dev)",
            )
        return path

    def pinned(self, env: str) -> ServingPin | None:
        """What `env` serves (image tag and model), or None before its first promotion."""
        return read_pin(self.overlay(env))

    def head(self) -> str:
        """The current commit."""
        return self.git("rev-parse", "HEAD")

    def head_message(self) -> str:
        """The current commit's message."""
        return self.git("log", "-1", "--format=%B")

    def sync(self) -> None:
        """Make the working copy the committed state: the remote branch when there is a remote
        (fetched), else HEAD. Leftovers of an interrupted decision — a staged or half-written
        overlay, a local commit never pushed — are discarded, so `pinned` reads what is
        committed and a retry does not mistake a leftover for a pin."""
        self.ensure()
        if self.remote:
            self.git("fetch", "-q", self.remote_url(), self.branch)
            self.git("reset", "-q", "--hard", "FETCH_HEAD")
        else:
            self.git("reset", "-q", "--hard", "HEAD")
        self.git("clean", "-q", "-f", "-d", "--", "platform")

    def pin(self, env: str, pin: ServingPin, message: str) -> str | None:
        """Make `env` serve `pin` (image and model, `pipelines.decisions.pin`) in one commit.
        Returns the commit, or None when `pin` is already what `env` serves (nothing to do)."""
        self.ensure()
        path = self.overlay(env)
        if self.pinned(env) == pin:
            return None
        changed = [str(p.relative_to(self.path)) for p in write_pin(path, pin)]
        try:
            self.git("add", *changed)
            self.git("commit", "-q", "-m", message)
        except PipelineError:
            self.git("reset", "-q", "HEAD", "--", *changed)
            self.git("checkout", "HEAD", "--", *changed)
            raise
        commit = self.head()
        if self.remote:
            try:
                self.git("push", "-q", self.remote_url(), f"HEAD:{self.branch}")
            except PipelineError:
                # An unpushed commit is not a decision: drop it, so the working copy agrees
                # with the remote again and a retry commits and pushes anew.
                self.git("reset", "-q", "--hard", "HEAD~1")
                raise
        return commit

    def log(self, limit: int = 20) -> list[str]:
        """Recent commit subjects, newest first."""
        return self.git("log", f"-{limit}", "--format=%H %s").splitlines()

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Serialize decisions that move aliases and pins (one at a time per repository)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with (self.path.parent / f".{self.path.name}.lock").open("w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
