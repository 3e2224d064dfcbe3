"""The one feature module: used by training now and by the serving endpoint (no skew).

Every feature of a bar uses only that bar and earlier ones (trailing windows, backward shifts),
so changing any bar after t changes no feature at or before t (tested). Bars are a sequence:
windows count bars, not clock time, so market-closed gaps need no special case.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

FEATURES_VERSION = 3
"""Bump when the feature code changes meaning: it is part of every dataset hash. (2: datasets
store the features as float32; 3: no `close` column, written symbol by symbol.)"""


class FeatureConfig(BaseModel):
    """How bars become model rows. Part of the dataset hash."""

    model_config = ConfigDict(frozen=True)

    interval: str = "1m"
    """Model interval; curated bars are resampled to it when it is longer than theirs."""
    horizon: int = Field(default=12, ge=1)
    """Label: is the close `horizon` bars ahead above the current close?"""
    return_lookbacks: tuple[int, ...] = (1, 3, 6, 12, 24, 48)
    volatility_windows: tuple[int, ...] = (12, 48)
    volume_window: int = 48
    rsi_window: int = 14

    @property
    def warmup_bars(self) -> int:
        """Bars needed before the first row whose features are all defined."""
        return (
            max(
                *self.return_lookbacks,
                *self.volatility_windows,
                self.volume_window,
                self.rsi_window,
            )
            + 1
        )


def feature_names(config: FeatureConfig) -> list[str]:
    """Model input columns, in order."""
    names = [f"log_return_{k}" for k in config.return_lookbacks]
    names += [f"realized_vol_{w}" for w in config.volatility_windows]
    names += [
        "hl_range",
        f"volume_z_{config.volume_window}",
        "taker_buy_ratio",
        "trade_count_change",
        f"rsi_{config.rsi_window}",
        "tod_sin",
        "tod_cos",
        "dow_sin",
        "dow_cos",
    ]
    return names


def _log(values: pd.Series) -> pd.Series:
    return pd.Series(np.log(values.to_numpy(dtype=float)), index=values.index)


def _log1p(values: pd.Series) -> pd.Series:
    return pd.Series(np.log1p(values.to_numpy(dtype=float)), index=values.index)


def compute_features(bars: pd.DataFrame, config: FeatureConfig) -> pd.DataFrame:
    """Features of one symbol's bars (sorted by ``open_time``); NaN until warmed up.

    Args:
        bars: ``open_time`` (UTC timestamps) and the kline value columns.
        config: lookbacks and windows.

    Returns:
        ``open_time`` plus one column per `feature_names(config)`, aligned with `bars`.
    """
    close = bars["close"].astype(float)
    log_close = _log(close)
    one = log_close.diff()
    out = pd.DataFrame({"open_time": bars["open_time"].to_numpy()}, index=bars.index)
    for k in config.return_lookbacks:
        out[f"log_return_{k}"] = log_close - log_close.shift(k)
    for w in config.volatility_windows:
        out[f"realized_vol_{w}"] = one.rolling(w, min_periods=w).std()
    out["hl_range"] = np.log(bars["high"].astype(float) / bars["low"].astype(float))
    log_volume = _log1p(bars["volume"])
    w = config.volume_window
    std = log_volume.rolling(w, min_periods=w).std()
    out[f"volume_z_{w}"] = ((log_volume - log_volume.rolling(w, min_periods=w).mean()) / std).where(
        std > 0, 0.0
    )
    volume = bars["volume"].astype(float)
    out["taker_buy_ratio"] = (bars["taker_buy_volume"].astype(float) / volume).where(
        volume > 0, 0.5
    )
    log_count = _log1p(bars["count"])
    out["trade_count_change"] = log_count - log_count.shift(1)
    gains, losses = one.clip(lower=0), (-one).clip(lower=0)
    r = config.rsi_window
    mean_gain = gains.rolling(r, min_periods=r).mean()
    mean_loss = losses.rolling(r, min_periods=r).mean()
    total = mean_gain + mean_loss
    out[f"rsi_{r}"] = (mean_gain / total).where(total > 0, 0.5)
    times = pd.DatetimeIndex(bars["open_time"])
    minute_of_day = (times.hour * 60 + times.minute).to_numpy()
    day_of_week = times.dayofweek.to_numpy() + minute_of_day / 1440
    out["tod_sin"] = np.sin(2 * np.pi * minute_of_day / 1440)
    out["tod_cos"] = np.cos(2 * np.pi * minute_of_day / 1440)
    out["dow_sin"] = np.sin(2 * np.pi * day_of_week / 7)
    out["dow_cos"] = np.cos(2 * np.pi * day_of_week / 7)
    return out


def compute_labels(bars: pd.DataFrame, horizon: int) -> pd.DataFrame:
    """``label`` (1 if the close `horizon` bars ahead is above this close, else 0; NaN while
    unknown) and ``future_return`` (that log return, for the strategy metric)."""
    log_close = _log(bars["close"])
    future = log_close.shift(-horizon) - log_close
    label = (future > 0).astype(float).where(future.notna())
    return pd.DataFrame({"label": label, "future_return": future}, index=bars.index)


def symbol_rows(bars: pd.DataFrame, symbol: str, config: FeatureConfig) -> pd.DataFrame:
    """Model rows of one symbol: features, labels, warm-up dropped."""
    rows = pd.concat([compute_features(bars, config), compute_labels(bars, config.horizon)], axis=1)
    rows.insert(0, "symbol", symbol)
    ready: pd.DataFrame = rows.iloc[config.warmup_bars - 1 :].dropna(subset=feature_names(config))
    return ready
