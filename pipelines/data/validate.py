"""Validate step: parse raw zips, check every row, quarantine rejects, write curated Parquet.

Days go to the workers in batches (`pipelines.data.batch`): one parse and one pass of the row
rules per batch, the outputs written per day; a day the batch path cannot take goes through the
per-file path with the same outputs.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import date

from pydantic import BaseModel, Field

from pipelines import layout
from pipelines.archive import parse_checksum
from pipelines.data.bars import date_range
from pipelines.data.batch import Job, process_batch
from pipelines.data.curate import (
    CURATED_SCHEMA,
    STATS_KEY,
    DayStats,
    read_curated_stats,
    refuse_day,
)
from pipelines.data.unzip import ARCHIVE_BOUNDS, ZipBounds
from pipelines.errors import PipelineError
from pipelines.progress import Progress, no_progress
from pipelines.storage import Storage

__all__ = [
    "CURATED_SCHEMA",
    "STATS_KEY",
    "DayStats",
    "ValidateResult",
    "current_stats",
    "read_curated_stats",
    "refuse_day",
    "summarize",
    "validate",
]

BATCH_FILES = 16
"""Days parsed and checked together (~2.5 MB of CSV): enough to spread the per-call costs, few
enough that two workers stay busy to the end of a short range."""


class ValidateResult(BaseModel):
    """The validate step's part of the run summary."""

    files_validated: int = 0
    files_skipped: int = 0
    """Curated already from the same verified zip: not parsed again."""
    rows_valid: int = 0
    rows_quarantined: int = 0
    rows_duplicate: int = 0
    missing_bars: int = 0
    quarantine: dict[str, dict[str, int]] = Field(default_factory=dict)
    """File -> reason -> rows, for every file that lost rows to quarantine."""
    gaps: dict[str, int] = Field(default_factory=dict)
    """``SYMBOL date`` -> missing bars, for days with gaps (never filled in)."""
    files_refused: dict[str, str] = Field(default_factory=dict)
    """File -> why it was refused unread (past a size bound of `pipelines.archive`, or not a
    valid zip); such a day is never curated and fails the step once the others are done."""


def current_stats(
    storage: Storage, symbol: str, interval: str, day: date
) -> tuple[str, DayStats | None]:
    """The raw file's checksum, and the curated stats if they were made from that same file."""
    checksum = parse_checksum(
        storage.read_bytes(layout.raw_checksum(symbol, interval, day)).decode()
    )
    curated_key = layout.curated(symbol, interval, day)
    if storage.exists(curated_key):
        stats = read_curated_stats(storage.read_bytes(curated_key))
        if stats is not None and stats.source_sha256 == checksum:
            return checksum, stats
    return checksum, None


def validate(
    storage: Storage,
    symbols: Sequence[str],
    interval: str,
    start: date,
    end: date,
    max_share: float,
    workers: int | None = None,
    progress: Progress = no_progress,
    bounds: ZipBounds = ARCHIVE_BOUNDS,
    batch_files: int = BATCH_FILES,
) -> ValidateResult:
    """Validate every raw file of the range and curate the good ones.

    Days are validated `batch_files` at a time (1: each on its own); the outputs do not depend
    on it.

    Raises:
        PipelineError: if a day or the whole run lost more than `max_share` of its rows to
            quarantine (naming the files and reasons), a file was refused past one of
            `bounds` (naming it and the bound; the other files are validated first), or there
            is no raw file at all.
    """
    jobs = [
        (s, d)
        for s in symbols
        for d in date_range(start, end)
        if storage.exists(layout.raw_zip(s, interval, d))
    ]
    if not jobs:
        raise PipelineError(
            f"no raw file for {', '.join(symbols)} {interval} between {start} and {end}",
            "run the fetch step first (mlops run --until fetch)",
        )

    advance = progress("validate", len(jobs))

    def check(job: tuple[str, date]) -> tuple[str, DayStats | None]:
        """The raw zip's checksum, and its stats if it was curated from that zip already."""
        checksum, stats = current_stats(storage, job[0], interval, job[1])
        if stats is not None:
            advance()
        return checksum, stats

    def work(batch: list[Job]) -> list[DayStats]:
        stats = process_batch(storage, interval, batch, max_share, bounds)
        for _ in batch:
            advance()
        return stats

    with ThreadPoolExecutor(max_workers=workers or min(4, os.cpu_count() or 1)) as pool:
        known = list(pool.map(check, jobs))
        pending = [
            (symbol, day, checksum)
            for (symbol, day), (checksum, stats) in zip(jobs, known, strict=True)
            if stats is None
        ]
        size = max(1, batch_files)
        batches = [pending[i : i + size] for i in range(0, len(pending), size)]
        fresh = iter([stats for done in pool.map(work, batches) for stats in done])
    outcomes = [(stats, True) if stats is not None else (next(fresh), False) for _, stats in known]
    return summarize(outcomes, interval, max_share)


def summarize(
    outcomes: list[tuple[DayStats, bool]], interval: str, max_share: float
) -> ValidateResult:
    """Add up day stats; fail loudly if quarantine went beyond `max_share`."""
    result = ValidateResult()
    too_many: list[str] = []
    total = 0
    for stats, skipped in outcomes:
        result.files_skipped += int(skipped)
        result.files_validated += int(not skipped)
        result.rows_valid += stats.rows_valid
        result.rows_quarantined += stats.rows_quarantined
        result.rows_duplicate += stats.rows_duplicate
        result.missing_bars += stats.missing_bars
        total += stats.rows_total
        name = f"{stats.symbol}-{interval}-{stats.day}"
        if stats.refused is not None:
            result.files_refused[name] = stats.refused
            continue
        if stats.reasons:
            result.quarantine[name] = stats.reasons
        if stats.missing_bars:
            result.gaps[f"{stats.symbol} {stats.day}"] = stats.missing_bars
        if stats.quarantined_share > max_share:
            too_many.append(f"{name} ({stats.quarantined_share:.1%}: {json.dumps(stats.reasons)})")
    run_share = result.rows_quarantined / total if total else 0.0
    if result.files_refused:
        refused = "; ".join(f"{name}: {why}" for name, why in sorted(result.files_refused.items()))
        also = f"; also quarantine above {max_share:.1%}: {'; '.join(too_many)}" if too_many else ""
        raise PipelineError(
            f"{len(result.files_refused)} raw file(s) refused, not validated: {refused}{also}",
            "a daily kline zip is ~50-80 KB holding ~1,441 lines (bounds in pipelines/archive.py); "
            "check --source, delete the refused files under raw/ and re-run (fetch downloads "
            "them again); the other days are curated",
        )
    if too_many or run_share > max_share:
        detail = "; ".join(too_many) or f"run total {run_share:.2%}"
        raise PipelineError(
            f"quarantine above {max_share:.1%} of rows: {detail}; rejected rows are in quarantine/",
            "inspect the quarantine CSVs, then fix the source or raise "
            "MLOPS_QUARANTINE_MAX_SHARE and re-run",
        )
    return result
