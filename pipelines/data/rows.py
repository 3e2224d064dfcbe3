"""The row rules of one archive CSV: parse it typed (header detected per file), reject what
breaks a rule with its reason, and separate exact from conflicting duplicates."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from datetime import date

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from pipelines.archive import KLINE_COLUMNS, MICROSECOND_THRESHOLD, PRICE_COLUMNS
from pipelines.intervals import DAY_MS, interval_ms

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
NUMERIC = KLINE_COLUMNS[:-1]  # `ignore` is not checked and not kept
_TYPED = {
    name: (pa.int64() if name in ("open_time", "close_time", "count") else pa.float64())
    for name in NUMERIC
}
# `ignore` is still counted as a column (a row must have 12) but never converted.
_TYPED_CONVERT = pacsv.ConvertOptions(column_types=_TYPED, include_columns=list(NUMERIC))


@dataclass
class Parsed:
    """Rows of one CSV: numeric columns (may hold NaN) and per-row rejection reasons."""

    columns: dict[str, np.ndarray]
    raw_lines: list[str]
    codes: np.ndarray  # int16 per row: 0 = valid, else 1 + index into `reason_names`
    has_header: bool
    reason_names: list[str] = field(default_factory=list)
    extra_rejects: list[tuple[str, str]] = field(default_factory=list)  # (line, reason)


def _detect_header(payload: bytes) -> bool:
    first = payload.lstrip()[:64].split(b",", 1)[0].strip()
    return not first.lstrip(b"-").isdigit()


def parse_csv(payload: bytes) -> Parsed:
    """Parse one archive CSV; rows with the wrong column count become rejects, not errors.

    `payload` comes through `pipelines.data.unzip.read_csv`, which bounds its size, lines and
    line length (so every row fits pyarrow's block and a bad row's text stays small)."""
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
            convert_options=_TYPED_CONVERT,
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


def day_start_ms(day: date) -> int:
    """Milliseconds from the epoch to `day`'s midnight UTC."""
    return (day.toordinal() - date(1970, 1, 1).toordinal()) * DAY_MS


def check_rows(parsed: Parsed, interval: str, day: date | np.ndarray) -> None:
    """Set a rejection reason on every row that breaks a rule (first rule broken wins).

    `day` is the file's day, or (for a batch of files) each row's file day as ms from the epoch.
    """
    day_start = day if isinstance(day, np.ndarray) else day_start_ms(day)
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


@dataclass
class Batch:
    """Rows of several archive CSVs parsed as one table, in file order."""

    parsed: Parsed
    counts: np.ndarray
    """Rows of each file."""
    headers: list[bool]
    """Whether each file had a header row."""


def parse_batch(payloads: list[bytes]) -> Batch | None:
    """Parse several archive CSVs in one pass, or None when one of them needs `parse_csv`.

    Only well-formed files take this path: every line 12 columns and every value a number (a
    quote, a blank or ragged line, or a non-number anywhere sends the whole batch back to
    `parse_csv`, file by file, which names each bad row). The row rules are the same for both
    paths (`check_rows`); only the per-call cost of parsing 1,440-row files one by one goes.
    """
    bodies, counts, headers = [], [], []
    for payload in payloads:
        if not payload or payload[:1].isspace() or b'"' in payload:
            return None
        header = _detect_header(payload)
        body = payload.partition(b"\n")[2] if header else payload
        if body and not body.endswith(b"\n"):
            body += b"\n"
        bodies.append(body)
        counts.append(body.count(b"\n"))
        headers.append(header)
    invalid: list[int] = []

    def on_invalid(row: pacsv.InvalidRow) -> str:
        invalid.append(row.actual_columns)
        return "skip"

    total = sum(counts)
    try:
        table = pacsv.read_csv(
            io.BytesIO(b"".join(bodies)),
            read_options=pacsv.ReadOptions(
                column_names=list(KLINE_COLUMNS), use_threads=False, block_size=1 << 22
            ),
            # A blank line is a 1-column row here (an invalid row), so no line goes uncounted.
            parse_options=pacsv.ParseOptions(
                invalid_row_handler=on_invalid, ignore_empty_lines=False
            ),
            convert_options=_TYPED_CONVERT,
        )
    except pa.ArrowInvalid:
        return None
    if invalid or table.num_rows != total:
        return None
    columns = {name: _to_numpy(table.column(name)) for name in NUMERIC}
    parsed = Parsed(columns, [], np.zeros(total, dtype=np.int16), has_header=False)
    return Batch(parsed, np.array(counts, dtype=np.int64), headers)
