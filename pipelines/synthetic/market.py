"""A synthetic but realistic USD-M futures market, deterministic per (seed, symbol, day).

Each day is generated on its own from two ingredients, so any date range of a mirror agrees
with any other range on the days they share:

* a daily path of log-price anchors and volatility levels, drawn once from 2017-01-01 on
  (prefix-stable: adding days never changes earlier ones);
* the intraday minutes of that day: stochastic volatility (log-variance AR(1), which gives
  volatility clustering), a UTC intraday seasonality (Asia/Europe/US sessions), a Brownian
  bridge that lands exactly on the next day's anchor, then consistent OHLC, volumes,
  taker-buy volumes and trade counts.

From ``shift_at`` on the regime changes (higher volatility and volume, a trend, more
aggressive buyers), which is how drift is produced on purpose.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date
from functools import lru_cache

import numpy as np
import pandas as pd
from scipy.signal import lfilter

from pipelines.archive import KLINE_COLUMNS
from pipelines.data.bars import resample_bars
from pipelines.errors import PipelineError
from pipelines.intervals import DAY_MS

EPOCH = date(2017, 1, 1)
LAST_DAY = date(2040, 12, 31)
MINUTES = 1440
MINUTE_MS = 60_000
FLOW_PERSISTENCE = 0.9
FLOW_IMPACT = 0.1


@dataclass(frozen=True)
class SymbolProfile:
    """Scale of one symbol's market."""

    start_price: float
    tick: float
    minute_volume: float
    daily_vol: float


_PROFILES = {
    "BTCUSDT": SymbolProfile(start_price=20_000.0, tick=0.1, minute_volume=120.0, daily_vol=0.035),
    "ETHUSDT": SymbolProfile(start_price=800.0, tick=0.01, minute_volume=900.0, daily_vol=0.045),
}


@dataclass(frozen=True)
class Regime:
    """Multipliers applied from the shift date on (the default is ``--shift-at``'s regime; the
    backtest's controlled shifts change one ingredient at a time, e.g. ``Regime(vol=2.0,
    volume=1.0, daily_drift=0.0, taker_bias=0.0)``)."""

    vol: float = 2.5
    volume: float = 3.0
    daily_drift: float = 0.004
    taker_bias: float = 0.08
    flow: float = 1.0
    """Multiplier of the order flow's impact on the next minutes' returns (`FLOW_IMPACT`), the
    signal the labels depend on: ``-1`` reverses it, ``0`` removes it. A concept change: no
    feature's distribution moves, only what the features say about the label."""


DEFAULT_REGIME = Regime()


def stable_int(*parts: object) -> int:
    """A deterministic 64-bit integer from `parts` (independent of PYTHONHASHSEED)."""
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little")


def profile(symbol: str) -> SymbolProfile:
    """Scale of `symbol`; unknown symbols get a deterministic profile of their own."""
    if symbol in _PROFILES:
        return _PROFILES[symbol]
    h = stable_int("profile", symbol)
    price = 0.05 * 10 ** ((h % 5000) / 1000)  # 0.05 .. 5000
    return SymbolProfile(
        start_price=price,
        tick=10 ** (np.floor(np.log10(price)) - 4),
        minute_volume=50_000.0 / price,
        daily_vol=0.03 + (h % 40) / 1000,
    )


@lru_cache(maxsize=64)
def _daily_path(
    seed: int, symbol: str, shift_ordinal: int | None, regime: Regime = DEFAULT_REGIME
) -> tuple[np.ndarray, np.ndarray]:
    """Log-price anchor at each day's open, and each day's volatility multiplier."""
    n = (LAST_DAY - EPOCH).days + 2
    rng = np.random.default_rng([seed, stable_int("daily", symbol)])
    shocks = rng.standard_normal(n)
    vol_shocks = rng.standard_normal(n)
    # Day-level volatility clustering: log-vol AR(1) with persistence 0.9.
    log_vol = lfilter([0.25], [1.0, -0.9], vol_shocks)
    vol = np.exp(log_vol - 0.5 * 0.25**2 / (1 - 0.81))
    prof = profile(symbol)
    days = np.arange(n)
    drift = np.zeros(n)
    if shift_ordinal is not None:
        shifted = days >= shift_ordinal - EPOCH.toordinal()
        vol = np.where(shifted, vol * regime.vol, vol)
        drift = np.where(shifted, regime.daily_drift, drift)
    # Mean-reverting deviation (half-life ~140 days) around a slow uptrend keeps prices
    # in a plausible band for decades while days still move like a random walk.
    deviation = lfilter([1.0], [1.0, -0.995], prof.daily_vol * vol * shocks)
    trend = np.log(prof.start_price) + 0.0003 * days + np.cumsum(drift)
    anchors = trend + np.concatenate([[0.0], deviation[:-1]])
    return anchors, vol


def _seasonality() -> np.ndarray:
    """Relative activity of each UTC minute: Asia, Europe and US sessions, quiet late US."""
    t = np.arange(MINUTES) / 60.0
    bumps = (
        0.9 * np.exp(-0.5 * ((t - 1.5) / 1.5) ** 2)
        + 1.0 * np.exp(-0.5 * ((t - 8.0) / 1.2) ** 2)
        + 1.6 * np.exp(-0.5 * ((t - 14.5) / 1.5) ** 2)
    )
    season = 0.6 + bumps
    normalized: np.ndarray = season / np.sqrt(np.mean(season**2))
    return normalized


