"""Bounded dataset reads (`pipelines.ml.rows`): the rows chosen by time, from a file read batch
by batch, are exactly those pandas would choose from the whole frame."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.errors import PipelineError
from pipelines.ml import rows as rows_module
from pipelines.ml.rows import Selection, latest_whole_days, sample_positions
from pipelines.storage import LocalStorage


def _frame() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    times = pd.date_range("2024-01-01 07:00", periods=5 * 1440, freq="1min", tz="UTC")
    times = times.repeat(2)  # two symbols a minute, as datasets are sorted
    return pd.DataFrame(
        {
            "open_time": times,
            "symbol": np.tile(["BTCUSDT", "ETHUSDT"], len(times) // 2),
            "x": rng.standard_normal(len(times)).astype(np.float32),
            "label": rng.integers(0, 2, len(times)),
        }
    )


@pytest.fixture
def stored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> LocalStorage:
    monkeypatch.setattr(rows_module, "BATCH_ROWS", 1000)  # many batches, selections across them
    storage = LocalStorage(tmp_path)
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(_frame(), preserve_index=False), buffer)
    storage.write_bytes("features/1m/h/labelled.parquet", buffer.getvalue())
    return storage


def test_a_sample_is_seeded_sorted_and_only_when_needed() -> None:
    assert sample_positions(100, 100) is None
    picked = sample_positions(1000, 100, seed=0)
    assert picked is not None and len(np.unique(picked)) == 100
    assert (np.diff(picked) > 0).all() and picked.max() < 1000
    same, other = sample_positions(1000, 100, seed=0), sample_positions(1000, 100, seed=1)
    assert same is not None and other is not None
    assert np.array_equal(picked, same) and not np.array_equal(picked, other)


def test_latest_whole_days_never_cut_a_day() -> None:
    times = pd.date_range("2024-01-01 12:00", periods=4 * 24, freq="1h").to_numpy()
    assert latest_whole_days(times, 1000) == 0
    # 12 h of Jan 1, then Jan 2, 3, 4 whole, 12 h of Jan 5: 50 rows hold Jan 4 and the half day
    first = latest_whole_days(times, 50)
    assert str(times[first])[:19] == "2024-01-04T00:00:00"
    assert latest_whole_days(times, 36) == first  # exactly the 36 rows from Jan 4 on
    assert str(times[latest_whole_days(times, 35)])[:10] == "2024-01-05"


def test_selections_equal_pandas_on_the_whole_frame(stored: LocalStorage) -> None:
    frame = _frame()
    selection = Selection(stored, "features/1m/h")
    start, end = pd.Timestamp("2024-01-03 10:00", tz="UTC"), pd.Timestamp("2024-01-04 09:30")
    end = end.tz_localize("UTC")
    expected = frame[(frame["open_time"] >= start) & (frame["open_time"] <= end)]
    got = selection.between(["open_time", "symbol", "x", "label"], start, end)
    pd.testing.assert_frame_equal(got, expected.reset_index(drop=True))

    before = frame[frame["open_time"] < start].reset_index(drop=True)
    sample, count = selection.sample_before(["x", "label"], start, 500)
    assert count == len(before) and len(sample) == 500
    picked = sample_positions(len(before), 500)
    assert picked is not None
    pd.testing.assert_frame_equal(sample, before.loc[picked, ["x", "label"]].reset_index(drop=True))
    every, count = selection.sample_before(["x"], start, 10**6)
    pd.testing.assert_frame_equal(every, before[["x"]])

    latest, count = selection.latest_days_before(["open_time", "x"], start, 3000)
    days = latest["open_time"].dt.floor("D")
    assert count == len(before) and len(latest) <= 3000
    assert days.iloc[0] == pd.Timestamp("2024-01-03", tz="UTC")  # Jan 2 would not fit whole
    pd.testing.assert_frame_equal(
        latest, before[["open_time", "x"]].tail(len(latest)).reset_index(drop=True)
    )


def test_a_missing_dataset_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match=r"features/1m/none/labelled\.parquet is missing"):
        Selection(LocalStorage(tmp_path), "features/1m/none")
