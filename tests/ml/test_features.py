"""Features: no look-ahead, correct labels, content-addressed datasets."""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipelines.data.bars import prepare_bars
from pipelines.ml.dataset import build_dataset, read_dataset
from pipelines.ml.features import (
    FeatureConfig,
    compute_features,
    compute_labels,
    feature_names,
)
from pipelines.settings import Settings
from pipelines.storage import LocalStorage
from pipelines.synthetic.market import minute_bars
from tests.conftest import MIRROR_DAYS, MIRROR_START, SYMBOLS

END = MIRROR_START + timedelta(days=MIRROR_DAYS - 1)
CONFIG = FeatureConfig()


def bars_frame(day_offset: int = 0) -> pd.DataFrame:
    bars = minute_bars("BTCUSDT", MIRROR_START + timedelta(days=day_offset))
    bars["open_time"] = pd.to_datetime(bars["open_time"], unit="ms", utc=True)
    return bars


@pytest.mark.parametrize("t", [60, 500, 1200])
def test_changing_bars_after_t_changes_no_feature_at_or_before_t(t: int) -> None:
    bars = bars_frame()
    before = compute_features(bars, CONFIG)
    rng = np.random.default_rng(t)
    changed = bars.astype({"count": float})
    later = changed.index > t
    for column in ("open", "high", "low", "close", "volume", "count", "taker_buy_volume"):
        changed.loc[later, column] = changed.loc[later, column] * rng.uniform(0.5, 2.0, later.sum())
    after = compute_features(changed, CONFIG)
    names = feature_names(CONFIG)
    pd.testing.assert_frame_equal(before.loc[:t, names], after.loc[:t, names])
    assert not before.loc[t + 1 :, names].equals(after.loc[t + 1 :, names]), (
        "the change must be visible later"
    )


def test_labels_look_exactly_horizon_bars_ahead() -> None:
    bars = bars_frame()
    labels = compute_labels(bars, horizon=12)
    close = bars["close"].to_numpy()
    i = 100
    assert labels["label"].iloc[i] == float(close[i + 12] > close[i])
    assert labels["future_return"].iloc[i] == pytest.approx(np.log(close[i + 12] / close[i]))
    assert labels["label"].iloc[-12:].isna().all() and labels["label"].iloc[:-12].notna().all()


def test_features_are_finite_after_warmup_and_named() -> None:
    features = compute_features(bars_frame(), CONFIG)
    names = feature_names(CONFIG)
    assert list(features.columns) == ["open_time", *names]
    ready = features.iloc[CONFIG.warmup_bars - 1 :]
    assert np.isfinite(ready[names].to_numpy()).all()
    assert ready["taker_buy_ratio"].between(0, 1).all() and ready["rsi_14"].between(0, 1).all()


def test_resampling_to_a_longer_model_interval() -> None:
    bars = pd.concat([bars_frame(0), bars_frame(1)], ignore_index=True)
    five = prepare_bars(bars, "1m", "5m")
    assert len(five) == 2 * 288
    assert five["open_time"].iloc[1] - five["open_time"].iloc[0] == pd.Timedelta(minutes=5)
    assert five["high"].iloc[0] == bars["high"].iloc[:5].max()
    assert five["volume"].sum() == pytest.approx(bars["volume"].sum())


def test_dataset_is_content_addressed(curated: LocalStorage, tmp_path: Path) -> None:
    first = build_dataset(curated, SYMBOLS, "1m", MIRROR_START, END, CONFIG)
    again = build_dataset(curated, SYMBOLS, "1m", MIRROR_START, END, CONFIG)
    assert again.dataset_hash == first.dataset_hash and again.reused and not first.reused
    assert first.prefix == f"features/1m/{first.dataset_hash}"
    other = build_dataset(curated, SYMBOLS, "1m", MIRROR_START, END, FeatureConfig(horizon=6))
    fewer = build_dataset(curated, SYMBOLS, "1m", MIRROR_START, END - timedelta(days=1), CONFIG)
    assert len({first.dataset_hash, other.dataset_hash, fewer.dataset_hash}) == 3
    # a copy of the same inputs elsewhere hashes the same
    shutil.copytree(curated.root / "curated", tmp_path / "copy" / "curated")
    copy = build_dataset(LocalStorage(tmp_path / "copy"), SYMBOLS, "1m", MIRROR_START, END, CONFIG)
    assert copy.dataset_hash == first.dataset_hash

    rows = read_dataset(curated, first.prefix)
    assert len(rows) == first.rows and rows["label"].isin([0, 1]).all()
    assert rows.groupby("symbol").size().to_dict() == {
        s: MIRROR_DAYS * 1440 - (CONFIG.warmup_bars - 1) - CONFIG.horizon for s in SYMBOLS
    }
    scoring = read_dataset(curated, first.prefix, "scoring")
    assert len(scoring) == first.rows_unlabelled == 2 * CONFIG.horizon
    assert scoring["open_time"].min() > rows["open_time"].max() - pd.Timedelta(minutes=1)


