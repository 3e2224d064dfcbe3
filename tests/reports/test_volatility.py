"""The volatility-level drift statistic (`pipelines.reports.volatility`), its calibration with
the PSIs (`pipelines.reports.calibration`) and its place in the drift report and the gate."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from pipelines.decisions.gate import judge
from pipelines.reports.calibration import calibrate, statistic_checks, trailing
from pipelines.reports.drift import data_drift
from pipelines.reports.volatility import (
    SHARE,
    STATISTIC,
    StatisticCheck,
    shift_threshold,
    volatility_feature,
    volatility_shift,
)
from pipelines.settings import Settings
from pipelines.storage import LocalStorage

BARS = 144  # 10-minute bars a day
FEATURES = ["log_return_1", "b"]


def _market(days: int, seed: int, vol_from: int | None = None, multiplier: float = 2.0) -> Any:
    """Two symbols' 10-minute rows: a one-bar return whose day-level volatility wanders a
    little (log-s.d. 0.05 a day) around an intraday seasonality, and a stable feature `b`;
    from day `vol_from` on the volatility is x`multiplier`."""
    rng = np.random.default_rng(seed)
    times = pd.date_range("2024-01-01", periods=days * BARS, freq="10min", tz="UTC")
    season = np.tile(np.exp(0.8 * np.sin(np.linspace(0, 2 * np.pi, BARS, endpoint=False))), days)
    parts = []
    for symbol in ("AAA", "BBB"):
        level = np.repeat(np.exp(0.05 * rng.standard_normal(days)), BARS)
        if vol_from is not None:
            level[vol_from * BARS :] *= multiplier
        parts.append(
            pd.DataFrame(
                {
                    "open_time": times,
                    "symbol": symbol,
                    "log_return_1": 0.001 * season * level * rng.standard_normal(len(times)),
                    "b": rng.standard_normal(len(times)),
                }
            )
        )
    return pd.concat(parts).sort_values(["open_time", "symbol"], ignore_index=True)


def _mean_log_abs(frame: pd.DataFrame) -> pd.Series:
    return frame.groupby("symbol")["log_return_1"].apply(lambda r: np.log(np.abs(r)).mean())


def test_the_statistic_is_each_symbols_level_against_the_same_bars_a_day_before() -> None:
    rows = _market(4, seed=1)
    start = rows["open_time"].iloc[0] + pd.Timedelta(days=3)
    window = rows[rows["open_time"] >= start]
    reference = trailing(rows, start, 2)
    day_before = reference[reference["open_time"] >= start - pd.Timedelta(days=1)]
    expected = (_mean_log_abs(window) - _mean_log_abs(day_before)).mean()
    assert volatility_shift(reference, window, "log_return_1") == pytest.approx(expected)
    # a window missing its last 8 hours is compared with the same hours of the day before:
    # the intraday seasonality cancels, where the whole day before would not
    partial = window[window["open_time"] < start + pd.Timedelta(hours=16)]
    same_hours = day_before[day_before["open_time"] < start - pd.Timedelta(hours=8)]
    matched = (_mean_log_abs(partial) - _mean_log_abs(same_hours)).mean()
    whole = (_mean_log_abs(partial) - _mean_log_abs(day_before)).mean()
    assert volatility_shift(reference, partial, "log_return_1") == pytest.approx(matched)
    assert abs(matched) < abs(whole) / 3


def test_volatility_x2_is_flagged_and_a_stable_day_is_not() -> None:
    history = _market(21, seed=2, vol_from=20)
    start = history["open_time"].iloc[0] + pd.Timedelta(days=20)
    calibration = calibrate(
        history[history["open_time"] < start], FEATURES, {"monitor": 24.0}, 0.01, 0.2, 3
    )
    line = calibration.statistic_thresholds("monitor")[STATISTIC]
    null_median = calibration.decisions["monitor"].statistics_null_median[STATISTIC]
    assert line > abs(null_median)
    reference = trailing(history, start, 3)
    shifted = history[history["open_time"] >= start]
    (found,) = statistic_checks(calibration, "monitor", reference, shifted, FEATURES)
    assert found.feature == "log_return_1" and found.score == pytest.approx(np.log(2), abs=0.2)
    assert found.drifted and found.score >= line
    # the same day without the shift
    calm = _market(21, seed=2)
    calm_day = calm[calm["open_time"] >= start]
    (stable,) = statistic_checks(
        calibration, "monitor", trailing(calm, start, 3), calm_day, FEATURES
    )
    assert not stable.drifted and abs(stable.score) < line
    # a feature that stopped arriving has no level: drifted
    broken = shifted.assign(log_return_1=np.nan)
    (gone,) = statistic_checks(calibration, "monitor", reference, broken, FEATURES)
    assert gone.score == float("inf") and gone.drifted


def test_the_false_alarm_rate_is_shared_with_the_features() -> None:
    history = _market(12, seed=3)
    calibration = calibrate(history, FEATURES, {"gate": 24.0}, 0.01, 0.2, 3)
    assert calibration.volatility_feature == "log_return_1"
    assert calibration.statistic_rate == pytest.approx(0.01 * SHARE)
    assert calibration.per_feature_rate == pytest.approx(0.01 * (1 - SHARE) / 2)
    # without a one-bar return there is no such statistic, and the features share it all
    alone = calibrate(history, ["b"], {"gate": 24.0}, 0.01, 0.2, 3)
    assert alone.statistic_thresholds("gate") == {} and alone.per_feature_rate == 0.01
    assert volatility_feature(["realized_vol_48", "log_return_3", "log_return_12"]) == (
        "log_return_3"
    )


def test_the_threshold_extrapolates_and_never_undercuts_the_sample() -> None:
    samples = np.random.default_rng(4).normal(0.0, 0.2, size=60)
    loose = shift_threshold(samples, 0.05, 5, 200, 0.95)
    tight = shift_threshold(samples, 0.001, 5, 200, 0.95)
    assert np.max(np.abs(samples)) <= loose < tight
    assert shift_threshold(np.array([0.1, -3.0, 0.2]), 0.4, 1, 50, 0.95) >= 3.0


def _check(drifted: bool) -> StatisticCheck:
    return StatisticCheck(
        name=STATISTIC, feature="log_return_1", score=0.8, threshold=0.6, drifted=drifted
    )


def test_a_drifted_volatility_level_makes_the_dataset_drift(tmp_path: Any) -> None:
    rows = _market(3, seed=5)
    start = rows["open_time"].iloc[0] + pd.Timedelta(days=2)
    report = data_drift(
        trailing(rows, start, 2),
        rows[rows["open_time"] >= start],
        FEATURES,
        storage=LocalStorage(tmp_path),
        env="local",
        drift_share=0.5,
        statistics=[_check(True)],
    )
    assert report.drifted_columns == [] and report.dataset_drift
    assert report.statistics == [_check(True)]


def test_the_gate_rejects_on_a_drifted_volatility_level() -> None:
    settings = Settings.model_construct(gate_min_auc_delta=0.0, gate_confidence=0.9)
    evidence = {
        "roc_auc_delta": 0.05,
        "roc_auc_delta_interval": [0.01, 0.09],
        "challenger": {"roc_auc": 0.60},
        "champion": {"roc_auc": 0.55},
    }
    reasons, promote = judge(settings, evidence, [], 2, 0.5, [_check(False)])
    assert promote and "within" in reasons[-1]
    reasons, promote = judge(settings, evidence, [], 2, 0.5, [_check(True)])
    assert not promote and reasons[-1].startswith(STATISTIC) and "drifted" in reasons[-1]
