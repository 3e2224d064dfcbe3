"""Validate step: parse raw zips, check every row, quarantine rejects, write curated Parquet."""

from __future__ import annotations

import io
import json
import os
import zipfile
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from pydantic import BaseModel, Field

from pipelines import keys
from pipelines.archive import KLINE_COLUMNS, MICROSECOND_THRESHOLD, PRICE_COLUMNS, parse_checksum
from pipelines.context import Progress, no_progress
from pipelines.errors import PipelineError
from pipelines.fetch import date_range
from pipelines.intervals import DAY_MS, bars_per_day, interval_ms
from pipelines.storage import Storage

NUMERIC = KLINE_COLUMNS[:-1]  # `ignore` is not checked and not kept
FLOAT_COLUMNS = (
    "open",
    "high",
    "low",
    "close",
    "volume",
    "quote_volume",
    "taker_buy_volume",
    "taker_buy_quote_volume",
)
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
_TYPED = {
    name: (pa.int64() if name in ("open_time", "close_time", "count") else pa.float64())
    for name in NUMERIC
}


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

    @property
    def quarantined_share(self) -> float:
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


@dataclass
class Parsed:
    """Rows of one CSV: numeric columns (may hold NaN) and per-row rejection reasons."""

    columns: dict[str, np.ndarray]
    raw_lines: list[str]
    codes: np.ndarray  # int16 per row: 0 = valid, else 1 + index into `reason_names`
    has_header: bool
    reason_names: list[str] = field(default_factory=list)
    extra_rejects: list[tuple[str, str]] = field(default_factory=list)  # (line, reason)


def _csv_payload(blob: bytes) -> bytes:
    with zipfile.ZipFile(io.BytesIO(blob)) as archive:
        return archive.read(archive.namelist()[0])


def _detect_header(payload: bytes) -> bool:
    first = payload.lstrip()[:64].split(b",", 1)[0].strip()
    return not first.lstrip(b"-").isdigit()


def parse_csv(payload: bytes) -> Parsed:
    """Parse one archive CSV; rows with the wrong column count become rejects, not errors."""
    header = _detect_header(payload)
    rejects: list[tuple[str, str]] = []

    def on_invalid(row: pacsv.InvalidRow) -> str:
        rejects.append((row.text or "", f"expected 12 columns, got {row.actual_columns}"))
        return "skip"

    read = pacsv.ReadOptions(
        column_names=list(KLINE_COLUMNS), skip_rows=int(header), use_threads=False
    )
    parse = pacsv.ParseOptions(invalid_row_handler=on_invalid)
    try:
        table = pacsv.read_csv(
            io.BytesIO(payload),
            read_options=read,
            parse_options=parse,
            convert_options=pacsv.ConvertOptions(column_types=_TYPED),
        )
        columns = {name: _to_numpy(table.column(name)) for name in NUMERIC}
        lines: list[str] = []
    except pa.ArrowInvalid:
        # Some value is not a number: parse as text and find the rows one column at a time.
        rejects.clear()
        table = pacsv.read_csv(
            io.BytesIO(payload),
            read_options=read,
            parse_options=parse,
            convert_options=pacsv.ConvertOptions(
                column_types=dict.fromkeys(KLINE_COLUMNS, pa.string())
            ),
        )
        frame = table.to_pandas()
        columns = {
            name: pd.to_numeric(frame[name], errors="coerce").to_numpy(np.float64)
            for name in NUMERIC
        }
        lines = frame.astype(str).agg(",".join, axis=1).tolist()
    codes = np.zeros(len(columns["open_time"]), dtype=np.int16)
    return Parsed(columns, lines, codes, header, extra_rejects=rejects)


def _to_numpy(column: pa.ChunkedArray) -> np.ndarray:
    # Nulls become NaN, so every check below works on float64 (exact for ms timestamps < 2^53).
    values: np.ndarray = column.to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
    return values


def _reject(parsed: Parsed, mask: np.ndarray, reason: str) -> None:
    """Mark rows of `mask` not rejected yet with `reason` (the first rule broken wins)."""
    hit = mask & (parsed.codes == 0)
    if hit.any():
        if reason not in parsed.reason_names:
            parsed.reason_names.append(reason)
        parsed.codes[hit] = parsed.reason_names.index(reason) + 1


def reasons_of(parsed: Parsed, rows: np.ndarray) -> list[str]:
    """The rejection reason of each row in `rows`."""
    names = np.array(["", *parsed.reason_names], dtype=object)
    return list(names[parsed.codes[rows]])


