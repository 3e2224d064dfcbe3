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
