"""Inference log: every prediction, written as Parquet under ``inference/`` off the request path.

A request only appends its rows to an in-memory buffer (microseconds). A background thread
writes the buffer every `flush_seconds` (or sooner when `batch_rows` are waiting) as one Parquet
object per model version and day. A failed write keeps the rows and retries on the next round;
it is counted, never raised into a request. `close()` writes what is left, so nothing that was
acknowledged is lost on a clean shutdown.
"""

from __future__ import annotations

import io
import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

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


@dataclass
class LogStats:
    """Counters exported as Prometheus metrics."""

    rows_logged: int = 0
    rows_written: int = 0
    files_written: int = 0
    write_failures: int = 0
    rows_dropped: int = 0
    last_error: str | None = None
    pending: int = field(default=0)


class InferenceLog:
    """Buffered, background, retrying Parquet writer of predictions.

    Args:
        storage: the storage layout (local directory or S3).
        env: environment name (first level under ``inference/``).
        model_version: the registry version being served.
        features: feature names, in model column order.
        flush_seconds: longest time a row waits in memory while the storage works.
        batch_rows: write sooner once this many rows are waiting.
        max_pending_rows: while the storage keeps failing, keep at most this many rows; the
            oldest beyond it are dropped and counted (memory must stay bounded).
        on_failure: called after each failed write (e.g. a Prometheus counter's ``inc``).
    """

    def __init__(
        self,
        storage: Storage,
        env: str,
        model_version: str,
        features: Sequence[str],
        flush_seconds: float = 2.0,
        batch_rows: int = 5_000,
        max_pending_rows: int = 1_000_000,
        on_failure: Callable[[], object] | None = None,
    ) -> None:
        self.storage = storage
        self.env = env
        self.model_version = model_version
        self.features = list(features)
        self.flush_seconds = flush_seconds
        self.batch_rows = batch_rows
        self.max_pending_rows = max_pending_rows
        self.on_failure = on_failure
        self.stats = LogStats()
        self._pending: list[Chunk] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._write_lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the background writer (idempotent). The first Arrow conversion of a UTC
        timestamp costs ~1 s (time-zone setup) with the GIL held; it is paid here, before the
        service reports ready, not by whichever requests arrive during the first flush."""
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
            wake = self.stats.pending >= self.batch_rows
        if wake:
            self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.flush_seconds)
            self._wake.clear()
            self.flush()

    def flush(self) -> bool:
        """Write everything pending; on failure keep it for the next try. True if all written."""
        with self._write_lock:
            with self._lock:
                chunks, self._pending = self._pending, []
            if not chunks:
                return True
            try:
                written = self._write(chunks)
            except Exception as error:  # storage down, credentials expired, disk full …
                with self._lock:
                    self._pending = chunks + self._pending
                    self.stats.write_failures += 1
                    self.stats.last_error = f"{type(error).__name__}: {error}"
                    self._bound()
                log.warning("inference log write failed (will retry): %s", error)
                if self.on_failure is not None:
                    self.on_failure()
                return False
            with self._lock:
                self.stats.rows_written += written
                self.stats.files_written += 1
                self.stats.pending -= written
                self.stats.last_error = None
            return True

    def _bound(self) -> None:
        excess = self.stats.pending - self.max_pending_rows
        while excess > 0 and self._pending:
            dropped = self._pending.pop(0)
            n = len(dropped.probability_up)
            self.stats.rows_dropped += n
            self.stats.pending -= n
            excess -= n

    def _write(self, chunks: list[Chunk]) -> int:
        table = self.to_table(chunks)
        day = datetime.fromtimestamp(chunks[0].timestamp_ms / 1000, UTC).date()
        name = f"{int(time.time() * 1000)}-{uuid.uuid4().hex[:8]}.parquet"
        sink = io.BytesIO()
        pq.write_table(table, sink, compression="zstd")
        self.storage.write_bytes(
            layout.inference(self.env, self.model_version, day, name), sink.getvalue()
        )
        return int(table.num_rows)

    def to_table(self, chunks: list[Chunk]) -> pa.Table:
        """One row per prediction: who asked, when, what went in, what came out."""
        sizes = [len(c.probability_up) for c in chunks]
        repeat = np.repeat
        probability = np.concatenate([c.probability_up for c in chunks])
        matrix = np.vstack([c.features for c in chunks])
        # strings as Python lists: pyarrow converts NumPy unicode arrays very slowly (~1 ms a row)
        columns: dict[str, pa.Array] = {
            "request_id": pa.array(
                [c.request_id for c, n in zip(chunks, sizes, strict=True) for _ in range(n)],
                pa.string(),
            ),
            "row": pa.array(np.concatenate([np.arange(n) for n in sizes]), pa.int32()),
            "timestamp": pa.array(
                repeat([c.timestamp_ms for c in chunks], sizes), pa.timestamp("ms", tz="UTC")
            ),
            "endpoint": pa.array(
                [c.endpoint for c, n in zip(chunks, sizes, strict=True) for _ in range(n)],
                pa.string(),
            ),
            "model_version": pa.array([self.model_version] * len(probability), pa.string()),
            "symbol": pa.array([s for c in chunks for s in c.symbols], pa.string()),
            "open_time": pa.array(
                [t for c in chunks for t in c.open_times], pa.timestamp("ms", tz="UTC")
            ),
        }
        for j, name in enumerate(self.features):
            columns[name] = pa.array(matrix[:, j], pa.float64())
        columns["probability_up"] = pa.array(probability, pa.float64())
        columns["direction"] = pa.array(
            ["up" if p >= 0.5 else "down" for p in probability.tolist()], pa.string()
        )
        return pa.table(columns)

    def close(self, attempts: int = 5, backoff: float = 0.2) -> None:
        """Stop the writer and write what is left, retrying a few times."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        for attempt in range(attempts):
            if self.flush():
                return
            time.sleep(backoff * 2**attempt)
        log.error(
            "inference log: %d rows could not be written at shutdown: %s",
            self.stats.pending,
            self.stats.last_error,
        )
