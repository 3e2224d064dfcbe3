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


ROW_GROUP_ROWS = 131_072
"""Rows per Parquet row group of a dataset: a reader decodes one row group at a time
(`pipelines.ml.rows`), so this bounds what a bounded read holds besides its selection."""


def _write_sorted(table: pa.Table) -> tuple[tuple[bytes, int], tuple[bytes, int], Any]:
    """`table`'s rows sorted by (open_time, symbol) as two Parquet files — the labelled rows
    (label as int64) and the unlabelled ones (without label and return) — with their row
    counts, and the labelled rows' first and last time (None without any).

    The sorted rows are taken and written one row group at a time: only the sort order, one
    group and the files' bytes are held beside `table`, never a sorted copy of it."""
    order = pc.sort_indices(
        table.select(["open_time", "symbol"]),
        [("open_time", "ascending"), ("symbol", "ascending")],
    )
    label = table.schema.get_field_index("label")
    known_schema = table.schema.set(label, pa.field("label", pa.int64()))
    unknown_schema = table.schema.remove(label).remove(
        table.schema.remove(label).get_field_index("future_return")
    )
    buffers, counts, span = (io.BytesIO(), io.BytesIO()), [0, 0], [None, None]
    with (
        pq.ParquetWriter(buffers[0], known_schema) as known_out,
        pq.ParquetWriter(buffers[1], unknown_schema) as unknown_out,
    ):
        for first in range(0, table.num_rows, ROW_GROUP_ROWS):
            group = table.take(order[first : first + ROW_GROUP_ROWS])
            known = pc.is_valid(group["label"])
            rows = group.filter(known)
            rows = rows.set_column(label, "label", rows["label"].cast(pa.int64()))
            rest = group.filter(pc.invert(known)).drop_columns(["label", "future_return"])
            for out, part, i in ((known_out, rows, 0), (unknown_out, rest, 1)):
                if part.num_rows:
                    out.write_table(part, row_group_size=ROW_GROUP_ROWS)
                    counts[i] += part.num_rows
            if rows.num_rows:
                span = [span[0] or rows["open_time"][0].as_py(), rows["open_time"][-1].as_py()]
    return (
        (buffers[0].getvalue(), counts[0]),
        (buffers[1].getvalue(), counts[1]),
        None if span[0] is None else (span[0], span[1]),
    )


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
    table = pa.concat_tables(parts)  # zero-copy: the symbols' tables are its chunks
    del parts
    labelled, unlabelled, span = _write_sorted(table)
    del table
    if span is None:
        raise PipelineError(
            f"no labelled rows: {unlabelled[1]} rows after a {config.warmup_bars}-bar "
            f"warm-up and a {config.horizon}-bar horizon at {config.interval}",
            "widen --start/--end, or lower MLOPS_HORIZON / MLOPS_MODEL_INTERVAL",
        )
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
        rows=labelled[1],
        rows_unlabelled=unlabelled[1],
        first_time=str(pd.Timestamp(span[0])),
        last_time=str(pd.Timestamp(span[1])),
        config=config.model_dump(mode="json"),
    )
    storage.write_bytes(f"{prefix}/labelled.parquet", labelled[0])
    storage.write_bytes(f"{prefix}/scoring.parquet", unlabelled[0])
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
    from pipelines.ml.rows import open_parquet

    key = f"{prefix}/{part}.parquet"
    file = open_parquet(storage, key)
    try:
        return file.read()
    except (OSError, ValueError) as error:  # a footer that reads, a body that does not
        raise PipelineError(
            f"dataset {key} is unreadable ({error})", "re-run the features step"
        ) from None
