"""Drift thresholds calibrated on stable history (`pipelines.reports.calibration`)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipelines.reports.calibration import (
    calibrate,
    drifted,
    feature_psi,
    load,
    psi,
    stable_days,
    store,
    tail_threshold,
    trailing,
)
from pipelines.storage import LocalStorage


def test_psi_is_the_number_evidently_reports() -> None:
    from evidently.legacy.calculations.stattests.psi import psi_stat_test
    from evidently.legacy.core import ColumnType

    rng = np.random.default_rng(3)
    for scale in (1.0, 1.3, 3.0):
        ref, cur = rng.normal(size=5000), rng.normal(scale=scale, size=700)
        theirs = psi_stat_test(pd.Series(ref), pd.Series(cur), ColumnType.Numerical, 0.1)
        assert psi(ref, cur) == pytest.approx(float(theirs.drift_score), rel=1e-12)


def _history(days: int, seed: int = 0) -> pd.DataFrame:
    """Hourly-volatile but stationary rows: `a` noisy per day, `b` stable."""
    rng = np.random.default_rng(seed)
    times = pd.date_range("2024-01-01", periods=days * 144, freq="10min", tz="UTC")
    day_scale = np.repeat(np.exp(0.3 * rng.standard_normal(days)), 144)
    return pd.DataFrame(
        {
            "open_time": times,
            "a": rng.standard_normal(len(times)) * day_scale,
            "b": rng.standard_normal(len(times)),
        }
    )


def test_thresholds_follow_each_features_own_null() -> None:
    history = _history(14)
    calibration = calibrate(history, ["a", "b"], {"monitor": 24.0, "gate": 48.0}, 0.01, 0.2, 2)
    monitor = calibration.thresholds("monitor")
    assert monitor is not None and calibration.decisions["monitor"].windows >= 8
    # the feature whose scale moves day to day needs a higher line than the stable one
    assert monitor["a"] > 1.5 * monitor["b"]
    assert calibration.per_feature_rate == pytest.approx(0.005)
    reference = trailing(history, history["open_time"].iloc[-1] + pd.Timedelta(minutes=10), 2)
    fresh = _history(2, seed=99).iloc[:144]
    assert drifted(feature_psi(reference, fresh, ["a", "b"]), monitor) == []
    shifted = fresh.assign(b=fresh["b"] * 2, a=fresh["a"] * 0 + 5.0)
    assert drifted(feature_psi(reference, shifted, ["a", "b"]), monitor) == ["a", "b"]


def test_too_little_history_keeps_the_fixed_threshold() -> None:
    # 5 days, a 2-day reference and 2-day windows: 3 positions, fewer than the 8 needed
    calibration = calibrate(_history(5), ["a"], {"gate": 48.0}, 0.01, 0.2, 2)
    assert calibration.decisions["gate"].windows == 0
    assert calibration.thresholds("gate") is None
    assert calibration.decisions["gate"].thresholds == {"a": 0.2}


def test_tail_threshold_extrapolates_and_never_undercuts_the_sample() -> None:
    samples = np.exp(np.random.default_rng(1).normal(size=40))
    assert tail_threshold(samples, 0.001) > np.quantile(samples, 0.99)
    assert tail_threshold(np.array([1.0, 1.0, 9.0]), 0.4) >= 9.0


def test_a_short_day_is_not_stable_history() -> None:
    rows = _history(5)
    day = rows["open_time"].dt.floor("D")
    holed = rows[~((day == day.unique()[2]) & (rows["open_time"].dt.hour < 6))]
    kept, excluded = stable_days(holed)
    assert excluded == [str(day.unique()[2].date())]
    assert len(kept) == 4 * 144


def test_stored_with_a_content_key_and_read_back(tmp_path) -> None:  # type: ignore[no-untyped-def]
    storage = LocalStorage(tmp_path)
    calibration = calibrate(_history(10), ["a"], {"monitor": 24.0}, 0.01, 0.2, 2)
    key = store(storage, "features/1m/abc", calibration)
    assert key == f"features/1m/abc/calibration/{calibration.digest}.json"
    assert load(storage, key) == calibration


def test_the_null_is_each_window_against_the_days_just_before_it() -> None:
    from pipelines.reports.calibration import null_samples

    history = _history(8)
    window, step = pd.Timedelta(hours=24), pd.Timedelta(hours=12)
    null = null_samples(history, ["a", "b"], window, step, 3)
    times = history["open_time"]
    # from the first position with 3 whole days before it, every 12 h while a whole window
    # fits before the last bar (day 7, 23:50): starts on days 3.0, 3.5, ..., 6.5
    assert len(null) == 8
    for k in (0, 3, len(null) - 1):
        start = times.iloc[0] + pd.Timedelta(days=3) + k * step
        inside = (times >= start) & (times < start + window)
        before = (times >= start - pd.Timedelta(days=3)) & (times < start)
        direct = feature_psi(history[before], history[inside], ["a", "b"])
        assert null.iloc[k].to_dict() == pytest.approx(direct, rel=1e-12)
        assert before.sum() == 3 * 144 and inside.sum() == 144


def test_a_calibration_of_the_pooled_training_rows_is_not_used() -> None:
    # a calibration stored before the trailing reference (no reference_days) judged another
    # statistic: its thresholds do not apply, the decision keeps the fixed line
    calibration = calibrate(_history(10), ["a"], {"monitor": 24.0}, 0.01, 0.2, 2)
    assert calibration.thresholds("monitor") is not None
    legacy = calibration.model_dump(mode="json")
    del legacy["reference_days"]
    assert type(calibration).model_validate(legacy).thresholds("monitor") is None


def test_a_trailing_reference_is_the_days_before_the_window_only() -> None:
    history = _history(5)
    start = pd.Timestamp("2024-01-04", tz="UTC")
    reference = trailing(history, start, 2)
    assert reference["open_time"].min() == pd.Timestamp("2024-01-02", tz="UTC")
    assert reference["open_time"].max() < start and len(reference) == 2 * 144


def test_calibration_reads_a_bounded_history() -> None:
    from pipelines.reports.calibration import MAX_HISTORY_DAYS, MAX_WINDOWS

    long = _history(MAX_HISTORY_DAYS + 30)
    calibration = calibrate(long, ["a"], {"monitor": 6.0}, 0.01, 0.2, 2)
    first = pd.Timestamp(calibration.history[0])
    last = pd.Timestamp(calibration.history[1])
    assert last - first <= pd.Timedelta(days=MAX_HISTORY_DAYS)
    assert 100 < calibration.decisions["monitor"].windows <= MAX_WINDOWS


def test_the_bootstrap_line_is_above_the_single_fit() -> None:
    from pipelines.reports.calibration import bootstrap_threshold

    # persistent samples (regimes): one history's fit understates the tail
    rng = np.random.default_rng(2)
    regimes = np.repeat(rng.normal(size=12), 10) + 0.3 * rng.normal(size=120)
    samples = np.exp(regimes)
    fitted = tail_threshold(samples, 0.001)
    assert bootstrap_threshold(samples, 0.001, 20) > fitted
    assert bootstrap_threshold(samples, 0.001, 20) == bootstrap_threshold(samples, 0.001, 20)


def test_thinning_a_long_history_keeps_every_symbol(monkeypatch: pytest.MonkeyPatch) -> None:
    """Beyond `MAX_HISTORY_ROWS` the history is thinned by bar time, not by row: rows sorted by
    time cycle through the symbols, so a stride of 2 over six symbols' rows would keep three."""
    from pipelines.reports import calibration

    monkeypatch.setattr(calibration, "MAX_HISTORY_ROWS", 6 * 500)
    times = pd.date_range("2024-01-01", periods=1_000, freq="1min", tz="UTC")
    symbols = [f"S{i}USDT" for i in range(6)]
    rows = pd.DataFrame({"open_time": np.repeat(times, 6), "symbol": np.tile(symbols, len(times))})
    thinned = calibration.capped(rows)
    assert len(thinned) == 6 * 500
    assert (thinned.groupby("symbol").size() == 500).all(), thinned["symbol"].value_counts()
    assert thinned["open_time"].nunique() == 500
