"""The data.binance.vision layout of USD-M futures daily klines (docs/architecture.md §5)."""

from __future__ import annotations

from datetime import date

KLINE_COLUMNS: tuple[str, ...] = (
    "open_time",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "close_time",
    "quote_volume",
    "count",
    "taker_buy_volume",
    "taker_buy_quote_volume",
    "ignore",
)
"""The twelve columns of every kline CSV, in file order."""

PRICE_COLUMNS = ("open", "high", "low", "close")
VOLUME_COLUMNS = ("volume", "quote_volume", "taker_buy_volume", "taker_buy_quote_volume")
MICROSECOND_THRESHOLD = 10**15
"""A timestamp at or above this is in microseconds (spot data since 2025-01-01)."""

DAILY_PREFIX = "data/futures/um/daily/klines"

# Size bounds of one daily file. What the archive really holds, for the finest interval the
# pipelines support (1m, 1,440 bars a day): a row is ~100-160 bytes, so the CSV is ~150-230 KB
# with 1,441 lines, zipped to ~50-80 KB, and its .CHECKSUM is one ~100-byte line. Each bound
# leaves a margin of 30x or more over that (rows repeat, prices grow digits), and stays far under
# what a validate pod holds (2 GiB, four files at once): anything past one is not a daily kline
# file — a zip bomb, a wrong URL, a hostile mirror — and that one file is refused by name.
MAX_ZIP_BYTES = 16 * 2**20
"""Largest zip a download may be (~200x a 1m day); refused while streaming, not after."""
MAX_CHECKSUM_BYTES = 4096
"""Largest ``.CHECKSUM`` body (one ``sha256sum`` line of ~100 bytes)."""
MAX_ZIP_MEMBERS = 1
"""Members one zip may hold: the archive publishes exactly one CSV per zip."""
MAX_CSV_BYTES = 16 * 2**20
"""Largest decompressed CSV, declared or actual (~70x a 1m day), counted while inflating."""
MAX_CSV_LINES = 50_000
"""Most lines one CSV may hold (~35x the 1,441 of a 1m day with its header)."""
MAX_LINE_BYTES = 4096
"""Longest line of a CSV (~25x a row); it also bounds a row's columns to about 2,000."""


def zip_name(symbol: str, interval: str, day: date) -> str:
    """File name of one daily archive, e.g. ``BTCUSDT-1m-2024-01-01.zip``."""
    return f"{symbol}-{interval}-{day.isoformat()}.zip"


def zip_path(symbol: str, interval: str, day: date) -> str:
    """Path of one daily zip relative to the archive root (no leading slash)."""
    return f"{DAILY_PREFIX}/{symbol}/{interval}/{zip_name(symbol, interval, day)}"


def checksum_line(digest: str, name: str) -> str:
    """One ``sha256sum`` line as the archive writes it."""
    return f"{digest}  {name}\n"


def parse_checksum(text: str) -> str:
    """The hex digest from a ``.CHECKSUM`` body (``<64 hex>  <zip name>``, newline optional).

    Raises:
        ValueError: if the body holds no 64-hex-digit digest.
    """
    first = text.strip().split()
    digest = first[0].lower() if first else ""
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        # never echo what was read: it lands in the run's stored step result
        raise ValueError(f"not a sha256sum line ({len(text)} characters)")
    return digest
