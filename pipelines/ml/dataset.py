"""Features step: curated bars → model-ready dataset, content-addressed by inputs and config."""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Sequence
from datetime import date
from typing import Any

import numpy as np
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
    compute_features,
    compute_labels,
    feature_names,
)
from pipelines.ml.spool import SORT_KEYS, SymbolSpool
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


ROW_GROUP_ROWS = 131_072
"""Rows per Parquet row group of a dataset: a reader decodes one row group at a time
(`pipelines.ml.rows`), so this bounds what a bounded read holds besides its selection."""


def symbol_tables(
    bars: pd.DataFrame, symbol: str, config: FeatureConfig
) -> tuple[pa.Table, pa.Table]:
    """One symbol's model rows as Arrow, in time order: the labelled ones (label as int64) and
    the unlabelled ones (without label and return). The features are float32 — half the
    memory, and the model bins each feature into at most 255 bins anyway (ROC-AUC cost:
    benchmarks/README.md) — each converted and its float64 column let go one at a time."""
    features = compute_features(bars, config)
    labels = compute_labels(bars, config.horizon)
    names = feature_names(config)
    ready = np.zeros(len(features), dtype=bool)
    ready[config.warmup_bars - 1 :] = True
    for name in names:
        ready &= features[name].notna().to_numpy()
    picked = pa.array(ready)
    columns: dict[str, pa.Array] = {
        "symbol": pa.repeat(pa.scalar(symbol, pa.string()), int(ready.sum())),
        "open_time": pa.Array.from_pandas(features["open_time"]).filter(picked),
    }
    for name in names:
        columns[name] = pa.array(features.pop(name).to_numpy()[ready].astype(np.float32))
    del features
    label = labels["label"].to_numpy()[ready]
    known = ~np.isnan(label)
    columns["label"] = pa.array(np.nan_to_num(label).astype(np.int64))
    columns["future_return"] = pa.array(labels["future_return"].to_numpy()[ready])
    table = pa.table(columns)
    unknown = table.filter(pa.array(~known)).drop_columns(["label", "future_return"])
    return table.filter(pa.array(known)), unknown


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
    with SymbolSpool() as spool:
        for symbol in symbols:  # one symbol's bars and features in memory at a time
            bars = prepare_bars(
                load_curated(storage, symbol, source_interval, start, end),
                source_interval,
                config.interval,
            )
            spool.add(*symbol_tables(bars, symbol, config))
            del bars
        assert spool.schema is not None  # one symbol at least was added
        unlabelled = _sorted(spool.unlabelled, spool.schema)
        if not spool.rows:
            raise PipelineError(
                f"no labelled rows: {unlabelled.num_rows} rows after a {config.warmup_bars}-bar "
                f"warm-up and a {config.horizon}-bar horizon at {config.interval}",
                "widen --start/--end, or lower MLOPS_HORIZON / MLOPS_MODEL_INTERVAL",
            )
        with (
            storage.open_writer(f"{prefix}/labelled.parquet") as sink,
            pq.ParquetWriter(sink, spool.schema) as out,
        ):
            span = spool.merge(out.write_table, ROW_GROUP_ROWS)
        rows = spool.rows
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
        rows=rows,
        rows_unlabelled=unlabelled.num_rows,
        first_time=str(pd.Timestamp(span[0])),
        last_time=str(pd.Timestamp(span[1])),
        config=config.model_dump(mode="json"),
    )
    scoring = io.BytesIO()
    pq.write_table(unlabelled, scoring, row_group_size=ROW_GROUP_ROWS)
    storage.write_bytes(f"{prefix}/scoring.parquet", scoring.getvalue())
    storage.write_bytes(f"{prefix}/manifest.json", info.model_dump_json(indent=2).encode())
    return info


def _sorted(parts: list[pa.Table], labelled: pa.Schema) -> pa.Table:
    """The unlabelled rows of every symbol in (``open_time``, ``symbol``) order (`labelled`:
    the labelled rows' schema, theirs without label and return)."""
    schema = pa.schema([f for f in labelled if f.name not in ("label", "future_return")])
    table = pa.concat_tables([schema.empty_table(), *parts])
    return table.take(pc.sort_indices(table.select(["open_time", "symbol"]), SORT_KEYS))


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
    from pipelines.ml.rows import open_parquet

    key = f"{prefix}/{part}.parquet"
    file = open_parquet(storage, key)
    try:
        return file.read()
    except (OSError, ValueError) as error:  # a footer that reads, a body that does not
        raise PipelineError(
            f"dataset {key} is unreadable ({error})", "re-run the features step"
        ) from None
