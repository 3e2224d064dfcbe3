"""The features step's rows on their way to a dataset file: each symbol's rows are spooled to a
local file as they are made, then merged into one file in (``open_time``, ``symbol``) order.

Each symbol's rows come in time order, one symbol at a time, but a dataset is read by time
(`pipelines.ml.rows`): rather than holding every symbol's rows to sort them, each symbol's
labelled rows go to an Arrow IPC file in a temporary directory (batches of `SPOOL_BATCH_ROWS`),
and `SymbolSpool.merge` reads one batch of each symbol at a time and writes the rows whose time
no unread batch can precede, sorted, in row groups of `pipelines.ml.dataset.ROW_GROUP_ROWS`.
What is held: one batch per symbol, the rows being sorted and one row group being written.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

SPOOL_BATCH_ROWS = 65_536
"""Rows per batch of a symbol's spool file: the merge holds one such batch per symbol."""

SORT_KEYS = [("open_time", "ascending"), ("symbol", "ascending")]
"""The order of a dataset's rows."""


class SymbolSpool:
    """Symbols' labelled rows spooled to local Arrow IPC files (in a temporary directory,
    removed by `close` or at the end of a ``with`` block), and their unlabelled rows in memory
    (the last `horizon` bars of each symbol: few)."""

    def __init__(self) -> None:
        self._directory = tempfile.TemporaryDirectory(prefix="mlops-features-")
        self.paths: list[Path] = []
        self.unlabelled: list[pa.Table] = []
        self.rows = 0
        self.schema: pa.Schema | None = None

    def __enter__(self) -> SymbolSpool:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        """Remove the spool files."""
        self._directory.cleanup()

    def add(self, labelled: pa.Table, unlabelled: pa.Table) -> None:
        """One symbol's rows (in time order): the labelled ones to a spool file, the others
        kept."""
        if self.schema is None:
            self.schema = labelled.schema
        if unlabelled.num_rows:
            self.unlabelled.append(unlabelled)
        if not labelled.num_rows:
            return
        path = Path(self._directory.name) / f"{len(self.paths)}.arrow"
        with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, labelled.schema) as out:
            out.write_table(labelled, max_chunksize=SPOOL_BATCH_ROWS)
        self.paths.append(path)
        self.rows += labelled.num_rows

    def merge(self, write: Callable[[pa.Table], None], group_rows: int) -> tuple[Any, Any]:
        """Every spooled row in (``open_time``, ``symbol``) order, given to `write` as tables of
        `group_rows` rows (the last one fewer); returns the first and last ``open_time`` (None,
        None without rows)."""
        pending: list[pa.Table] = []
        held, first, last = 0, None, None
        for chunk in _time_ordered_chunks(self.paths):
            if first is None:
                first = chunk["open_time"][0].as_py()
            last = chunk["open_time"][-1].as_py()
            pending.append(chunk)
            held += chunk.num_rows
            if held >= group_rows:
                whole = pa.concat_tables(pending)
                cut = held - held % group_rows
                for start in range(0, cut, group_rows):
                    write(whole.slice(start, group_rows))
                pending, held = [whole.slice(cut)], held - cut
        if held:
            write(pa.concat_tables(pending))
        return first, last


def _batches(path: Path) -> Iterator[pa.RecordBatch]:
    """A spool file's batches, read one at a time (not memory-mapped)."""
    with pa.OSFile(str(path), "rb") as source:
        reader = pa.ipc.open_file(source)
        for i in range(reader.num_record_batches):
            yield reader.get_batch(i)


def _last_time(table: pa.Table) -> Any:
    """The last ``open_time`` of a table in time order (as `_times` gives it)."""
    return _times(table.slice(table.num_rows - 1))[0]


def _times(table: pa.Table) -> np.ndarray:
    """The ``open_time`` column as numpy datetime64 (naive UTC)."""
    return np.asarray(table["open_time"].to_numpy())


def _time_ordered_chunks(paths: list[Path]) -> Iterator[pa.Table]:
    """The rows of the time-ordered spool files `paths`, in (``open_time``, ``symbol``) order,
    in chunks: each chunk is every row not later than the earliest of the buffered batches'
    last times, which no unread batch can precede (each file is in time order)."""
    readers = [_batches(path) for path in paths]
    buffers: list[pa.Table | None] = [pa.Table.from_batches([next(r)]) for r in readers]
    done = [False] * len(readers)
    while any(b is not None for b in buffers):
        live = [_last_time(b) for i, b in enumerate(buffers) if b is not None and not done[i]]
        limit = min(live) if live else None
        parts = []
        for i, buffer in enumerate(buffers):
            if buffer is None:
                continue
            times = _times(buffer)
            cut = len(times) if limit is None else int(np.searchsorted(times, limit, "right"))
            parts.append(buffer.slice(0, cut))
            rest = buffer.slice(cut)
            if rest.num_rows == 0 and not done[i]:
                batch = next(readers[i], None)
                done[i] = batch is None
                rest = rest if batch is None else pa.Table.from_batches([batch])
            buffers[i] = rest if rest.num_rows else None
        chunk = pa.concat_tables(parts)
        if chunk.num_rows:
            yield chunk.take(pc.sort_indices(chunk.select(["open_time", "symbol"]), SORT_KEYS))
