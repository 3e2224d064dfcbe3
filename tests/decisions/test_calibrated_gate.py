"""The gate calibrates the challenger's drift thresholds, stores them with the version (a
registry tag naming a storage key) and names them in the decision record; the drift report
judges each feature against its own threshold."""

from __future__ import annotations

import io
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from pipelines.decisions.gate import calibrated_drift
from pipelines.ml.dataset import DatasetInfo
from pipelines.ml.train import EvaluateResult
from pipelines.reports.calibration import load, trailing
from pipelines.reports.drift import data_drift, drift_options
from pipelines.settings import Settings
from pipelines.storage import LocalStorage


class FakeRegistry:
    def __init__(self) -> None:
        self.tags: dict[tuple[str, str, str], str] = {}

    def set_model_version_tag(self, name: str, version: str, key: str, value: str) -> None:
        self.tags[(name, version, key)] = value


def _rows(days: int) -> pd.DataFrame:
    rng = np.random.default_rng(5)
    times = pd.date_range("2024-03-01", periods=days * 288, freq="5min", tz="UTC")
    scale = np.repeat(np.exp(0.4 * rng.standard_normal(days)), 288)
    return pd.DataFrame(
        {
            "open_time": times,
            "symbol": "BTCUSDT",
            "realized_vol_12": np.abs(rng.standard_normal(len(times))) * scale,
            "taker_buy_ratio": 0.5 + 0.05 * rng.standard_normal(len(times)),
            "label": rng.integers(0, 2, len(times)),
        }
    )


def _setup(tmp_path: Path, **settings: Any) -> tuple[Settings, LocalStorage, DatasetInfo, Any]:
    storage = LocalStorage(tmp_path / "data")
    rows = _rows(12)
    buffer = io.BytesIO()
    rows.to_parquet(buffer, index=False)
    storage.write_bytes("features/5m/abc/labelled.parquet", buffer.getvalue())
    info = DatasetInfo(
        dataset_hash="abc",
        prefix="features/5m/abc",
        interval="5m",
        source_interval="5m",
        horizon=12,
        symbols=["BTCUSDT"],
        start=date(2024, 3, 1),
        end=date(2024, 3, 12),
        features=["realized_vol_12", "taker_buy_ratio", "tod_sin"],
        rows=len(rows),
        rows_unlabelled=0,
        first_time=str(rows["open_time"].min()),
        last_time=str(rows["open_time"].max()),
        config={},
    )
    evaluated = EvaluateResult(
        metrics={},
        eval_start=str(pd.Timestamp("2024-03-11", tz="UTC")),
        eval_end=str(rows["open_time"].max()),
        rows=288,
        cv_mean_roc_auc=None,
    )
    # 10 training days: a 2-day reference leaves 14 null windows of a day (7 days would leave 5)
    values = Settings(home=tmp_path, eval_days=1, **{"drift_reference_days": 2, **settings})
    return values, storage, info, evaluated


def test_the_gate_stores_calibrated_thresholds_with_the_version(tmp_path: Path) -> None:
    settings, storage, info, evaluated = _setup(tmp_path)
    registry = FakeRegistry()
    named = calibrated_drift(settings, storage, registry, info, evaluated, 7)
    key = named["drift_calibration"]
    assert key.startswith("features/5m/abc/calibration/") and storage.exists(key)
    assert registry.tags == {("market-direction", "7", "drift_calibration"): key}
    assert named["drift_false_alarm_rate"] == 0.01
    calibration = load(storage, key)
    gate = calibration.thresholds("gate")
    assert gate is not None and set(gate) == {"realized_vol_12", "taker_buy_ratio"}
    # each feature's line follows its own null: the day-to-day-volatile one is far higher
    assert gate["realized_vol_12"] > 5 * gate["taker_buy_ratio"]
    assert calibration.history[1] < evaluated.eval_start  # only the training rows

    assert calibration.reference_days == 2
    rows = _rows(12)
    reference = trailing(rows, pd.Timestamp(evaluated.eval_start), 2)
    window = rows[rows["open_time"] >= pd.Timestamp(evaluated.eval_start)]
    window = window.assign(taker_buy_ratio=window["taker_buy_ratio"] + 0.05)
    options = drift_options(settings, gate)
    report = data_drift(reference, window, list(gate), storage=storage, env="local", **options)
    by = {c.column: c for c in report.columns}
    assert by["taker_buy_ratio"].threshold == gate["taker_buy_ratio"]
    assert by["realized_vol_12"].threshold == gate["realized_vol_12"]
    assert report.drifted_columns == ["taker_buy_ratio"] and report.dataset_drift


def test_fixed_calibration_keeps_the_fixed_line(tmp_path: Path) -> None:
    settings, storage, info, evaluated = _setup(tmp_path, drift_calibration="fixed")
    registry = FakeRegistry()
    named = calibrated_drift(settings, storage, registry, info, evaluated, 7)
    assert named == {"drift_threshold": 0.2, "drift_method": "psi"}
    assert registry.tags == {}
    options = drift_options(settings, None)
    assert options["column_thresholds"] is None and options["drift_share"] == 0.5


