"""Validate a batch of days at once: one parse and one pass of the row rules over all their
rows, then each day's stats, quarantine and curated file written on its own.

The outputs are those of the per-file path (`curate_day`), which any day the batch cannot take
falls back to: a malformed line or a non-number (`pipelines.data.rows.parse_batch`), or a
duplicate open_time (`split_duplicates` decides exact against conflicting per day).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

import numpy as np

from pipelines import layout
from pipelines.data.curate import DayStats, curated_table, refuse_day, write_day
from pipelines.data.rows import (
    Parsed,
    check_rows,
    day_start_ms,
    parse_batch,
    parse_csv,
    split_duplicates,
)
from pipelines.data.unzip import ARCHIVE_BOUNDS, ArchiveRefusedError, ZipBounds, read_csv
from pipelines.storage import Storage

Job = tuple[str, date, str]
"""(symbol, day, checksum of its verified raw zip)."""


def curate_day(
    storage: Storage,
    interval: str,
    job: Job,
    payload: bytes,
    max_share: float,
) -> DayStats:
    """The per-file path: parse, check and dedupe one day's CSV, then write its outputs."""
    symbol, day, checksum = job
    parsed = parse_csv(payload)
    check_rows(parsed, interval, day)
    keep, exact_dups = split_duplicates(parsed)
    return write_day(
        storage,
        (symbol, interval, day, checksum),
        parsed,
        curated_table(parsed, keep),
        exact_dups,
        max_share,
    )


def process_batch(
    storage: Storage,
    interval: str,
    jobs: Sequence[Job],
    max_share: float,
    bounds: ZipBounds = ARCHIVE_BOUNDS,
) -> list[DayStats]:
    """Validate and curate the days of `jobs`; their stats, in the order of `jobs`.

    Each zip is read through `read_csv`, so a file past one of `bounds` is refused by name
    (`refuse_day`) before any parser sees it, whichever path the others take.
    """
    done: dict[int, DayStats] = {}
    read: list[tuple[int, bytes]] = []
    for i, (symbol, day, checksum) in enumerate(jobs):
        try:
            blob = storage.read_bytes(layout.raw_zip(symbol, interval, day))
            read.append((i, read_csv(blob, bounds)))
        except ArchiveRefusedError as refused:
            done[i] = refuse_day(storage, symbol, interval, day, checksum, str(refused))
    batch = parse_batch([payload for _, payload in read]) if len(read) > 1 else None
    if batch is None:
        for i, payload in read:
            done[i] = curate_day(storage, interval, jobs[i], payload, max_share)
        return [done[i] for i in range(len(jobs))]

    parsed, counts = batch.parsed, batch.counts
    file_of_row = np.repeat(np.arange(len(read)), counts)
    day_starts = np.array([day_start_ms(jobs[i][1]) for i, _ in read], dtype=np.float64)
    check_rows(parsed, interval, day_starts[file_of_row])
    valid = np.flatnonzero(parsed.codes == 0)
    times = parsed.columns["open_time"][valid]
    valid = valid[np.lexsort((times, file_of_row[valid]))]  # by file, then time
    files, times = file_of_row[valid], parsed.columns["open_time"][valid]
    same = (files[1:] == files[:-1]) & (times[1:] == times[:-1])
    with_duplicates = set(files[1:][same].tolist())
    kept = curated_table(parsed, valid)
    kept_counts = np.bincount(files, minlength=len(read))
    kept_starts = np.concatenate(([0], np.cumsum(kept_counts)))
    starts = np.concatenate(([0], np.cumsum(counts)))
    for k, (i, payload) in enumerate(read):
        if k in with_duplicates:
            done[i] = curate_day(storage, interval, jobs[i], payload, max_share)
            continue
        rows = slice(int(starts[k]), int(starts[k + 1]))
        day_rows = Parsed(
            {name: values[rows] for name, values in parsed.columns.items()},
            [],
            parsed.codes[rows],
            batch.headers[k],
            parsed.reason_names,
        )
        symbol, day, checksum = jobs[i]
        done[i] = write_day(
            storage,
            (symbol, interval, day, checksum),
            day_rows,
            kept.slice(int(kept_starts[k]), int(kept_counts[k])),
            0,
            max_share,
        )
    return [done[i] for i in range(len(jobs))]
