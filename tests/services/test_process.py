"""PID records and service configuration, in-process (no service is started)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from pipelines.errors import PipelineError
from pipelines.services.config import (
    PORT_BASE_ENV,
    ServicesPaths,
    load_credentials,
    ports,
    write_private,
)
from pipelines.services.process import PidFile, start_ticks, stop


def test_a_pid_reused_by_another_process_is_stale_and_never_signalled(tmp_path: Path):
    # our own PID with another start time: what a record looks like after a reboot or a crash,
    # when the kernel gave the service's PID to some other process
    pid_file = PidFile(tmp_path / "run" / "postgres.pid")
    ticks = start_ticks(os.getpid())
    assert ticks is not None
    pid_file.path.parent.mkdir()
    pid_file.path.write_text(json.dumps({"pid": os.getpid(), "start_ticks": ticks + 1}))
    assert pid_file.running() is None
    assert stop("postgres", pid_file) is False  # would SIGTERM this very test otherwise
    assert not pid_file.path.exists()


def test_the_live_recorded_process_is_running(tmp_path: Path):
    pid_file = PidFile(tmp_path / "x.pid")
    pid_file.write(os.getpid())
    assert pid_file.running() == os.getpid()


@pytest.mark.parametrize("content", ["", "{", '{"pid": "x"}', "[]"])
def test_an_unreadable_record_is_no_record(tmp_path: Path, content: str):
    path = tmp_path / "x.pid"
    path.write_text(content)
    assert PidFile(path).running() is None


def test_credentials_are_generated_once_and_private(tmp_path: Path):
    paths = ServicesPaths(tmp_path / "services")
    with pytest.raises(PipelineError, match="mlops services up"):
        load_credentials(paths, create=False)
    first = load_credentials(paths, create=True)
    assert stat.S_IMODE(paths.credentials.stat().st_mode) == 0o600
    assert load_credentials(paths, create=True) == first
    assert first.s3_secret_key != first.mlflow_db_password
    paths.credentials.write_text("{}")
    with pytest.raises(PipelineError, match="not a valid credentials file"):
        load_credentials(paths, create=False)


def test_write_private_never_widens_the_mode(tmp_path: Path):
    target = tmp_path / "secret"
    target.write_text("old")
    target.chmod(0o644)
    write_private(target, "new")
    assert target.read_text() == "new" and stat.S_IMODE(target.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["secret"]


@pytest.mark.parametrize("base", ["abc", "80", "65530", "-1"])
def test_a_bad_port_base_is_one_clear_error(monkeypatch: pytest.MonkeyPatch, base: str):
    monkeypatch.setenv(PORT_BASE_ENV, base)
    with pytest.raises(PipelineError, match=PORT_BASE_ENV):
        ports()


def test_ports_follow_the_base(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(PORT_BASE_ENV, "30000")
    found = ports()
    assert found["postgres"] == 30000 and found["s3"] == 30001 and found["mlflow"] == 30002
    assert len(set(found.values())) == len(found)
