"""Bar helpers shared by ingestion, features, the monitor and the synthetic market: the day range
of a request, reading curated bars back, and resampling to a longer interval."""

from __future__ import annotations

import io
from datetime import date, timedelta

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines import layout
from pipelines.archive import KLINE_COLUMNS
from pipelines.errors import PipelineError
from pipelines.intervals import interval_ms
from pipelines.storage import Storage


def date_range(start: date, end: date) -> list[date]:
    """Every day from `start` to `end`, inclusive."""
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]


def resample_bars(bars: pd.DataFrame, interval: str) -> pd.DataFrame:
    """Aggregate klines to a longer `interval` (bucket start = open_time floored to it).

    Works on any frame with the archive's columns, sorted by ``open_time`` in milliseconds.
    """
    step = interval_ms(interval)
    bucket = (bars["open_time"] // step) * step
    grouped = bars.groupby(bucket, sort=True)
    out = pd.DataFrame(
        {
            "open": grouped["open"].first(),
            "high": grouped["high"].max(),
            "low": grouped["low"].min(),
            "close": grouped["close"].last(),
            "volume": grouped["volume"].sum(),
            "quote_volume": grouped["quote_volume"].sum(),
            "count": grouped["count"].sum(),
            "taker_buy_volume": grouped["taker_buy_volume"].sum(),
            "taker_buy_quote_volume": grouped["taker_buy_quote_volume"].sum(),
        }
    )
    out.index.name = "open_time"
    out = out.reset_index()
    out["close_time"] = out["open_time"] + step - 1
    out["ignore"] = 0
    return out[list(KLINE_COLUMNS)]


def load_curated(
    storage: Storage, symbol: str, interval: str, start: date, end: date
) -> pd.DataFrame:
    """Curated bars of one symbol over a date range, time-ordered (empty if none)."""
    tables = [
        pq.read_table(io.BytesIO(storage.read_bytes(key)))
        for day in date_range(start, end)
        if storage.exists(key := layout.curated(symbol, interval, day))
    ]
    if not tables:
        return pd.DataFrame()
    frame: pd.DataFrame = pa.concat_tables(tables).to_pandas()
    return frame.sort_values("open_time", ignore_index=True)


def prepare_bars(bars: pd.DataFrame, source_interval: str, model_interval: str) -> pd.DataFrame:
    """Bars at the model interval (resampled when longer than the source's)."""
    if model_interval == source_interval:
        return bars
    if interval_ms(model_interval) < interval_ms(source_interval):
        raise PipelineError(
            f"model interval {model_interval} is shorter than the fetched {source_interval}",
            "fetch a finer interval or choose MLOPS_MODEL_INTERVAL >= the fetched one",
        )
    epoch = pd.Timestamp(0, tz="UTC")
    as_ms = bars.assign(
        open_time=(bars["open_time"] - epoch) // pd.Timedelta(milliseconds=1),
        close_time=0,
        ignore=0,
    )
    out = resample_bars(as_ms, model_interval)
    out["open_time"] = pd.to_datetime(out["open_time"], unit="ms", utc=True)
    return out
