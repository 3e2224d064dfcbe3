"""Bounded reads of a dataset: the rows a step needs, never the whole dataset in pandas.

A dataset's ``labelled.parquet`` is in time order (`pipelines.ml.dataset.build_dataset` sorts it
by ``open_time``), so "the rows before t" are its first rows. Each function here reads the
``open_time`` column first to find the positions it wants, then streams the file batch by
batch with only the columns asked for, keeping only those positions: what stays in memory is
the selection, one batch, and the file's bytes.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.errors import PipelineError
from pipelines.storage import Storage

BATCH_ROWS = 65_536
"""Rows decoded at a time while selecting."""


def sample_positions(count: int, allowed: int, seed: int = 0) -> np.ndarray | None:
    """Sorted positions of a random sample of `allowed` of `count` rows (seeded: the same
    dataset gives the same sample; sorted: time order is kept); None when all of them fit."""
    if count <= allowed:
        return None
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(count, size=allowed, replace=False))


def latest_whole_days(times: np.ndarray, allowed: int) -> int:
    """The first position of the latest whole UTC days of `times` (sorted) that fit in
    `allowed` rows: 0 when all rows fit, else the first row of the day after the one the limit
    falls in (so no day is cut)."""
    if len(times) <= allowed:
        return 0
    days = times.astype("datetime64[D]")
    cut = len(times) - allowed
    return int(np.searchsorted(days, days[cut - 1], side="right"))


def open_parquet(storage: Storage, key: str) -> pq.ParquetFile:
    """A dataset part as a Parquet file.

    Raises:
        PipelineError: if it is missing or unreadable (naming it).
    """
    try:
        return pq.ParquetFile(io.BytesIO(storage.read_bytes(key)))
    except FileNotFoundError:
        raise PipelineError(f"dataset {key} is missing", "re-run the features step") from None
    except (OSError, ValueError) as error:
        raise PipelineError(
            f"dataset {key} is unreadable ({error})", "re-run the features step"
        ) from None


def _naive(moment: pd.Timestamp) -> np.ndarray:
    """`moment` as a naive UTC datetime64[ns] scalar array (what `_times` compares with)."""
    stamp = pd.Timestamp(moment)
    if stamp.tzinfo is not None:
        stamp = stamp.tz_convert("UTC").tz_localize(None)
    return np.asarray(stamp.to_datetime64(), dtype="datetime64[ns]")


def _times(file: pq.ParquetFile) -> np.ndarray:
    """The ``open_time`` column as naive UTC datetime64[ns] (the only column read whole)."""
    column = file.read(columns=["open_time"])["open_time"]
    return np.asarray(column.to_numpy(), dtype="datetime64[ns]")


def _taken(
    file: pq.ParquetFile, columns: Sequence[str], positions: np.ndarray
) -> Iterator[pa.RecordBatch]:
    """The rows at `positions` (sorted) of `columns`, decoded and picked one batch at a time."""
    offset = 0
    for batch in file.iter_batches(batch_size=BATCH_ROWS, columns=list(columns)):
        low, high = np.searchsorted(positions, [offset, offset + batch.num_rows])
        if high > low:
            yield batch.take(pa.array(positions[low:high] - offset))
        offset += batch.num_rows
        if low == len(positions):
            break


def _select(file: pq.ParquetFile, columns: Sequence[str], positions: np.ndarray) -> pa.Table:
    """The rows at `positions` (sorted) of `columns` as one table."""
    schema = pa.schema([file.schema_arrow.field(name) for name in columns])
    return pa.Table.from_batches(list(_taken(file, columns, positions)), schema=schema)


class Selection:
    """Rows of one dataset part picked by time, read with only the columns asked for."""

    def __init__(self, storage: Storage, prefix: str, part: str = "labelled") -> None:
        """Open ``{prefix}/{part}.parquet`` and read its ``open_time`` column.

        Raises:
            PipelineError: if the dataset is missing or unreadable.
        """
        self.key = f"{prefix}/{part}.parquet"
        self.file = open_parquet(storage, self.key)
        self.times = _times(self.file)

    def before(self, moment: pd.Timestamp) -> int:
        """How many rows are before `moment` (they are the first ones)."""
        return int(np.searchsorted(self.times, _naive(moment), side="left"))

    def rows(
        self, columns: Sequence[str], positions: np.ndarray, *, last: bool = False
    ) -> pd.DataFrame:
        """The rows at `positions` (sorted), as pandas. With `last`, this selection's last read:
        the file's bytes are let go before the conversion, and the Arrow buffers are freed as
        they are converted, so the rows are never in memory twice."""
        table = _select(self.file, columns, positions)
        if last:
            del self.file
        frame: pd.DataFrame = table.to_pandas(self_destruct=True, split_blocks=True)
        return frame

    def matrix(
        self, columns: Sequence[str], positions: np.ndarray, *, last: bool = False
    ) -> np.ndarray:
        """The rows at `positions` (sorted) of the numeric `columns` as one C-contiguous float64
        matrix, filled batch by batch: what scikit-learn fits on without a copy of its own (it
        converts anything else to float64), so the rows are never held in two forms."""
        out = np.empty((len(positions), len(columns)), dtype=np.float64)
        filled = 0
        for batch in _taken(self.file, columns, positions):
            for j in range(len(columns)):
                values = batch.column(j).to_numpy(zero_copy_only=False)
                out[filled : filled + batch.num_rows, j] = values
            filled += batch.num_rows
        if last:
            del self.file
        return out

    def between(
        self, columns: Sequence[str], start: pd.Timestamp, end: pd.Timestamp, *, last: bool = False
    ) -> pd.DataFrame:
        """The rows with ``start <= open_time <= end``."""
        first = self.before(start)
        stop = int(np.searchsorted(self.times, _naive(end), side="right"))
        return self.rows(columns, np.arange(first, max(first, stop)), last=last)

    def sample_before(
        self,
        columns: Sequence[str],
        moment: pd.Timestamp,
        allowed: int,
        seed: int = 0,
        *,
        last: bool = False,
    ) -> tuple[pd.DataFrame, int]:
        """The rows before `moment`, a seeded random sample of `allowed` of them (time order)
        when there are more; and how many there were."""
        count = self.before(moment)
        picked = sample_positions(count, allowed, seed)
        positions = np.arange(count) if picked is None else picked
        return self.rows(columns, positions, last=last), count

    def latest_days_before(
        self, columns: Sequence[str], moment: pd.Timestamp, allowed: int, *, last: bool = False
    ) -> tuple[pd.DataFrame, int]:
        """The rows of the latest whole days before `moment` that fit in `allowed` rows; and
        how many rows were before `moment`."""
        count = self.before(moment)
        first = latest_whole_days(self.times[:count], allowed)
        return self.rows(columns, np.arange(first, count), last=last), count
