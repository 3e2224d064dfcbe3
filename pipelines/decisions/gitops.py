"""The GitOps repository: promotion and rollback change the Bento an env's serving overlay pins
(``platform/envs/<env>/kustomization.yaml``, ``images[0].newTag``) in one commit each.

Locally the repository is ``$MLOPS_HOME/gitops`` (``MLOPS_GITOPS_REPO``), initialised from this
checkout's ``platform/``; on the cluster it is a clone of the repo ArgoCD watches, pushed to
``MLOPS_GITOPS_REMOTE`` when set. Gates are serialized by a lock file.
"""

from __future__ import annotations

import contextlib
import fcntl
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

from pipelines.errors import PipelineError
from pipelines.settings import REPO_ROOT
from pipelines.storage import write_file_atomic

PIN = re.compile(r"^(?P<lead>\s+newTag:\s*)(?P<tag>\S+)\s*$", re.MULTILINE)
IDENTITY = ["-c", "user.name=mlops-platform", "-c", "user.email=mlops-platform@localhost"]


class GitOpsRepo:
    """One working copy of the GitOps repository.

    Args:
        path: the working copy (created from `source` when missing).
        branch: the branch commits go to.
        remote: optional remote URL/name to push each commit to.
        source: the ``platform/`` directory the repository starts from.
    """

    def __init__(
        self,
        path: Path,
        branch: str = "main",
        remote: str | None = None,
        source: Path = REPO_ROOT / "platform",
    ) -> None:
        self.path = path
        self.branch = branch
        self.remote = remote
        self.source = source

    def git(self, *args: str) -> str:
        """Run git in the working copy; a failure is a PipelineError with git's message."""
        done = subprocess.run(
            ["git", *IDENTITY, *args], cwd=self.path, capture_output=True, text=True
        )
        if done.returncode != 0:
            raise PipelineError(
                f"git {' '.join(args)} failed in {self.path}: {done.stderr.strip()}",
                "check the GitOps repository (MLOPS_GITOPS_REPO) and its branch",
            )
        return done.stdout.strip()

    def ensure(self) -> None:
        """Clone the remote (when set) or create the repository from ``platform/`` (one initial
        commit), if the working copy does not exist yet."""
        if (self.path / ".git").exists():
            return
        if self.remote:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            done = subprocess.run(
                ["git", "clone", "-q", "--branch", self.branch, self.remote, str(self.path)],
                capture_output=True,
                text=True,
            )
            if done.returncode != 0:
                raise PipelineError(
                    f"cloning the GitOps repository {self.remote} failed: {done.stderr.strip()}",
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
        path = self.path / "platform" / "envs" / env / "kustomization.yaml"
        if not path.is_file():
            raise PipelineError(
                f"no serving overlay for env {env!r} in the GitOps repository ({path})",
                "add platform/envs/<env>/kustomization.yaml (see platform/envs/dev)",
            )
        return path

    def pinned(self, env: str) -> str:
        """The Bento version `env` serves (the overlay's image tag)."""
        matches = PIN.findall(self.overlay(env).read_text())
        if len(matches) != 1:
            raise PipelineError(f"{self.overlay(env)}: expected exactly one images[].newTag")
        return str(matches[0][1])

    def head(self) -> str:
        """The current commit."""
        return self.git("rev-parse", "HEAD")

    def pin(self, env: str, tag: str, message: str) -> str | None:
        """Make `env` serve Bento version `tag` in one commit. Returns the commit, or None when
        `tag` is already pinned (nothing to do)."""
        self.ensure()
        path = self.overlay(env)
        if self.pinned(env) == tag:
            return None
        text = PIN.sub(lambda m: f"{m.group('lead')}{tag}", path.read_text())
        write_file_atomic(path, text.encode())
        try:
            self.git("add", str(path.relative_to(self.path)))
            self.git("commit", "-q", "-m", message)
        except PipelineError:
            self.git("checkout", "HEAD", "--", str(path.relative_to(self.path)))
            raise
        commit = self.head()
        if self.remote:
            self.git("push", "-q", self.remote, f"HEAD:{self.branch}")
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
