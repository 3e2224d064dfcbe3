"""Features step: curated bars → model-ready dataset, content-addressed by inputs and config."""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Sequence
from datetime import date
from typing import Any

import pandas as pd
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


def _parquet(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


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
    for symbol in symbols:
        bars = prepare_bars(
            load_curated(storage, symbol, source_interval, start, end),
            source_interval,
            config.interval,
        )
        parts.append(symbol_rows(bars, symbol, config))
    rows = pd.concat(parts, ignore_index=True).sort_values(
        ["open_time", "symbol"], ignore_index=True
    )
    labelled = rows[rows["label"].notna()].astype({"label": "int64"})
    unlabelled = rows[rows["label"].isna()].drop(columns=["label", "future_return"])
    if labelled.empty:
        raise PipelineError(
            f"no labelled rows: {len(rows)} rows after a {config.warmup_bars}-bar warm-up "
            f"and a {config.horizon}-bar horizon at {config.interval}",
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
        rows=len(labelled),
        rows_unlabelled=len(unlabelled),
        first_time=str(labelled["open_time"].min()),
        last_time=str(labelled["open_time"].max()),
        config=config.model_dump(mode="json"),
    )
    storage.write_bytes(f"{prefix}/labelled.parquet", _parquet(labelled))
    storage.write_bytes(f"{prefix}/scoring.parquet", _parquet(unlabelled))
    storage.write_bytes(f"{prefix}/manifest.json", info.model_dump_json(indent=2).encode())
    return info


def read_dataset(storage: Storage, prefix: str, part: str = "labelled") -> pd.DataFrame:
    """One part (``labelled`` or ``scoring``) of a dataset written by `build_dataset`.

    Raises:
        PipelineError: if the dataset is missing or unreadable.
    """
    key = f"{prefix}/{part}.parquet"
    try:
        frame: pd.DataFrame = pq.read_table(io.BytesIO(storage.read_bytes(key))).to_pandas()
        return frame
    except FileNotFoundError:
        raise PipelineError(f"dataset {key} is missing", "re-run the features step") from None
    except (OSError, ValueError) as error:
        raise PipelineError(
            f"dataset {key} is unreadable ({error})", "re-run the features step"
        ) from None