def check_rows(parsed: Parsed, interval: str, day: date) -> None:
    """Set a rejection reason on every row that breaks a rule (first rule broken wins)."""
    c = parsed.columns
    for name in NUMERIC:
        _reject(parsed, ~np.isfinite(c[name]), f"unparseable or missing {name}")
    for name in ("open_time", "close_time"):
        values = c[name]
        c[name] = np.where(values >= MICROSECOND_THRESHOLD, np.floor(values / 1000), values)
    with np.errstate(invalid="ignore"):
        _reject(parsed, np.any([c[p] <= 0 for p in PRICE_COLUMNS], axis=0), "non-positive price")
        lo, hi = np.minimum(c["open"], c["close"]), np.maximum(c["open"], c["close"])
        _reject(
            parsed,
            (c["low"] > lo) | (hi > c["high"]),
            "OHLC inconsistent (low <= open,close <= high)",
        )
        for name in (*FLOAT_COLUMNS[4:], "count"):
            _reject(parsed, c[name] < 0, f"negative {name}")
        step = interval_ms(interval)
        day_start = (day.toordinal() - date(1970, 1, 1).toordinal()) * DAY_MS
        outside = (c["open_time"] < day_start) | (c["open_time"] >= day_start + DAY_MS)
        _reject(parsed, outside, "open_time outside the file's day")
        _reject(
            parsed,
            (c["open_time"] - day_start) % step != 0,
            f"open_time not on a {interval} boundary",
        )
        _reject(
            parsed,
            c["close_time"] != c["open_time"] + step - 1,
            f"close_time != open_time + {interval} - 1ms",
        )


def split_duplicates(parsed: Parsed) -> tuple[np.ndarray, int]:
    """Indices of valid rows to keep (time-ordered), and how many exact duplicates were dropped.

    Exact duplicates keep one copy; rows sharing an open_time with different values are all
    rejected ("conflicting duplicate"), since neither can be trusted.
    """
    valid = np.flatnonzero(parsed.codes == 0)
    times = parsed.columns["open_time"][valid]
    order = np.argsort(times, kind="stable")
    valid, times = valid[order], times[order]
    if len(times) < 2 or np.all(times[1:] != times[:-1]):
        return valid, 0
    frame = pd.DataFrame({name: parsed.columns[name][valid] for name in NUMERIC})
    exact = frame.duplicated(keep="first").to_numpy()
    valid, frame = valid[~exact], frame[~exact]
    conflicting = frame.duplicated(subset=["open_time"], keep=False).to_numpy()
    _reject(
        parsed,
        np.isin(np.arange(len(parsed.codes)), valid[conflicting]),
        "conflicting duplicate open_time",
    )
    return valid[~conflicting], int(exact.sum())


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
    checksum = parse_checksum(storage.read_bytes(keys.raw_checksum(symbol, interval, day)).decode())
    curated_key = keys.curated(symbol, interval, day)
    if storage.exists(curated_key):
        stats = read_curated_stats(storage.read_bytes(curated_key))
        if stats is not None and stats.source_sha256 == checksum:
            return checksum, stats
    return checksum, None


def process_day(
    storage: Storage, symbol: str, interval: str, day: date, checksum: str, max_share: float
) -> DayStats:
    """Parse, check and dedupe one day; write quarantine and (if acceptable) curated files."""
    parsed = parse_csv(_csv_payload(storage.read_bytes(keys.raw_zip(symbol, interval, day))))
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
    quarantine_key = keys.quarantine(symbol, interval, day)
    if stats.rows_quarantined:
        storage.write_bytes(quarantine_key, _quarantine_csv(parsed, rejected))
    else:
        storage.delete(quarantine_key)
    curated_key = keys.curated(symbol, interval, day)
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
) -> ValidateResult:
    """Validate every raw file of the range and curate the good ones.

    Raises:
        PipelineError: if a day or the whole run lost more than `max_share` of its rows to
            quarantine (naming the files and reasons), or there is no raw file at all.
    """
    jobs = [
        (s, d)
        for s in symbols
        for d in date_range(start, end)
        if storage.exists(keys.raw_zip(s, interval, d))
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
            stats = process_day(storage, symbol, interval, day, checksum, max_share)
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
        if stats.reasons:
            result.quarantine[name] = stats.reasons
        if stats.missing_bars:
            result.gaps[f"{stats.symbol} {stats.day}"] = stats.missing_bars
        if stats.quarantined_share > max_share:
            too_many.append(f"{name} ({stats.quarantined_share:.1%}: {json.dumps(stats.reasons)})")
    run_share = result.rows_quarantined / total if total else 0.0
    if too_many or run_share > max_share:
        detail = "; ".join(too_many) or f"run total {run_share:.2%}"
        raise PipelineError(
            f"quarantine above {max_share:.1%} of rows: {detail}; rejected rows are in quarantine/",
            "inspect the quarantine CSVs, then fix the source or raise "
            "MLOPS_QUARANTINE_MAX_SHARE and re-run",
        )
    return result
