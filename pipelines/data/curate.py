"""What validation writes for one day: its stats, the quarantine CSV (one reason per row) and
the curated Parquet, shared by the per-file and the batched paths of `pipelines.data.validate`."""

from __future__ import annotations

import io
from collections import Counter
from datetime import date

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, Field

from pipelines import layout
from pipelines.data.rows import NUMERIC, Parsed, reasons_of
from pipelines.intervals import bars_per_day
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


def curated_table(parsed: Parsed, rows: np.ndarray) -> pa.Table:
    """The rows `rows` of `parsed` in the curated schema (timestamps in ms, UTC)."""
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


def quarantine_csv(parsed: Parsed, rows: np.ndarray) -> bytes:
    """The quarantine file of one day: each rejected row with its reason (and raw line)."""
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


def refuse_day(
    storage: Storage, symbol: str, interval: str, day: date, checksum: str, why: str
) -> DayStats:
    """Record a file refused unread: its reason in quarantine, no curated copy left behind."""
    note = pd.DataFrame({"reason": [f"file refused: {why}"], "raw_line": [""]})
    storage.write_bytes(layout.quarantine(symbol, interval, day), note.to_csv(index=False).encode())
    storage.delete(layout.curated(symbol, interval, day))
    return DayStats(symbol=symbol, day=day.isoformat(), source_sha256=checksum, refused=why)


def write_day(
    storage: Storage,
    file: tuple[str, str, date, str],
    parsed: Parsed,
    kept: pa.Table,
    exact_duplicates: int,
    max_share: float,
) -> DayStats:
    """Count one checked day, write its quarantine CSV and (if acceptable) its curated file.

    `file` is (symbol, interval, day, source checksum); `parsed` holds the day's rows with their
    rejection codes, `kept` the rows to curate (deduplicated, time-ordered).
    """
    symbol, interval, day, checksum = file
    rejected = np.flatnonzero(parsed.codes)
    reasons = Counter(reasons_of(parsed, rejected))
    reasons.update(reason for _, reason in parsed.extra_rejects)
    stats = DayStats(
        symbol=symbol,
        day=day.isoformat(),
        source_sha256=checksum,
        has_header=parsed.has_header,
        rows_total=len(parsed.codes) + len(parsed.extra_rejects),
        rows_valid=kept.num_rows,
        rows_quarantined=len(rejected) + len(parsed.extra_rejects),
        rows_duplicate=exact_duplicates,
        missing_bars=max(0, bars_per_day(interval) - kept.num_rows),
        reasons=dict(sorted(reasons.items())),
    )
    quarantine_key = layout.quarantine(symbol, interval, day)
    if stats.rows_quarantined:
        storage.write_bytes(quarantine_key, quarantine_csv(parsed, rejected))
    else:
        storage.delete(quarantine_key)
    curated_key = layout.curated(symbol, interval, day)
    if stats.quarantined_share > max_share:
        storage.delete(curated_key)  # never leave an older curated copy of a rejected day
        return stats
    table = kept.replace_schema_metadata({STATS_KEY: stats.model_dump_json().encode()})
    buffer = io.BytesIO()
    # No dictionary encoding: prices and volumes are nearly all distinct, so it only costs time.
    pq.write_table(table, buffer, use_dictionary=False, compression="zstd")
    storage.write_bytes(curated_key, buffer.getvalue())
    return stats
