"""Features step: curated bars → model-ready dataset, content-addressed by inputs and config."""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Sequence
from datetime import date
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import BaseModel

from pipelines import layout
from pipelines.data.bars import date_range, load_curated, prepare_bars
from pipelines.data.validate import read_curated_stats
from pipelines.errors import PipelineError
from pipelines.ml.features import (
    FEATURES_VERSION,
    FeatureConfig,
    feature_names,
    symbol_rows,
)
from pipelines.storage import Storage


class DatasetInfo(BaseModel):
    """What the features step produced; ``manifest.json`` of the dataset holds the same."""

    dataset_hash: str
    prefix: str
    interval: str
    source_interval: str
    horizon: int
    symbols: list[str]
    start: date
    end: date
    features: list[str]
    rows: int
    """Labelled rows (training and evaluation)."""
    rows_unlabelled: int
    """Latest rows whose label is not known yet: kept for scoring, never trained on."""
    first_time: str
    last_time: str
    config: dict[str, Any]
    reused: bool = False


def dataset_inputs(
    storage: Storage, symbols: Sequence[str], interval: str, start: date, end: date
) -> dict[str, dict[str, str]]:
    """symbol → day → checksum of the verified zip its curated file was made from."""
    inputs: dict[str, dict[str, str]] = {}
    for symbol in symbols:
        days: dict[str, str] = {}
        for day in date_range(start, end):
            key = layout.curated(symbol, interval, day)
            if storage.exists(key):
                stats = read_curated_stats(storage.read_bytes(key))
                days[day.isoformat()] = stats.source_sha256 if stats else "unknown"
        if not days:
            raise PipelineError(
                f"symbol {symbol} has no curated {interval} data between {start} and {end}",
                "check --symbols and the dates, or run the fetch and validate steps first",
            )
        inputs[symbol] = days
    return inputs


def dataset_hash(
    inputs: dict[str, dict[str, str]], source_interval: str, config: FeatureConfig
) -> str:
    """Same inputs and feature config → same hash (16 hex digits of a sha256)."""
    document = {
        "features_version": FEATURES_VERSION,
        "source_interval": source_interval,
        "config": config.model_dump(mode="json"),
        "inputs": inputs,
    }
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()[:16]


def _parquet(table: pa.Table) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()


def compact(rows: pd.DataFrame, features: Sequence[str]) -> pa.Table:
    """One symbol's model rows as Arrow, the features in float32: half the memory, and the
    model bins each feature into at most 255 bins anyway (ROC-AUC cost: benchmarks/README.md)."""
    table = pa.Table.from_pandas(rows, preserve_index=False)
    for name in features:
        i = table.schema.get_field_index(name)
        table = table.set_column(i, name, table[name].cast(pa.float32()))
    return table.replace_schema_metadata(None)


def build_dataset(
    storage: Storage,
    symbols: Sequence[str],
    source_interval: str,
    start: date,
    end: date,
    config: FeatureConfig,
) -> DatasetInfo:
    """Compute (or reuse) the dataset of these inputs under ``features/{interval}/{hash}/``.

    ``labelled.parquet`` holds rows with a known label, ``scoring.parquet`` the latest rows
    without one; ``manifest.json`` is written last, so its presence means the dataset is whole.
    """
    inputs = dataset_inputs(storage, symbols, source_interval, start, end)
    digest = dataset_hash(inputs, source_interval, config)
    prefix = layout.dataset(config.interval, digest)
    if storage.exists(f"{prefix}/manifest.json"):
        info = DatasetInfo.model_validate_json(storage.read_bytes(f"{prefix}/manifest.json"))
        return info.model_copy(update={"reused": True})
    parts = []
    for symbol in symbols:  # one symbol's bars and features in memory at a time
        bars = prepare_bars(
            load_curated(storage, symbol, source_interval, start, end),
            source_interval,
            config.interval,
        )
        parts.append(compact(symbol_rows(bars, symbol, config), feature_names(config)))
        del bars
    table = pa.concat_tables(parts)
    del parts
    order = pc.sort_indices(table, [("open_time", "ascending"), ("symbol", "ascending")])
    table = table.take(order)
    known = pc.is_valid(table["label"])
    labelled = table.filter(known)
    unlabelled = table.filter(pc.invert(known)).drop_columns(["label", "future_return"])
    del table
    labelled = labelled.set_column(
        labelled.schema.get_field_index("label"), "label", labelled["label"].cast(pa.int64())
    )
    if labelled.num_rows == 0:
        raise PipelineError(
            f"no labelled rows: {unlabelled.num_rows} rows after a {config.warmup_bars}-bar "
            f"warm-up and a {config.horizon}-bar horizon at {config.interval}",
            "widen --start/--end, or lower MLOPS_HORIZON / MLOPS_MODEL_INTERVAL",
        )
    times = labelled["open_time"]
    info = DatasetInfo(
        dataset_hash=digest,
        prefix=prefix,
        interval=config.interval,
        source_interval=source_interval,
        horizon=config.horizon,
        symbols=list(symbols),
        start=start,
        end=end,
        features=feature_names(config),
        rows=labelled.num_rows,
        rows_unlabelled=unlabelled.num_rows,
        first_time=str(pd.Timestamp(pc.min(times).as_py())),
        last_time=str(pd.Timestamp(pc.max(times).as_py())),
        config=config.model_dump(mode="json"),
    )
    storage.write_bytes(f"{prefix}/labelled.parquet", _parquet(labelled))
    storage.write_bytes(f"{prefix}/scoring.parquet", _parquet(unlabelled))
    storage.write_bytes(f"{prefix}/manifest.json", info.model_dump_json(indent=2).encode())
    return info


def read_dataset(
    storage: Storage,
    prefix: str,
    part: str = "labelled",
    *,
    since: pd.Timestamp | None = None,
) -> pd.DataFrame:
    """One part (``labelled`` or ``scoring``) of a dataset written by `build_dataset`; only
    its rows from `since` on when given (the others are dropped while reading).

    Raises:
        PipelineError: if the dataset is missing or unreadable.
    """
    table = read_table(storage, prefix, part)
    if since is not None:
        table = table.filter(pc.field("open_time") >= since.to_pydatetime())
    frame: pd.DataFrame = table.to_pandas()
    return frame


def read_table(storage: Storage, prefix: str, part: str = "labelled") -> pa.Table:
    """One part of a dataset as an Arrow table (see `read_dataset`).

    Raises:
        PipelineError: if the dataset is missing or unreadable.
    """
    key = f"{prefix}/{part}.parquet"
    try:
        return pq.read_table(io.BytesIO(storage.read_bytes(key)))
    except FileNotFoundError:
        raise PipelineError(f"dataset {key} is missing", "re-run the features step") from None
    except (OSError, ValueError) as error:
        raise PipelineError(
            f"dataset {key} is unreadable ({error})", "re-run the features step"
        ) from None
