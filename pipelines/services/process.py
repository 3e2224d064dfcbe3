"""One detached process group per service: started with its PID recorded, stopped by PID.

A PID file holds the PID and the process's start time (``/proc/<pid>/stat`` field 22), so a
PID the kernel reused for another process after a crash is never taken for the service (nor
signalled). Linux only, like the rest of the platform.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines.errors import PipelineError

STOP_TIMEOUT = 30.0
"""Seconds a service's process group has to exit after its stop signal before SIGKILL."""
KILL_TIMEOUT = 10.0
"""Seconds after SIGKILL before a process that is still there is reported."""


def _stat_fields(pid: int) -> list[str] | None:
    """``/proc/<pid>/stat`` after the command name (field 3 on), or None if no such process."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return raw[raw.rfind(")") + 2 :].split()


def start_ticks(pid: int) -> int | None:
    """When `pid` started (clock ticks after boot), or None if it is gone or a zombie."""
    fields = _stat_fields(pid)
    if fields is None or fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes whose process group is `pgid`."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is not None and fields[0] not in ("Z", "X") and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return sorted(members)


@dataclass(frozen=True)
class PidFile:
    """Where one service's PID is recorded, e.g. ``services/run/postgres.pid``."""

    path: Path

    def read(self) -> tuple[int, int] | None:
        """(pid, start ticks) recorded, or None when there is no (readable) record."""
        try:
            record = json.loads(self.path.read_text())
            return int(record["pid"]), int(record["start_ticks"])
        except (FileNotFoundError, ValueError, KeyError, TypeError):
            return None

    def running(self) -> int | None:
        """The recorded PID if that very process is still alive, else None."""
        record = self.read()
        if record is None:
            return None
        pid, ticks = record
        return pid if start_ticks(pid) == ticks else None

    def write(self, pid: int) -> None:
        """Record `pid` (and its start time) whole: a temp file, then rename."""
        ticks = start_ticks(pid)
        if ticks is None:
            raise PipelineError(f"process {pid} exited as soon as it started")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.write_text(json.dumps({"pid": pid, "start_ticks": ticks}))
        os.replace(tmp, self.path)

    def clear(self) -> None:
        """Forget the record (the process is gone)."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def as_user(user: str | None) -> dict[str, Any]:
    """``subprocess`` keywords that run a child as `user` with that account's group only (no
    supplementary groups of ours), or nothing for None."""
    if user is None:
        return {}
    account = pwd.getpwnam(user)
    return {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}


def spawn(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    log: Path,
    pid_file: PidFile,
    cwd: Path,
    user: str | None = None,
) -> int:
    """Start `argv` detached in its own session (its own process group), appending its output
    to `log`; records and returns its PID. `user` runs it as that account (we are root)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        process = subprocess.Popen(
            list(argv),
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            **as_user(user),
        )
    # The service outlives this command: mark the handle as done so Python does not warn.
    process.returncode = 0
    pid_file.write(process.pid)
    return process.pid


def _wait_gone(pgid: int, timeout: float) -> bool:
    """Poll until the process group `pgid` has no live member, at most `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while group_members(pgid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.2)
    return True


def stop(name: str, pid_file: PidFile, stop_signal: int = signal.SIGTERM) -> bool:
    """Stop the service's process group: `stop_signal`, then SIGKILL after `STOP_TIMEOUT`.

    Returns True if it was running. A stale record (process gone, or the PID reused by
    another process) is removed without signalling anything.

    Raises:
        PipelineError: if a process of the group is still there after SIGKILL.
    """
    pid = pid_file.running()
    if pid is None:
        pid_file.clear()
        return False
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, stop_signal)
    if not _wait_gone(pid, STOP_TIMEOUT):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        if not _wait_gone(pid, KILL_TIMEOUT):
            raise PipelineError(
                f"{name} (process group {pid}) is still running after SIGKILL: "
                f"{group_members(pid)}",
                "check `ps -g " + str(pid) + "` and stop it by hand",
            )
    pid_file.clear()
    return True
