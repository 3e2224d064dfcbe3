"""The inference log while its storage fails (issue 15 #7), in-process with fake storages:
backoff instead of a retry storm, a bounded buffer whose drops are counted, and a spill to
local disk at shutdown that the next start sends on."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from bentos.inference_log import MAX_BUFFERED_ROWS, Chunk, InferenceLog
from bentos.log_spill import Backoff, Spill
from pipelines.decisions.inference import read_inference
from pipelines.storage import LocalStorage

FEATURES = ("a", "b")


class DownStorage(LocalStorage):
    """A storage that refuses writes while `down` is set, recording when each was tried."""

    def __init__(self, root: Path, down: bool = True) -> None:
        super().__init__(root)
        self.down = threading.Event()
        if down:
            self.down.set()
        self.attempts: list[float] = []

    def write_bytes(self, key: str, data: bytes) -> None:
        self.attempts.append(time.monotonic())
        if self.down.is_set():
            raise ConnectionError("storage unreachable")
        super().write_bytes(key, data)


def chunk(request_id: str, n: int) -> Chunk:
    rng = np.random.default_rng(len(request_id))
    return Chunk(
        request_id,
        "predict",
        1_709_251_200_000,
        rng.normal(size=(n, 2)),
        rng.uniform(size=n),
        ["BTCUSDT"] * n,
        [1_709_251_200_000] * n,
    )


def test_backoff_doubles_up_to_its_cap_with_jitter() -> None:
    backoff = Backoff(0.5, 4.0)
    assert [backoff.nominal(k) for k in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert backoff.nominal(10**6) == 4.0, "no overflow after a long outage"
    draws = [backoff.delay(3) for _ in range(200)]
    assert all(1.0 <= d <= 2.0 for d in draws)
    assert max(draws) - min(draws) > 0.5, "jittered: replicas do not retry in step"


def test_a_failing_storage_is_retried_with_backoff_not_on_every_batch(tmp_path: Path) -> None:
    """Steady traffic with a full batch on every request during a 2-s outage: the writer tries
    at the backoff's pace (it used to try every flush and on every full batch)."""
    storage = DownStorage(tmp_path)
    logger = InferenceLog(
        storage, "local", "3", FEATURES, flush_seconds=0.05, batch_rows=4, retry_max_seconds=0.8
    )
    logger.start()
    start = time.monotonic()
    while time.monotonic() - start < 2.0:
        logger.append(chunk("r", 4))  # each append is a full batch
        time.sleep(0.005)
    tries = list(storage.attempts)
    gaps = np.diff(tries)
    # each wait is at least half its nominal value: 0.025, 0.05, 0.1, 0.2, 0.4, 0.4, …
    for k, gap in enumerate(gaps, start=1):
        assert gap >= 0.5 * logger.backoff.nominal(k) * 0.95, (k, gaps)
    assert 3 <= len(tries) <= 9, tries  # without backoff: ~40 rounds and ~300 batch wakes
    storage.down.clear()
    logger.close()
    assert logger.stats.pending == 0 and logger.stats.rows_dropped == 0
    assert read_inference(storage, "local", "3").num_rows == logger.stats.rows_logged


def test_the_writer_recovers_when_the_storage_comes_back(tmp_path: Path) -> None:
    storage = DownStorage(tmp_path)
    logger = InferenceLog(
        storage, "local", "3", FEATURES, flush_seconds=0.02, retry_max_seconds=0.2
    )
    logger.start()
    logger.append(chunk("r1", 3))
    deadline = time.monotonic() + 5
    while logger.failures < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert logger.failures >= 3
    storage.down.clear()
    while not storage.list("inference/") and time.monotonic() < deadline:
        time.sleep(0.01)
    assert read_inference(storage, "local", "3").num_rows == 3
    assert logger.failures == 0, "back to the flush cadence"
    logger.close()


def test_the_buffer_is_bounded_and_every_dropped_row_is_counted(tmp_path: Path) -> None:
    """Bounded as rows arrive, not only when a write fails (a backoff can last a minute)."""
    default = InferenceLog(DownStorage(tmp_path), "local", "3", FEATURES)
    assert default.max_pending_rows == MAX_BUFFERED_ROWS  # what the service runs with
    counted: list[int] = []
    logger = InferenceLog(
        DownStorage(tmp_path), "local", "3", FEATURES, max_pending_rows=10, on_drop=counted.append
    )
    for k in range(6):
        logger.append(chunk(f"r{k}", 4))
        assert logger.stats.pending <= 10
    assert logger.stats.rows_dropped == 24 - logger.stats.pending == sum(counted) > 0
    assert logger.flush() is False
    assert logger.stats.pending <= 10 and sum(counted) == logger.stats.rows_dropped


