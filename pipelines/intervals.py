"""Kline intervals as Binance names them, and their lengths."""

from __future__ import annotations

from datetime import timedelta

from pipelines.errors import PipelineError

MAX_EPOCH_MS = 4_102_444_800_000
"""2100-01-01T00:00:00Z in epoch milliseconds: the latest bar time any input may name (a larger
one is a unit error or an attack; pandas cannot even represent some of them)."""
MAX_RUN_DAYS = 3_660
"""The longest range one run may cover (about ten years of daily files)."""

_MS = {
    "1m": 60_000,
    "3m": 3 * 60_000,
    "5m": 5 * 60_000,
    "15m": 15 * 60_000,
    "30m": 30 * 60_000,
    "1h": 3_600_000,
    "2h": 2 * 3_600_000,
    "4h": 4 * 3_600_000,
    "6h": 6 * 3_600_000,
    "8h": 8 * 3_600_000,
    "12h": 12 * 3_600_000,
    "1d": 86_400_000,
}
DAY_MS = 86_400_000
SUPPORTED = tuple(_MS)


def interval_ms(interval: str) -> int:
    """Length of one bar of `interval` in milliseconds.

    Raises:
        PipelineError: if the interval is not one the daily archive publishes.
    """
    try:
        return _MS[interval]
    except KeyError:
        raise PipelineError(
            f"unknown interval {interval!r}",
            f"use one of {', '.join(SUPPORTED)}",
        ) from None


def interval_delta(interval: str) -> timedelta:
    """Length of one bar as a timedelta."""
    return timedelta(milliseconds=interval_ms(interval))


def bars_per_day(interval: str) -> int:
    """Number of bars in one UTC day (1 for `1d`)."""
    return DAY_MS // interval_ms(interval)