def minute_bars(
    symbol: str,
    day: date,
    seed: int = 42,
    shift_at: date | None = None,
    regime: Regime = DEFAULT_REGIME,
) -> pd.DataFrame:
    """The 1,440 one-minute klines of `symbol` on `day` (archive columns, numeric dtypes).

    Raises:
        PipelineError: if `day` is outside the simulated calendar (2017-01-01 .. 2040-12-31).
    """
    if not EPOCH <= day <= LAST_DAY:
        raise PipelineError(
            f"date {day} is outside the synthetic market's calendar",
            f"pick dates between {EPOCH} and {LAST_DAY}",
        )
    shifted = shift_at is not None and day >= shift_at
    anchors, day_vol = _daily_path(seed, symbol, shift_at.toordinal() if shift_at else None, regime)
    i = (day - EPOCH).days
    prof = profile(symbol)
    rng = np.random.default_rng([seed, stable_int("intraday", symbol), day.toordinal()])

    season = _seasonality() * (1 + 0.05 * rng.standard_normal())
    log_var = lfilter([0.3], [1.0, -0.97], rng.standard_normal(MINUTES))
    clustered = np.exp(log_var - 0.5 * 0.3**2 / (1 - 0.97**2))
    sigma = prof.daily_vol * day_vol[i] / np.sqrt(MINUTES) * season * np.sqrt(clustered)
    # Latent order flow (AR(1), unit variance): it nudges the next minutes' returns and shows
    # in the taker-buy share, so a model has a small, honest edge to learn.
    flow = lfilter(
        [np.sqrt(1 - FLOW_PERSISTENCE**2)], [1.0, -FLOW_PERSISTENCE], rng.standard_normal(MINUTES)
    )
    noise = rng.standard_t(df=5, size=MINUTES) / np.sqrt(5 / 3)
    lagged_flow = np.concatenate([[0.0], flow[:-1]])
    impact = FLOW_IMPACT * (regime.flow if shifted else 1.0)
    returns = sigma * (impact * lagged_flow + np.sqrt(max(0.0, 1 - impact**2)) * noise)
    path = np.cumsum(returns)
    path -= np.arange(1, MINUTES + 1) / MINUTES * (path[-1] - (anchors[i + 1] - anchors[i]))
    log_close = anchors[i] + path
    log_open = np.concatenate([[anchors[i]], log_close[:-1]])

    excursion = sigma * np.abs(rng.standard_normal((2, MINUTES))) * 0.8
    tick = prof.tick
    open_ = np.round(np.exp(log_open) / tick) * tick
    close = np.round(np.exp(log_close) / tick) * tick
    high = np.maximum(
        np.round(np.exp(np.maximum(log_open, log_close) + excursion[0]) / tick) * tick,
        np.maximum(open_, close),
    )
    low = np.minimum(
        np.round(np.exp(np.minimum(log_open, log_close) - excursion[1]) / tick) * tick,
        np.minimum(open_, close),
    )

    activity = season**1.5 * clustered**0.5 * (1 + 4 * np.abs(returns) / sigma.mean())
    volume_scale = prof.minute_volume * (regime.volume if shifted else 1.0)
    volume = np.round(volume_scale * activity * rng.lognormal(0.0, 0.35, MINUTES), 3)
    vwap = (high + low + close) / 3
    bias = regime.taker_bias if shifted else 0.0
    taker_share = np.clip(
        0.5
        + bias
        + 0.12 * np.tanh(flow)
        + 0.15 * np.tanh(noise)
        + 0.04 * rng.standard_normal(MINUTES),
        0.02,
        0.98,
    )
    taker_volume = np.round(volume * taker_share, 3)
    count = rng.poisson(np.maximum(volume / prof.minute_volume * 900, 1.0))

    open_time = (day.toordinal() - date(1970, 1, 1).toordinal()) * DAY_MS + np.arange(
        MINUTES
    ) * MINUTE_MS
    return pd.DataFrame(
        {
            "open_time": open_time.astype(np.int64),
            "open": open_,
            "high": high,
            "low": low,
            "close": close,
            "volume": volume,
            "close_time": (open_time + MINUTE_MS - 1).astype(np.int64),
            "quote_volume": np.round(volume * vwap, 4),
            "count": count.astype(np.int64),
            "taker_buy_volume": taker_volume,
            "taker_buy_quote_volume": np.round(taker_volume * vwap, 4),
            "ignore": np.zeros(MINUTES, dtype=np.int64),
        },
        columns=list(KLINE_COLUMNS),
    )


def day_bars(
    symbol: str,
    day: date,
    interval: str,
    seed: int = 42,
    shift_at: date | None = None,
    regime: Regime = DEFAULT_REGIME,
) -> pd.DataFrame:
    """Klines of one day at `interval`, as the archive would publish them."""
    minutes = minute_bars(symbol, day, seed, shift_at, regime)
    return minutes if interval == "1m" else resample_bars(minutes, interval)