def test_a_shutdown_during_an_outage_spills_and_the_next_start_sends_it(tmp_path: Path) -> None:
    spill_dir = tmp_path / "spill"
    storage = DownStorage(tmp_path / "data")
    logger = InferenceLog(storage, "local", "3", FEATURES, spill_dir=spill_dir)
    for k in range(3):
        logger.append(chunk(f"req-{k}", 5))
    assert logger.flush() is False
    logger.close()
    assert not storage.list("inference/")
    spill = Spill(spill_dir)
    keys = spill.keys("local")
    assert len(keys) == 1 and keys[0].startswith("inference/local/3/2024-03-01/")
    kept = read_inference(spill.disk, "local", "3")
    assert kept.num_rows == 15 and logger.stats.rows_spilled == 15 and logger.stats.pending == 0
    files = [p for p in spill_dir.rglob("*") if p.is_file()]
    assert [p.relative_to(spill_dir).as_posix() for p in files] == keys, "no partial file"

    # the next start: the storage fails once more, then works; the spill reaches it
    storage.down.clear()
    storage.attempts.clear()
    flaky = DownStorage(tmp_path / "data")
    failed_once = threading.Event()

    def write_bytes(key: str, data: bytes) -> None:
        if not failed_once.is_set():
            failed_once.set()
            raise ConnectionError("not yet")
        LocalStorage.write_bytes(flaky, key, data)

    flaky.write_bytes = write_bytes  # type: ignore[method-assign]
    again = InferenceLog(flaky, "local", "3", FEATURES, flush_seconds=0.02, spill_dir=spill_dir)
    again.start()
    deadline = time.monotonic() + 5
    while spill.keys("local") and time.monotonic() < deadline:
        time.sleep(0.01)
    again.close()
    assert failed_once.is_set() and not spill.keys("local")
    stored = read_inference(flaky, "local", "3")
    assert stored.column("request_id").to_pylist() == kept.column("request_id").to_pylist()
    assert again.stats.rows_resent == 15 and again.stats.write_failures == 1


def test_a_failed_spill_counts_the_rows_as_dropped(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("x")
    counted: list[int] = []
    logger = InferenceLog(
        DownStorage(tmp_path / "data"),
        "local",
        "3",
        FEATURES,
        spill_dir=blocker / "spill",
        on_drop=counted.append,
    )
    logger.append(chunk("r1", 4))
    assert logger.flush() is False
    logger.close()
    assert counted == [4] and logger.stats.rows_dropped == 4 and logger.stats.pending == 0


def test_a_spill_is_only_sent_to_its_own_env(tmp_path: Path) -> None:
    spill = Spill(tmp_path / "spill")
    spill.save("inference/staging/3/2024-03-01/x.parquet", b"not sent to local")
    storage = LocalStorage(tmp_path / "data")
    assert spill.resend("local", storage) == 0
    assert not storage.list("inference/") and spill.keys("staging")


@pytest.mark.parametrize("healthy", [True, False])
def test_close_without_a_spill_dir_keeps_the_old_contract(tmp_path: Path, healthy: bool) -> None:
    storage = DownStorage(tmp_path, down=not healthy)
    logger = InferenceLog(storage, "local", "3", FEATURES)
    logger.append(chunk("r1", 2))
    logger.close(attempts=2, backoff=0.01)
    assert bool(storage.list("inference/")) is healthy
    assert len(storage.attempts) == (1 if healthy else 2)


def test_the_lag_is_the_age_of_the_oldest_unwritten_row_and_the_writer_reports_it(
    tmp_path: Path,
) -> None:
    storage = DownStorage(tmp_path / "data")
    lags: list[float] = []
    log = InferenceLog(
        storage,
        "local",
        "1",
        FEATURES,
        flush_seconds=0.05,
        retry_max_seconds=0.2,
        on_lag=lags.append,
    )
    assert log.lag_seconds() == 0.0
    log.append(chunk("old", 2))  # its rows were answered at 1_709_251_200_000 ms
    log.append(chunk("new", 1))
    assert log.lag_seconds(now_ms=1_709_251_207_500) == 7.5
    log.start()
    deadline = time.monotonic() + 10
    while not (lags and lags[-1] > 0) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert lags and lags[-1] > 0, "while the storage is down the writer reports a growing lag"
    storage.down.clear()
    while lags[-1] != 0.0 and time.monotonic() < deadline:
        time.sleep(0.02)
    log.close()
    assert lags[-1] == 0.0, "once written, nothing waits"
