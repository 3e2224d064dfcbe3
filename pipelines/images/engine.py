"""podman as this machine runs it: rootful, runc with the cgroupfs manager, its own storage
under a cache folder outside the repository (so a clean clone reuses it), ulimits at or below
the current hard limits (podman's defaults exceed them here and every container fails)."""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pipelines.errors import PipelineError

CACHE_ENV = "MLOPS_IMAGES_CACHE"
"""The cache folder: stand-in rootfs tarballs and podman's storage (default
``~/.cache/mlops-images``)."""
INSTALL_HINT = "install them: apt-get install podman runc uidmap mmdebstrap (Debian)"
ULIMIT_CAP = 65536
"""Highest soft/hard limit handed to a container (below it, the machine's hard limit)."""


def cache_root() -> Path:
    """``$MLOPS_IMAGES_CACHE`` or ``~/.cache/mlops-images``."""
    given = os.environ.get(CACHE_ENV)
    return Path(given) if given else Path.home() / ".cache" / "mlops-images"


def require_tools(*names: str) -> None:
    """Fail with one line naming the missing programs.

    Raises:
        PipelineError: a program is not on PATH.
    """
    missing = [name for name in names if shutil.which(name) is None]
    if missing:
        raise PipelineError(f"{', '.join(missing)} not found on PATH", INSTALL_HINT)


def _pid_max() -> int:
    try:
        return int(Path("/proc/sys/kernel/pid_max").read_text())
    except (OSError, ValueError):
        return 32768


def ulimit_flags() -> list[str]:
    """``--ulimit nofile=N:N --ulimit nproc=M:M`` at or below this process's hard limits (and
    nproc at or below the kernel's pid_max: runc is refused a higher one here)."""
    flags = []
    caps = {"nofile": ULIMIT_CAP, "nproc": min(ULIMIT_CAP, _pid_max())}
    for name, which in (("nofile", resource.RLIMIT_NOFILE), ("nproc", resource.RLIMIT_NPROC)):
        hard = resource.getrlimit(which)[1]
        value = caps[name] if hard == resource.RLIM_INFINITY else min(hard, caps[name])
        flags += ["--ulimit", f"{name}={value}:{value}"]
    return flags


@dataclass(frozen=True)
class Podman:
    """One podman storage (``--root``) and its run state (``--runroot``)."""

    root: Path
    runroot: Path

    def argv(self, *args: str) -> list[str]:
        """The full command line of ``podman ARGS`` on this storage."""
        return [
            "podman",
            "--root",
            str(self.root),
            "--runroot",
            str(self.runroot),
            "--runtime",
            "runc",
            "--cgroup-manager",
            "cgroupfs",
            "--storage-driver",
            "overlay",
            "--events-backend",
            "file",
            *args,
        ]

    def run(self, *args: str, timeout: float = 120, log: Path | None = None, what: str = "") -> str:
        """Run ``podman ARGS``; its stdout (or, with `log`, everything appended to `log`).

        Raises:
            PipelineError: podman failed or timed out (naming `what` and where its output is).
        """
        command = self.argv(*args)
        what = what or f"podman {args[0]}"
        try:
            if log is None:
                done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
                output, errors = done.stdout, done.stderr
            else:
                with log.open("a") as sink:
                    done = subprocess.run(
                        command, stdout=sink, stderr=subprocess.STDOUT, text=True, timeout=timeout
                    )
                output, errors = "", f"see {log}"
        except subprocess.TimeoutExpired:
            raise PipelineError(f"{what} did not finish within {timeout:.0f}s") from None
        if done.returncode != 0:
            raise PipelineError(f"{what} failed (exit {done.returncode}): {errors.strip()[-600:]}")
        return output

    def image_exists(self, ref: str) -> bool:
        """`ref` is in this storage (never pulled)."""
        done = subprocess.run(
            self.argv("image", "exists", ref), capture_output=True, timeout=60, check=False
        )
        return done.returncode == 0

    def inspect_image(self, ref: str) -> dict[str, object]:
        """``podman image inspect`` of `ref`.

        Raises:
            PipelineError: the image is not in this storage.
        """
        document = json.loads(self.run("image", "inspect", ref, what=f"inspect {ref}"))
        return dict(document[0])


def podman_for(key: str) -> Podman:
    """The podman storage of stand-in recipe `key` under the cache folder (one per recipe: a
    new base invalidates every layer built on it)."""
    # podman refuses a runroot path over 50 characters: its run state (gone at reboot anyway)
    # lives in the temp folder
    runroot = Path(tempfile.gettempdir()) / f"mlops-podman-{key[:12]}"
    return Podman(root=cache_root() / f"podman-{key[:16]}", runroot=runroot)
