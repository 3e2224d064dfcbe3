"""Write a synthetic archive in the exact data.binance.vision layout (the embedded default)."""

from __future__ import annotations

import hashlib
import io
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.archive import KLINE_COLUMNS, checksum_line, zip_name, zip_path
from pipelines.storage import LocalStorage
from pipelines.synthetic.market import day_bars, profile, stable_int


@dataclass
class MirrorSummary:
    """What `write_mirror` wrote."""

    root: str
    files: int = 0
    rows: int = 0
    with_header: int = 0
    days: list[str] = field(default_factory=list)


def _decimals(step: float) -> int:
    return max(0, round(-float(np.log10(step))))


def render_csv(bars: pd.DataFrame, symbol: str, header: bool) -> bytes:
    """The CSV text of one archive file: fixed decimals per column, as Binance prints them."""
    price = _decimals(profile(symbol).tick)
    formats = {
        "open": price,
        "high": price,
        "low": price,
        "close": price,
        "volume": 3,
        "quote_volume": 4,
        "taker_buy_volume": 3,
        "taker_buy_quote_volume": 4,
    }
    columns = []
    for name in KLINE_COLUMNS:
        values = bars[name].to_numpy()
        if name in formats:
            columns.append(np.char.mod(f"%.{formats[name]}f", values))
        else:
            columns.append(values.astype(np.int64).astype(str))
    lines = [",".join(row) for row in zip(*columns, strict=True)]
    if header:
        lines.insert(0, ",".join(KLINE_COLUMNS))
    return ("\n".join(lines) + "\n").encode()


def make_zip(csv_name: str, payload: bytes, day: date) -> bytes:
    """A deterministic zip holding one CSV (fixed timestamp, so checksums are reproducible)."""
    buffer = io.BytesIO()
    info = zipfile.ZipInfo(csv_name, date_time=(day.year, day.month, day.day, 0, 0, 0))
    info.compress_type = zipfile.ZIP_DEFLATED
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(info, payload)
    return buffer.getvalue()


def has_header(seed: int, symbol: str, day: date) -> bool:
    """Whether this file carries a header row; a deterministic mix, as in the real archive."""
    return stable_int("header", seed, symbol, day.isoformat()) % 2 == 0


def write_mirror(
    root: Path,
    symbols: Sequence[str],
    interval: str,
    start: date,
    days: int,
    seed: int = 42,
    shift_at: date | None = None,
    on_file: Callable[[], None] | None = None,
) -> MirrorSummary:
    """Write daily zips and their ``.CHECKSUM`` files for every symbol and day.

    Files are written atomically; running it again with the same arguments rewrites the same
    bytes. Returns counts of what was written.
    """
    storage = LocalStorage(root)
    summary = MirrorSummary(root=str(root))
    for offset in range(days):
        day = start + timedelta(days=offset)
        summary.days.append(day.isoformat())
        for symbol in symbols:
            bars = day_bars(symbol, day, interval, seed, shift_at)
            header = has_header(seed, symbol, day)
            name = zip_name(symbol, interval, day)
            blob = make_zip(
                name.removesuffix(".zip") + ".csv", render_csv(bars, symbol, header), day
            )
            path = zip_path(symbol, interval, day)
            storage.write_bytes(path, blob)
            digest = hashlib.sha256(blob).hexdigest()
            storage.write_bytes(path + ".CHECKSUM", checksum_line(digest, name).encode())
            summary.files += 1
            summary.rows += len(bars)
            summary.with_header += int(header)
            if on_file:
                on_file()
    return summary
