"""The serving contract: request models for each endpoint, built from the model's feature list.

The models are strict pydantic: no string numbers, no booleans, no NaN/±Infinity, no nulls, no
unknown fields, no empty or oversized lists. BentoML validates each request against them
before the method runs — so before anything is batched, and one bad request never fails another
— and answers 400 with a ``detail`` entry per problem whose ``loc`` names the row and field.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator

from pipelines.intervals import MAX_EPOCH_MS, interval_ms

MAX_ROWS = 10_000
"""Default cap on rows (or klines) in one request."""

FIELD_BYTES = 96
"""Body budget of one field of a row: its name (the longest is ~25 characters), a number's
longest JSON form (24), quotes, separators and a pretty-printer's indentation."""

BODY_SLACK_BYTES = 64 * 1024
"""Body budget beyond the rows (the request's own keys, whitespace)."""

STRICT = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class Prediction(BaseModel):
    """One answer per row."""

    probability_up: float
    """Probability that the close `horizon` bars after the row's bar is above its close."""
    direction: str
    """``up`` when ``probability_up >= 0.5``, else ``down``."""
    model_version: str
    """Registry version of the model that answered."""


class KlinePrediction(Prediction):
    """The answer of ``/predict_klines``: the prediction for the last bar sent."""

    symbol: str
    open_time: int
    """Open time of the bar predicted (epoch ms)."""


@lru_cache(maxsize=8)
def feature_row_model(features: tuple[str, ...]) -> type[BaseModel]:
    """One feature row: every feature a finite number; optional ``symbol`` and ``open_time``
    (epoch ms) let the monitor join a logged prediction with its realized outcome."""
    fields: dict[str, Any] = {name: (float, ...) for name in features}
    fields["symbol"] = (str | None, Field(default=None, min_length=1, max_length=32))
    fields["open_time"] = (int | None, Field(default=None, ge=0, le=MAX_EPOCH_MS))
    return create_model("FeatureRow", __config__=STRICT, **fields)


@lru_cache(maxsize=8)
def predict_request_model(features: tuple[str, ...], max_rows: int = MAX_ROWS) -> type[BaseModel]:
    """``{"rows": [{feature: number, …}, …]}`` with 1 to `max_rows` rows."""
    row = feature_row_model(features)
    rows = Annotated[list[row], Field(min_length=1, max_length=max_rows)]  # type: ignore[valid-type]
    return create_model("PredictRequest", __config__=STRICT, rows=(rows, ...))


def rows_matrix(rows: list[BaseModel], features: tuple[str, ...]) -> np.ndarray:
    """Validated rows as a float matrix in the model's column order."""
    return np.array([[getattr(r, f) for f in features] for r in rows], dtype=np.float64)


class Kline(BaseModel):
    """One bar with the archive's column names; ``ignore`` may be left out."""

    model_config = STRICT

    open_time: int = Field(ge=0, le=MAX_EPOCH_MS)
    open: float = Field(gt=0)
    high: float = Field(gt=0)
    low: float = Field(gt=0)
    close: float = Field(gt=0)
    volume: float = Field(ge=0)
    close_time: int = Field(ge=0, le=MAX_EPOCH_MS)
    quote_volume: float = Field(ge=0)
    count: int = Field(ge=0)
    taker_buy_volume: float = Field(ge=0)
    taker_buy_quote_volume: float = Field(ge=0)
    ignore: float | None = None


def check_klines(bars: list[Kline], interval: str) -> list[Kline]:
    """Bars in time order, on the interval grid, each one consistent (low ≤ open/close ≤ high).

    Raises:
        ValueError: naming the first offending bar by its index.
    """
    step = interval_ms(interval)
    for i, bar in enumerate(bars):
        if not bar.low <= min(bar.open, bar.close) <= max(bar.open, bar.close) <= bar.high:
            raise ValueError(f"bar {i}: need low <= open, close <= high")
        if bar.open_time % step:
            raise ValueError(
                f"bar {i}: open_time {bar.open_time} is not on the {interval} grid; "
                f"send {interval} bars (the model's interval)"
            )
        if i and bar.open_time <= bars[i - 1].open_time:
            raise ValueError(
                f"bar {i}: out of order or repeated (open_time {bar.open_time} after "
                f"{bars[i - 1].open_time}); send bars oldest first"
            )
    return bars


@lru_cache(maxsize=8)
def klines_request_model(interval: str, min_bars: int, max_rows: int = MAX_ROWS) -> type[BaseModel]:
    """``{"symbol": "BTCUSDT", "klines": [{…}, …]}``: at least `min_bars` (the features'
    warm-up) consecutive `interval` bars, oldest first, ending at the bar to predict."""

    class KlinesRequest(BaseModel):
        model_config = STRICT

        symbol: str = Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9]+$")
        klines: list[Kline] = Field(min_length=min_bars, max_length=max_rows)

        @field_validator("klines")
        @classmethod
        def _ordered(cls, bars: list[Kline]) -> list[Kline]:
            return check_klines(bars, interval)

    return KlinesRequest


def klines_frame(bars: list[Kline]) -> pd.DataFrame:
    """Validated klines as the bar frame the feature module takes (``open_time`` in UTC)."""
    frame = pd.DataFrame([bar.model_dump() for bar in bars])
    frame["open_time"] = pd.to_datetime(frame["open_time"], unit="ms", utc=True)
    return frame


def max_body_bytes(max_rows: int, fields_per_row: int) -> int:
    """Largest request body worth reading: `max_rows` rows of `fields_per_row` fields each.
    A body over it cannot be a valid request; it is refused (413) before it is read whole."""
    return max_rows * fields_per_row * FIELD_BYTES + BODY_SLACK_BYTES


def error_body(message: str, detail: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The shape of every 4xx answer, the same as BentoML's validation errors."""
    return {"error": message, "detail": detail or []}
