"""Validate step: parse raw zips, check every row, quarantine rejects, write curated Parquet."""

from __future__ import annotations

import io
import json
import os
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import date

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, Field

from pipelines import layout
from pipelines.archive import (
    parse_checksum,
)
from pipelines.data.bars import date_range
from pipelines.data.rows import (
    NUMERIC,
    Parsed,
    check_rows,
    parse_csv,
    reasons_of,
    split_duplicates,
)
from pipelines.data.unzip import ARCHIVE_BOUNDS, ArchiveRefusedError, ZipBounds, read_csv
from pipelines.errors import PipelineError
from pipelines.intervals import bars_per_day
from pipelines.progress import Progress, no_progress
from pipelines.storage import Storage

CURATED_SCHEMA = pa.schema(
    [
        ("open_time", pa.timestamp("ms", tz="UTC")),
        *[(name, pa.float64()) for name in ("open", "high", "low", "close", "volume")],
        ("close_time", pa.timestamp("ms", tz="UTC")),
        ("quote_volume", pa.float64()),
        ("count", pa.int64()),
        ("taker_buy_volume", pa.float64()),
        ("taker_buy_quote_volume", pa.float64()),
    ]
)
STATS_KEY = b"mlops.validation"


class DayStats(BaseModel):
    """Outcome of validating one (symbol, day) file; stored in the curated file's metadata."""

    symbol: str
    day: str
    source_sha256: str
    has_header: bool = False
    rows_total: int = 0
    rows_valid: int = 0
    rows_quarantined: int = 0
    rows_duplicate: int = 0
    missing_bars: int = 0
    reasons: dict[str, int] = Field(default_factory=dict)
    refused: str | None = None
    """Why the whole file was refused unread (past a size bound, or not a valid zip)."""

    @property
    def quarantined_share(self) -> float:
        """Share of the day's rows that went to quarantine (all of them for a refused file)."""
        if self.refused is not None:
            return 1.0
        return self.rows_quarantined / self.rows_total if self.rows_total else 0.0


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


def _curated_table(parsed: Parsed, rows: np.ndarray) -> pa.Table:
    c = parsed.columns
    arrays = []
    for f in CURATED_SCHEMA:
        values = c[f.name][rows]
        if pa.types.is_timestamp(f.type):
            arrays.append(pa.array(values.astype(np.int64), type=pa.int64()).cast(f.type))
        elif pa.types.is_integer(f.type):
            arrays.append(pa.array(values.astype(np.int64)))
        else:
            arrays.append(pa.array(values))
    return pa.Table.from_arrays(arrays, schema=CURATED_SCHEMA)


def _quarantine_csv(parsed: Parsed, rows: np.ndarray) -> bytes:
    c = parsed.columns
    frame = pd.DataFrame({name: c[name][rows] for name in NUMERIC})
    frame.insert(0, "reason", reasons_of(parsed, rows))
    if parsed.raw_lines:
        frame["raw_line"] = [parsed.raw_lines[i] for i in rows]
    extra = pd.DataFrame(
        {
            "reason": [r for _, r in parsed.extra_rejects],
            "raw_line": [line for line, _ in parsed.extra_rejects],
        }
    )
    out = pd.concat([frame, extra], ignore_index=True) if len(extra) else frame
    return out.to_csv(index=False).encode()


def read_curated_stats(blob: bytes) -> DayStats | None:
    """The validation stats stored in a curated file's metadata, if any."""
    meta = pq.read_schema(io.BytesIO(blob)).metadata or {}
    raw = meta.get(STATS_KEY)
    return DayStats.model_validate_json(raw) if raw else None


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


def refuse_day(
    storage: Storage, symbol: str, interval: str, day: date, checksum: str, why: str
) -> DayStats:
    """Record a file refused unread: its reason in quarantine, no curated copy left behind."""
    note = pd.DataFrame({"reason": [f"file refused: {why}"], "raw_line": [""]})
    storage.write_bytes(layout.quarantine(symbol, interval, day), note.to_csv(index=False).encode())
    storage.delete(layout.curated(symbol, interval, day))
    return DayStats(symbol=symbol, day=day.isoformat(), source_sha256=checksum, refused=why)


def process_day(
    storage: Storage,
    symbol: str,
    interval: str,
    day: date,
    checksum: str,
    max_share: float,
    bounds: ZipBounds = ARCHIVE_BOUNDS,
) -> DayStats:
    """Parse, check and dedupe one day; write quarantine and (if acceptable) curated files.

    A zip past one of `bounds` is refused by name (`refuse_day`), never inflated past them.
    """
    try:
        payload = read_csv(storage.read_bytes(layout.raw_zip(symbol, interval, day)), bounds)
    except ArchiveRefusedError as refused:
        return refuse_day(storage, symbol, interval, day, checksum, str(refused))
    parsed = parse_csv(payload)
    del payload  # the parsed columns are all that is needed from here on
    check_rows(parsed, interval, day)
    keep, exact_dups = split_duplicates(parsed)
    rejected = np.flatnonzero(parsed.codes)
    reasons = Counter(reasons_of(parsed, rejected))
    reasons.update(reason for _, reason in parsed.extra_rejects)
    stats = DayStats(
        symbol=symbol,
        day=day.isoformat(),
        source_sha256=checksum,
        has_header=parsed.has_header,
        rows_total=len(parsed.codes) + len(parsed.extra_rejects),
        rows_valid=len(keep),
        rows_quarantined=len(rejected) + len(parsed.extra_rejects),
        rows_duplicate=exact_dups,
        missing_bars=max(0, bars_per_day(interval) - len(keep)),
        reasons=dict(sorted(reasons.items())),
    )
    quarantine_key = layout.quarantine(symbol, interval, day)
    if stats.rows_quarantined:
        storage.write_bytes(quarantine_key, _quarantine_csv(parsed, rejected))
    else:
        storage.delete(quarantine_key)
    curated_key = layout.curated(symbol, interval, day)
    if stats.quarantined_share > max_share:
        storage.delete(curated_key)  # never leave an older curated copy of a rejected day
        return stats
    table = _curated_table(parsed, keep).replace_schema_metadata(
        {STATS_KEY: stats.model_dump_json().encode()}
    )
    buffer = io.BytesIO()
    # No dictionary encoding: prices and volumes are nearly all distinct, so it only costs time.
    pq.write_table(table, buffer, use_dictionary=False, compression="zstd")
    storage.write_bytes(curated_key, buffer.getvalue())
    return stats


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
) -> ValidateResult:
    """Validate every raw file of the range and curate the good ones.

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

    def work(job: tuple[str, date]) -> tuple[DayStats, bool]:
        symbol, day = job
        checksum, stats = current_stats(storage, symbol, interval, day)
        skipped = stats is not None
        if stats is None:
            stats = process_day(storage, symbol, interval, day, checksum, max_share, bounds)
        advance()
        return stats, skipped

    with ThreadPoolExecutor(max_workers=workers or min(4, os.cpu_count() or 1)) as pool:
        outcomes = list(pool.map(work, jobs))
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