def test_dataset_is_sorted_by_time_and_symbol_with_float32_features(
    curated: LocalStorage,
) -> None:
    info = build_dataset(curated, SYMBOLS, "1m", MIRROR_START, END, CONFIG)
    rows = read_dataset(curated, info.prefix)
    assert (rows[feature_names(CONFIG)].dtypes == np.float32).all()
    assert rows["label"].dtype == np.int64 and rows["future_return"].dtype == np.float64
    key = list(zip(rows["open_time"], rows["symbol"], strict=True))
    assert key == sorted(key) and len(set(key)) == len(key)
    assert info.first_time == str(rows["open_time"].min())
    assert info.last_time == str(rows["open_time"].max())


def test_training_rows_are_sampled_to_the_memory_budget_and_the_eval_window_kept_whole(
    curated: LocalStorage, settings: Settings
) -> None:
    from pipelines.ml.train import TRAIN_BYTES_PER_ROW, training_rows

    info = build_dataset(curated, SYMBOLS, "1m", MIRROR_START, END, CONFIG)
    embargo = pd.Timedelta(minutes=CONFIG.horizon)
    every = training_rows(curated, info, settings, embargo)
    assert every.sampled_from is None and len(every.meta) == len(every.data) == info.rows
    # the matrix holds the dataset's values (float32 widened exactly) for the same rows
    dataset = read_dataset(curated, info.prefix)
    names = feature_names(CONFIG)
    assert np.array_equal(every.data[names].to_numpy(), dataset[names].to_numpy(np.float64))
    assert list(every.data.columns) == names
    assert np.array_equal(every.meta["label"].to_numpy(), dataset["label"].to_numpy())
    matrix = every.data.to_numpy()
    assert matrix.dtype == np.float64 and matrix.flags["C_CONTIGUOUS"]
    assert np.shares_memory(every.features(slice(0, 10)).to_numpy(), matrix)

    small = settings.model_copy(update={"train_memory_mb": 1, "eval_days": 1.0})
    sample = training_rows(curated, info, small, embargo)
    rows = sample.meta
    keys = ["open_time", "symbol"]
    positions = pd.MultiIndex.from_frame(every.meta[keys]).get_indexer(
        pd.MultiIndex.from_frame(rows[keys])
    )
    cutoff = every.meta["open_time"].max() - pd.Timedelta(days=1) - embargo
    before = every.meta[every.meta["open_time"] <= cutoff]
    assert sample.sampled_from == len(before)
    assert (rows["open_time"] <= cutoff).sum() == 2**20 // TRAIN_BYTES_PER_ROW
    assert rows["open_time"].is_monotonic_increasing
    # the sample spreads over the whole window: each day keeps its share, within 10%
    per_day = rows[rows["open_time"] <= cutoff]["open_time"].dt.date.value_counts()
    share = (
        before["open_time"].dt.date.value_counts() * (2**20 // TRAIN_BYTES_PER_ROW) / len(before)
    )
    assert ((per_day / share[per_day.index]).between(0.9, 1.1)).all()
    after = every.meta[every.meta["open_time"] > cutoff].reset_index(drop=True)
    pd.testing.assert_frame_equal(rows[rows["open_time"] > cutoff].reset_index(drop=True), after)
    # the matrix's rows are the meta's rows
    assert np.array_equal(sample.data.to_numpy(), every.data.to_numpy()[positions])
