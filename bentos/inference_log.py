"""Inference log: every prediction, written as Parquet under ``inference/`` off the request path.

A request only appends its rows to an in-memory buffer (microseconds). A background thread
writes the buffer every `flush_seconds` (or sooner when `batch_rows` are waiting) as one Parquet
object per model version and day. A failed write keeps the rows; the next attempt waits an
exponential backoff (capped, jittered: ``log_spill.Backoff``), and a full batch does not wake
the writer early while the storage fails. At most `MAX_BUFFERED_ROWS` rows are kept: the oldest
beyond it are dropped and counted (``on_drop``). Failures are counted, never raised into a
request. `close()` writes what is left; if the storage is failing, it spills the rows to a local
directory (atomic files) instead, and the next `start()` sends the spilled files to the storage
before deleting them — nothing acknowledged is lost on a clean shutdown during an outage.

The writer's whole state is this class (`append` from requests; `start`, `flush`, `close` from
the service's lifecycle), so it can move to another thread, process or writer as it is.
"""

from __future__ import annotations

import io
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import chain
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from bentos.log_spill import Backoff, Spill
from bentos.shadow import SERVED, Shadow
from pipelines import layout
from pipelines.storage import Storage

log = logging.getLogger(__name__)


@dataclass
class Chunk:
    """The rows of one request."""

    request_id: str
    endpoint: str
    timestamp_ms: int
    features: np.ndarray
    probability_up: np.ndarray
    symbols: Sequence[str | None]
    open_times: Sequence[int | None]


MAX_BUFFERED_ROWS = 200_000
"""Rows kept in memory while the storage fails (~45 MB with ~20 features; at 775 single-row
requests a second, about four minutes of traffic). Beyond it the oldest are dropped and
counted; it also bounds one spill file (~40 MB of Parquet, under the pod's 256 MiB /tmp)."""

RETRY_MAX_SECONDS = 60.0
"""Longest wait between two write attempts while the storage fails."""


@dataclass
class LogStats:
    """Counters exported as Prometheus metrics."""

    rows_logged: int = 0
    rows_written: int = 0
    files_written: int = 0
    write_failures: int = 0
    rows_dropped: int = 0
    rows_spilled: int = 0
    rows_resent: int = 0
    last_error: str | None = None
    pending: int = field(default=0)


