"""The dataset order contract: symbols spooled one at a time come out of the merge in
(``open_time``, ``symbol``) order, in whole row groups, and a failed write leaves nothing."""

from __future__ import annotations

import io
from datetime import timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.ml import dataset as dataset_module
from pipelines.ml import spool as spool_module
from pipelines.ml.dataset import build_dataset, read_dataset
from pipelines.ml.features import FeatureConfig
from pipelines.ml.spool import SymbolSpool
from pipelines.storage import LocalStorage
from tests.conftest import MIRROR_DAYS, MIRROR_START, SYMBOLS

END = MIRROR_START + timedelta(days=MIRROR_DAYS - 1)


def _symbol(name: str, start: str, minutes: int, seed: int) -> pa.Table:
    """One symbol's rows in time order, with gaps (a random third of the minutes missing)."""
    rng = np.random.default_rng(seed)
    times = pd.date_range(start, periods=minutes, freq="1min", tz="UTC")
    times = times[np.sort(rng.choice(minutes, size=2 * minutes // 3, replace=False))]
    return pa.table(
        {
            "symbol": [name] * len(times),
            "open_time": pa.array(times),
            "x": rng.standard_normal(len(times)).astype(np.float32),
        }
    )


def test_the_merge_gives_every_row_once_in_time_then_symbol_order_in_whole_row_groups(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(spool_module, "SPOOL_BATCH_ROWS", 7)  # many batches per symbol
    # symbols that start late, end early, and overlap only in part
    tables = [
        _symbol("ETH", "2024-01-01 00:00", 300, 1),
        _symbol("BTC", "2024-01-01 02:00", 90, 2),
        _symbol("SOL", "2023-12-31 23:00", 150, 3),
        _symbol("ADA", "2024-01-01 04:30", 40, 4),
    ]
    written: list[pa.Table] = []
    with SymbolSpool() as spool:
        for table in tables:
            spool.add(table, table.slice(0, 0))
        assert spool.rows == sum(t.num_rows for t in tables)
        first, last = spool.merge(written.append, group_rows=25)
        directory = spool.paths[0].parent
        assert directory.is_dir()
    assert not directory.exists()  # the spool is removed with its block
    assert [t.num_rows for t in written[:-1]] == [25] * (len(written) - 1)
    assert 0 < written[-1].num_rows <= 25
    merged = pa.concat_tables(written).to_pandas()
    expected = (
        pa.concat_tables(tables).to_pandas().sort_values(["open_time", "symbol"], ignore_index=True)
    )
    pd.testing.assert_frame_equal(merged, expected)
    assert first == expected["open_time"].iloc[0] and last == expected["open_time"].iloc[-1]


def test_a_dataset_file_is_time_ordered_in_row_groups_of_the_set_size(
    curated: LocalStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dataset_module, "ROW_GROUP_ROWS", 1000)
    monkeypatch.setattr(spool_module, "SPOOL_BATCH_ROWS", 333)
    info = build_dataset(curated, SYMBOLS, "1m", MIRROR_START, END, FeatureConfig())
    file = pq.ParquetFile(io.BytesIO(curated.read_bytes(f"{info.prefix}/labelled.parquet")))
    groups = [file.metadata.row_group(i).num_rows for i in range(file.num_row_groups)]
    assert groups[:-1] == [1000] * (len(groups) - 1) and 0 < groups[-1] <= 1000
    assert sum(groups) == info.rows
    rows = read_dataset(curated, info.prefix)
    key = list(zip(rows["open_time"], rows["symbol"], strict=True))
    assert key == sorted(key) and len(set(key)) == len(key)
    assert "close" not in rows.columns  # no step reads it
    scoring = read_dataset(curated, info.prefix, "scoring")
    assert list(scoring.columns) == [c for c in rows.columns if c not in ("label", "future_return")]


def test_a_features_step_failing_mid_write_leaves_no_dataset_file_and_no_temp(
    curated: LocalStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dataset_module, "ROW_GROUP_ROWS", 1000)
    calls = []
    real = pq.ParquetWriter.write_table

    def failing(self: pq.ParquetWriter, table: pa.Table, *args: object, **kwargs: object) -> None:
        calls.append(table.num_rows)
        if len(calls) == 3:
            raise OSError("disk full")
        real(self, table, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(pq.ParquetWriter, "write_table", failing)
    with pytest.raises(OSError, match="disk full"):
        build_dataset(curated, SYMBOLS, "1m", MIRROR_START, END, FeatureConfig())
    assert len(calls) == 3  # two row groups were written before the failure
    assert curated.list("features/") == []
    assert list((curated.root / LocalStorage.TMP).iterdir()) == []
