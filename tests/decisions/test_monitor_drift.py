"""The monitor's live drift report compares its latest judged window with the
``MLOPS_DRIFT_REFERENCE_DAYS`` days just before it, recomputed from the curated bars (in-process:
curated bars of the synthetic market in local storage)."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines import layout
from pipelines.data.validate import CURATED_SCHEMA
from pipelines.decisions.monitor import _reports, judge_windows
from pipelines.decisions.trust import curated_features
from pipelines.ml.features import FeatureConfig, feature_names
from pipelines.settings import Settings
from pipelines.storage import LocalStorage
from pipelines.synthetic.market import Regime, minute_bars

LIVE = date(2024, 3, 6)
CONFIG = FeatureConfig(interval="1m", horizon=12)
FEATURES = feature_names(CONFIG)


def _curate(storage: LocalStorage, days: list[date], regime: Regime | None = None) -> None:
    for day in days:
        bars = minute_bars("BTCUSDT", day, 4, LIVE if regime else None, regime or Regime())
        arrays = [
            pa.array(bars[f.name].to_numpy(dtype="int64")).cast(f.type)
            if pa.types.is_timestamp(f.type)
            else pa.array(bars[f.name].to_numpy(), type=f.type)
            for f in CURATED_SCHEMA
        ]
        sink = pa.BufferOutputStream()
        pq.write_table(pa.Table.from_arrays(arrays, schema=CURATED_SCHEMA), sink)
        storage.write_bytes(layout.curated("BTCUSDT", "1m", day), sink.getvalue().to_pybytes())


def _live_drift(tmp_path: Path, curated_before: int, regime: Regime | None) -> dict[str, object]:
    """The monitor's reports for one judged live day with `curated_before` curated days before
    it; the live_drift summary (empty without one)."""
    storage = LocalStorage(tmp_path / "data")
    _curate(storage, [LIVE - timedelta(days=k) for k in range(curated_before, 0, -1)])
    _curate(storage, [LIVE, LIVE + timedelta(days=1)], regime)
    start = pd.Timestamp(LIVE, tz="UTC")
    joined = curated_features(
        storage, ["BTCUSDT"], "1m", CONFIG, start, start + pd.Timedelta(days=1)
    ).dropna(subset=["label"])
    joined = joined.assign(probability_up=0.5 + 0.01 * (joined.index % 3))
    settings = Settings(home=tmp_path, drift_reference_days=3)
    windows = judge_windows(joined, 24.0, 100, 0.5, 0.05)
    reports = _reports(settings, storage, joined, windows, {}, FEATURES, "1", CONFIG)
    drift = [r for r in reports if "/live_drift/" in r]
    if not drift:
        return {}
    summary: dict[str, object] = json.loads(storage.read_bytes(f"{drift[0]}/summary.json"))
    return summary


def test_the_live_window_is_compared_with_the_curated_days_just_before_it(tmp_path: Path) -> None:
    summary = _live_drift(tmp_path / "calm", curated_before=5, regime=None)
    start = pd.Timestamp(LIVE, tz="UTC")
    # exactly the 3 reference days (of the 5 curated), every minute of them
    assert summary["reference_rows"] == 3 * 1440
    metadata = summary["metadata"]
    assert isinstance(metadata, dict)
    assert metadata["reference"] == [str(start - pd.Timedelta(days=3)), str(start)]
    calm = summary["drift_share"]
    # the same window after a regime change (volatility x3, volume x3, aggressive buyers)
    shifted = _live_drift(tmp_path / "shifted", curated_before=5, regime=Regime(vol=3.0))
    assert shifted["reference_rows"] == 3 * 1440
    moved = shifted["drift_share"]
    assert isinstance(calm, float) and isinstance(moved, float) and moved > calm + 0.3


def test_without_curated_days_before_the_window_there_is_no_drift_report(tmp_path: Path) -> None:
    assert _live_drift(tmp_path, curated_before=0, regime=None) == {}