def test_the_gates_fast_auc_is_sklearns() -> None:
    from sklearn.metrics import roc_auc_score

    from pipelines.decisions.bootstrap import fast_auc

    rng = np.random.default_rng(2)
    for _ in range(20):
        y = rng.integers(0, 2, 300)
        p = np.round(rng.random(300), 2)  # ties, as rounded probabilities have
        assert fast_auc(y, p) == pytest.approx(roc_auc_score(y, p), abs=1e-12)


def test_the_gate_calibrates_on_the_latest_whole_days_within_its_row_bound(
    tmp_path: Path,
) -> None:
    # 10 training days of 288 rows; a bound of 1,000 rows holds 3 whole days (864 rows)
    settings, storage, info, evaluated = _setup(tmp_path, reference_rows=1000)
    named = calibrated_drift(settings, storage, FakeRegistry(), info, evaluated, 7)
    calibration = load(storage, named["drift_calibration"])
    assert calibration.history[0] == str(pd.Timestamp("2024-03-08", tz="UTC"))
    assert calibration.history[1] < evaluated.eval_start
    assert named["drift_calibration_rows"] == [3 * 288, 10 * 288]
    # without a binding bound every training row is the history, as before
    settings, storage, info, evaluated = _setup(tmp_path / "all")
    named = calibrated_drift(settings, storage, FakeRegistry(), info, evaluated, 7)
    assert named["drift_calibration_rows"] == [10 * 288, 10 * 288]
    assert load(storage, named["drift_calibration"]).history[0] == info.first_time


def test_the_gates_drift_reference_is_the_days_just_before_the_window(tmp_path: Path) -> None:
    from pipelines.decisions.gate import gate_rows

    settings, storage, info, evaluated = _setup(tmp_path, drift_reference_days=3)
    info = info.model_copy(update={"features": ["realized_vol_12", "taker_buy_ratio"]})
    window, reference = gate_rows(settings, storage, info, evaluated)
    rows = _rows(12)
    start = pd.Timestamp(evaluated.eval_start)
    expected = rows[rows["open_time"] >= start].reset_index(drop=True)
    pd.testing.assert_frame_equal(window, expected[window.columns], check_like=True)
    # the drift-tested features, and the symbol and time the volatility level compares by
    assert list(reference.columns) == ["open_time", "symbol", "realized_vol_12", "taker_buy_ratio"]
    # the 3 whole days before the window (2024-03-08..10), every row, in time order
    days = rows[(rows["open_time"] >= start - pd.Timedelta(days=3)) & (rows["open_time"] < start)]
    assert len(reference) == 3 * 288
    assert reference["realized_vol_12"].tolist() == days["realized_vol_12"].tolist()


def _with_returns(rows: pd.DataFrame, multiplier: float) -> pd.DataFrame:
    """`rows` with a one-bar return whose day-level volatility wanders a little (log-s.d. 0.05)
    and is x`multiplier` from 2024-03-11 (the evaluation window) on."""
    rng = np.random.default_rng(8)
    days = (rows["open_time"] - rows["open_time"].iloc[0]).dt.days.to_numpy()
    level = np.exp(0.05 * rng.standard_normal(days.max() + 1))[days]
    level = (
        np.where(rows["open_time"] >= pd.Timestamp("2024-03-11", tz="UTC"), multiplier, 1.0) * level
    )
    return rows.assign(log_return_1=0.001 * level * rng.standard_normal(len(rows)))


@pytest.mark.parametrize("multiplier", [1.0, 2.0])
def test_the_gate_judges_the_volatility_level_against_its_calibrated_line(
    tmp_path: Path, multiplier: float
) -> None:
    from pipelines.decisions.gate import _drift, gate_rows

    settings, storage, info, evaluated = _setup(tmp_path)
    rows = _with_returns(_rows(12), multiplier)
    buffer = io.BytesIO()
    rows.to_parquet(buffer, index=False)
    storage.write_bytes("features/5m/abc/labelled.parquet", buffer.getvalue())
    info = info.model_copy(update={"features": ["log_return_1", "taker_buy_ratio"]})
    named = calibrated_drift(settings, storage, FakeRegistry(), info, evaluated, 7)
    line = load(storage, named["drift_calibration"]).statistic_thresholds("gate")[
        "volatility_level"
    ]
    window, reference = gate_rows(settings, storage, info, evaluated)
    report = _drift(settings, storage, reference, window, info, 7, named["drift_calibration"])
    (found,) = report.statistics
    start = pd.Timestamp(evaluated.eval_start)
    day_before = rows[
        (rows["open_time"] >= start - pd.Timedelta(days=1)) & (rows["open_time"] < start)
    ]
    expected = (
        np.log(np.abs(window["log_return_1"])).mean()
        - np.log(np.abs(day_before["log_return_1"])).mean()
    )
    assert found.score == pytest.approx(expected) and found.threshold == line
    assert found.drifted is (multiplier == 2.0) and report.dataset_drift is found.drifted
    summary = storage.read_bytes(f"{report.prefix}/summary.json").decode()
    assert "volatility_level" in summary
