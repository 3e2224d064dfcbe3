"""Stale temporary files (issue 15 #13): a writer killed mid-write leaves its temp behind; the
next write sweeps it once it is older than `STALE_TEMP_SECONDS`, never a live writer's, and no
temp is ever visible as data."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipelines.storage import STALE_TEMP_SECONDS, LocalStorage, write_file_atomic
from tests.conftest import REPO

pytestmark = pytest.mark.hostile
KEY = "runs/r/steps/train.json"
HOURS_AGO = time.time() - 2 * 3600

WRITER = """
import sys
from pathlib import Path
from pipelines.storage import LocalStorage

storage = LocalStorage(Path(sys.argv[1]))
data = b"x" * (64 << 20)
print("writing", flush=True)
while True:  # until killed: most of each loop is spent writing the temp
    storage.write_bytes(sys.argv[2], data)
"""


def kill_mid_write(root: Path) -> list[Path]:
    """Start a writer, SIGKILL it while a temp exists; returns the temps it left behind."""
    for _ in range(5):  # the kill may land between a rename and the next temp: try again
        writer = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(root), KEY],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert writer.stdout is not None and writer.stdout.readline() == "writing\n"
            deadline = time.monotonic() + 20
            while not any((root / ".tmp").glob("*")) and time.monotonic() < deadline:
                time.sleep(0.001)
        finally:
            os.kill(writer.pid, signal.SIGKILL)
            writer.wait(timeout=10)
        left = sorted((root / ".tmp").glob("*"))
        if left:
            return left
    raise AssertionError("the writer never died holding a temp in 5 tries")


def test_the_bound_is_an_hour() -> None:
    assert STALE_TEMP_SECONDS == 3600


@pytest.mark.integration  # a real writer process, killed with SIGKILL
def test_a_temp_left_by_a_kill_is_invisible_then_swept_once_stale(tmp_path: Path) -> None:
    root = tmp_path / "data"
    left = kill_mid_write(root)
    storage = LocalStorage(root)
    # never visible as data: not listed, not addressable, the key itself whole or absent
    assert storage.list("") == ([KEY] if storage.exists(KEY) else [])
    assert not storage.exists(KEY) or len(storage.read_bytes(KEY)) == 64 << 20
    with pytest.raises(ValueError, match=r"outside \.tmp/"):
        storage.exists(f".tmp/{left[0].name}")

    # just killed, it looks like a live writer's temp: the next write keeps it
    storage.write_bytes("runs/r/params.json", b"{}")
    assert all(p.exists() for p in left)

    # once older than the bound, the next storage to write removes it, and only it
    for p in left:
        os.utime(p, (HOURS_AGO, HOURS_AGO))
    live = root / ".tmp" / "params.json.0123abcd"
    live.write_bytes(b"a live writer's half file")
    LocalStorage(root).write_bytes("runs/r/params.json", b"{}")
    assert [p for p in left if p.exists()] == [] and live.exists()


def test_a_storage_sweeps_again_after_an_hour(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    storage.write_bytes("a", b"1")  # the first write sweeps (nothing yet)
    stale = tmp_path / ".tmp" / "b.deadbeef"  # what a killed writer leaves (simulated)
    stale.write_bytes(b"half")
    os.utime(stale, (HOURS_AGO, HOURS_AGO))
    storage.write_bytes("a", b"2")
    assert stale.exists(), "swept at most hourly, not on every write"
    assert storage._swept_at is not None
    storage._swept_at -= STALE_TEMP_SECONDS + 1  # an hour later, for this storage
    storage.write_bytes("a", b"3")
    assert not stale.exists() and storage.read_bytes("a") == b"3"


def test_a_temp_beside_a_file_is_swept_by_the_next_write_of_that_file(tmp_path: Path) -> None:
    # write_file_atomic without a temp dir (GitOps overlays, rendered workflows): the temps a
    # killed writer would leave beside the file, simulated by creating them
    target = tmp_path / "kustomization.yaml"
    stale = tmp_path / ".kustomization.yaml.0123456789abcdef.tmp"
    young = tmp_path / ".kustomization.yaml.fedcba9876543210.tmp"
    other = tmp_path / ".other.yaml.0123456789abcdef.tmp"
    for p in (stale, young, other):
        p.write_text("half")
    for p in (stale, other):
        os.utime(p, (HOURS_AGO, HOURS_AGO))
    write_file_atomic(target, b"whole")
    assert target.read_bytes() == b"whole"
    assert not stale.exists() and young.exists() and other.exists()