class InferenceLog:
    """Buffered, background, retrying Parquet writer of predictions.

    Args:
        storage: the storage layout (local directory or S3).
        env: environment name (first level under ``inference/``).
        model_version: the registry version being served.
        features: feature names, in model column order.
        flush_seconds: longest time a row waits in memory while the storage works; also the
            first wait of the backoff after a failed write.
        batch_rows: write sooner once this many rows are waiting (not while in backoff).
        max_pending_rows: rows kept while the storage fails; the oldest beyond it are dropped.
        retry_max_seconds: the backoff's cap.
        spill_dir: where `close()` keeps the rows it could not write (None: nowhere).
        on_failure: called after each failed write (e.g. a Prometheus counter's ``inc``).
        on_drop: called with the number of rows dropped (e.g. a Prometheus counter's ``inc``).
        on_lag: called by the writer thread, after each flush attempt or idle wait, with the
            age in seconds of the oldest row not yet written (0: none), e.g. a gauge's ``set``.
        shadow: a challenger to score every logged row with, off the request path (None: no
            shadow). Its rows go into the same object, role ``shadow``.
        on_shadow_failure: called when scoring a flush in shadow fails (its served rows are
            still written; the shadow rows of that flush are not).
    """

    def __init__(
        self,
        storage: Storage,
        env: str,
        model_version: str,
        features: Sequence[str],
        flush_seconds: float = 2.0,
        batch_rows: int = 5_000,
        max_pending_rows: int = MAX_BUFFERED_ROWS,
        retry_max_seconds: float = RETRY_MAX_SECONDS,
        spill_dir: Path | None = None,
        on_failure: Callable[[], object] | None = None,
        on_drop: Callable[[int], object] | None = None,
        on_lag: Callable[[float], object] | None = None,
        shadow: Shadow | None = None,
        on_shadow_failure: Callable[[], object] | None = None,
    ) -> None:
        self.storage = storage
        self.env = env
        self.model_version = model_version
        self.features = list(features)
        self.flush_seconds = flush_seconds
        self.batch_rows = batch_rows
        self.max_pending_rows = max_pending_rows
        self.backoff = Backoff(flush_seconds, max(retry_max_seconds, flush_seconds))
        self.spill = Spill(spill_dir) if spill_dir is not None else None
        self.on_failure = on_failure
        self.on_drop = on_drop
        self.on_lag = on_lag
        self.shadow = shadow
        self.on_shadow_failure = on_shadow_failure
        self.stats = LogStats()
        self.failures = 0
        """Consecutive failed write attempts (0 while the storage works)."""
        self._retry_at = 0.0
        self._spilled = self.spill is not None
        self._pending: deque[Chunk] = deque()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._write_lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the background writer (idempotent); it first re-sends what an earlier run
        spilled. The first Arrow conversion of a UTC timestamp costs ~1 s (time-zone setup)
        with the GIL held; it is paid here, before the service reports ready, not by whichever
        requests arrive during the first flush."""
        if self._thread is None:
            width = len(self.features)
            self.to_table([Chunk("warm-up", "", 0, np.zeros((1, width)), np.zeros(1), [None], [0])])
            self._thread = threading.Thread(target=self._loop, name="inference-log", daemon=True)
            self._thread.start()

    def append(self, chunk: Chunk) -> None:
        """Queue one request's rows; never raises into the request."""
        with self._lock:
            self._pending.append(chunk)
            self.stats.rows_logged += len(chunk.probability_up)
            self.stats.pending += len(chunk.probability_up)
            dropped = self._bound()
            wake = self.stats.pending >= self.batch_rows and not self.failures
        if dropped:
            self._dropped(dropped)
        if wake:
            self._wake.set()

    def _loop(self) -> None:
        if self._spilled:
            self._resend()
        while not self._stop.is_set():
            if self.failures:  # backoff: only the stop ends the wait early
                self._stop.wait(max(0.0, self._retry_at - time.monotonic()))
            else:
                self._wake.wait(self.flush_seconds)
                self._wake.clear()
            if self._stop.is_set():
                return
            if self._spilled and not self._resend():
                continue
            with self._lock:
                idle = not self._pending
            if idle:
                self.failures = 0  # nothing tried: back to the flush cadence
            else:
                self.flush()
            if self.on_lag is not None:
                self.on_lag(self.lag_seconds())

    def lag_seconds(self, now_ms: int | None = None) -> float:
        """Age of the oldest row not yet written, in seconds (0 when none is waiting)."""
        with self._lock:
            oldest = self._pending[0].timestamp_ms if self._pending else None
        if oldest is None:
            return 0.0
        return max(0.0, ((now_ms if now_ms is not None else time.time() * 1000) - oldest) / 1000)

    def _resend(self) -> bool:
        """Send what a spill holds; False (and a counted failure) if the storage refused."""
        assert self.spill is not None
        try:
            rows = self.spill.resend(self.env, self.storage)
        except Exception as error:
            self._failed(error)
            return False
        self._spilled = False
        with self._lock:
            self.stats.rows_resent += rows
        return True

    def flush(self) -> bool:
        """Write everything pending; on failure keep it for the next try. True if all written."""
        with self._write_lock:
            # Under the lock that `append` (the request path) takes, only O(1) work while the
            # log works, and O(rows appended meanwhile) after a failure — never O(backlog).
            with self._lock:
                chunks, self._pending = self._pending, deque()
            if not chunks:
                return True
            try:
                key, data, written = self._encode(list(chunks))
                self.storage.write_bytes(key, data)
            except Exception as error:  # storage down, credentials expired, disk full …
                with self._lock:
                    chunks.extend(self._pending)  # the kept rows first, then the new ones
                    self._pending = chunks
                    dropped = self._bound()
                if dropped:
                    self._dropped(dropped)
                self._failed(error)
                return False
            self.failures = 0
            with self._lock:
                self.stats.rows_written += written
                self.stats.files_written += 1
                self.stats.pending -= written
                self.stats.last_error = None
            return True

    def _failed(self, error: Exception) -> None:
        self.failures += 1
        delay = self.backoff.delay(self.failures)
        self._retry_at = time.monotonic() + delay
        with self._lock:
            self.stats.write_failures += 1
            self.stats.last_error = f"{type(error).__name__}: {error}"
        log.warning("inference log write failed (next try in %.1f s): %s", delay, error)
        if self.on_failure is not None:
            self.on_failure()

    def _bound(self) -> int:
        """Drop the oldest rows beyond `max_pending_rows` (lock held); how many were dropped."""
        dropped = 0
        while self.stats.pending > self.max_pending_rows and self._pending:
            n = len(self._pending.popleft().probability_up)
            self.stats.rows_dropped += n
            self.stats.pending -= n
            dropped += n
        return dropped

    def _dropped(self, rows: int) -> None:
        log.warning("inference log: %d rows dropped (buffer full while the storage fails)", rows)
        if self.on_drop is not None:
            self.on_drop(rows)

    def _encode(self, chunks: list[Chunk]) -> tuple[str, bytes, int]:
        """The storage key, Parquet bytes and row count of one object holding `chunks`."""
        table = self.to_table(chunks)
        day = datetime.fromtimestamp(chunks[0].timestamp_ms / 1000, UTC).date()
        name = f"{int(time.time() * 1000)}-{uuid.uuid4().hex[:8]}.parquet"
        sink = io.BytesIO()
        pq.write_table(table, sink, compression="zstd")
        key = layout.inference(self.env, self.model_version, day, name)
        served = pc.sum(pc.equal(table["role"], SERVED)).as_py() or 0
        return key, sink.getvalue(), int(served)

    def to_table(self, chunks: list[Chunk]) -> pa.Table:
        """One row per prediction: who asked, when, what went in, what came out.

        Built for the writer thread's share of the GIL: Python touches each *request* once
        (its id, endpoint and time); per-row work is NumPy on whole arrays or Arrow compute
        (``take``, ``if_else``), which runs with the GIL released — no Python loop over rows
        but the symbols and bar times the requests carried as lists. A flush of 1,600
        single-row requests holds the GIL for ~1 ms in steps of < 0.5 ms
        (benchmarks/README.md)."""
        sizes = np.fromiter((len(c.probability_up) for c in chunks), np.int64, len(chunks))
        rows = int(sizes.sum())
        of_request = pa.array(np.repeat(np.arange(len(chunks)), sizes))
        per_request = pa.table(
            {
                "request_id": pa.array([c.request_id for c in chunks], pa.string()),
                "endpoint": pa.array([c.endpoint for c in chunks], pa.string()),
                "timestamp": pa.array(
                    np.fromiter((c.timestamp_ms for c in chunks), np.int64, len(chunks)),
                    pa.timestamp("ms", tz="UTC"),
                ),
            }
        ).take(of_request)
        probability = np.concatenate([c.probability_up for c in chunks])
        by_feature = np.ascontiguousarray(np.concatenate([c.features for c in chunks]).T)
        columns: dict[str, pa.Array | pa.ChunkedArray] = {
            "request_id": per_request["request_id"],
            "row": pa.array(np.arange(rows) - np.repeat(np.cumsum(sizes) - sizes, sizes)).cast(
                pa.int32()
            ),
            "timestamp": per_request["timestamp"],
            "endpoint": per_request["endpoint"],
            "model_version": pa.repeat(pa.scalar(self.model_version, pa.string()), rows),
            "symbol": pa.array(list(chain.from_iterable(c.symbols for c in chunks)), pa.string()),
            "open_time": pa.array(
                list(chain.from_iterable(c.open_times for c in chunks)),
                pa.timestamp("ms", tz="UTC"),
            ),
        }
        for j, name in enumerate(self.features):
            columns[name] = pa.array(by_feature[j], pa.float64())
        up = pa.array(probability, pa.float64())
        columns["probability_up"] = up
        columns["direction"] = pc.if_else(pc.greater_equal(up, 0.5), "up", "down")
        columns["role"] = pa.repeat(pa.scalar(SERVED, pa.string()), rows)
        table = pa.table(columns)
        if self.shadow is None:
            return table
        try:
            answers = self.shadow.answers(np.concatenate([c.features for c in chunks]))
        except Exception as error:  # the served rows are written regardless
            log.warning("shadow scoring by version %s failed: %s", self.shadow.model_version, error)
            if self.on_shadow_failure is not None:
                self.on_shadow_failure()
            return table
        return pa.concat_tables([table, self.shadow.rows(table, answers)])

    def close(self, attempts: int = 5, backoff: float = 0.2) -> None:
        """Stop the writer and write what is left. If the storage is failing (or the last try
        fails), the rows go to the spill directory first — safe on disk before anything that
        may hang — and one attempt then sends them on; without a spill directory, retry a few
        times."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        if self.spill is None:
            for attempt in range(attempts):
                if self.flush():
                    return
                if attempt + 1 < attempts:
                    time.sleep(backoff * 2**attempt)
            log.error(
                "inference log: %d rows could not be written at shutdown: %s",
                self.stats.pending,
                self.stats.last_error,
            )
            return
        if not self.failures and self.flush() and not self._spilled:
            return
        self._spill_pending(self.spill)
        self._resend()

    def _spill_pending(self, spill: Spill) -> None:
        with self._write_lock, self._lock:
            chunks, self._pending = list(self._pending), deque()
        if not chunks:
            return
        rows = sum(len(c.probability_up) for c in chunks)
        try:
            key, data, rows = self._encode(chunks)
            spill.save(key, data)
        except Exception as error:
            log.error("inference log: %d rows lost; spill to %s: %s", rows, spill.root, error)
            with self._lock:
                self.stats.rows_dropped += rows
                self.stats.pending -= rows
            if self.on_drop is not None:
                self.on_drop(rows)
            return
        self._spilled = True
        with self._lock:
            self.stats.rows_spilled += rows
            self.stats.pending -= rows
        log.warning(
            "inference log: storage unavailable at shutdown (%s); %d rows kept in %s, sent at "
            "the next start",
            self.stats.last_error,
            rows,
            spill.root,
        )
