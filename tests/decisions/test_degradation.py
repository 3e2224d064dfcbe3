"""The monitor's rollback rule: one-sided CUSUMs of each judged window's ROC-AUC deficit and
log-loss excess against the recorded evaluation's (`pipelines.decisions.degradation`)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from pipelines.decisions.degradation import (
    CLIP,
    CUSUM_K,
    UNIT_SYMBOL_DAYS,
    WITHIN,
    cusum,
    judge,
    units,
)
from pipelines.decisions.monitor import judge_windows, trailing_degraded
from pipelines.settings import Settings

RECORDED = {WITHIN: 0.55, "log_loss": 0.69}
AUC_SD = units(Settings.model_construct())["roc_auc"]
LL_SD = units(Settings.model_construct())["log_loss"]
"""The CUSUMs' units the tests' settings use (the defaults, not the environment)."""


def _windows(
    deficit_sd: list[float | None], excess_sd: list[float] | None = None
) -> list[dict[str, Any]]:
    """Windows whose ROC-AUC is the recorded one less `deficit_sd` (None: not judged) and
    whose log-loss is the recorded one plus `excess_sd` (default: none)."""
    excess = excess_sd or [0.0] * len(deficit_sd)
    return [
        {
            WITHIN: RECORDED[WITHIN] - (z or 0.0) * AUC_SD,
            "log_loss": RECORDED["log_loss"] + e * LL_SD,
            "judged": z is not None,
            "degraded": False,
        }
        for z, e in zip(deficit_sd, excess, strict=True)
    ]


def test_cusum_accumulates_and_forgets() -> None:
    k = CUSUM_K
    assert cusum([2.0, 2.5, -5.0, 3.0]) == pytest.approx([2.0 - k, 4.5 - 2 * k, 0.0, 3.0 - k])
    # one window adds at most CLIP - k, however bad
    assert cusum([100.0]) == pytest.approx([CLIP - CUSUM_K])


def test_a_sustained_auc_deficit_rolls_back_and_noise_does_not() -> None:
    settings = Settings.model_construct(monitor_windows=3)
    # a hair above the line after 3 windows: 3 x (z - k) = threshold
    z = settings.monitor_cusum_threshold / 3 + CUSUM_K + 0.01
    sustained = judge(_windows([z, z, z]), RECORDED, settings)
    assert sustained.rollback and sustained.first_crossing == 2
    assert sustained.crossed == "roc_auc"
    assert sustained.excess["roc_auc"] == pytest.approx([z, z, z])
    assert sustained.statistics["log_loss"] == 0.0
    noise = judge(_windows([1.2, -0.8, 1.5, 0.3, 1.1, -0.2]), RECORDED, settings)
    assert not noise.rollback and noise.statistic < noise.threshold
    # the same windows a hair below the line hold
    below = settings.monitor_cusum_threshold / 3 + CUSUM_K - 0.01
    assert not judge(_windows([below] * 3), RECORDED, settings).rollback


def test_one_catastrophic_window_is_not_a_rollback() -> None:
    settings = Settings.model_construct(monitor_windows=1)
    assert settings.monitor_cusum_threshold > CLIP - CUSUM_K
    verdict = judge(_windows([0.0, 0.0, 80.0], [0.0, 0.0, 80.0]), RECORDED, settings)
    assert not verdict.rollback and verdict.statistic == pytest.approx(CLIP - CUSUM_K)
    assert judge(_windows([0.0, 80.0, 80.0]), RECORDED, settings).rollback


def test_no_rollback_before_the_least_windows_are_judged() -> None:
    early = judge(_windows([5.0, 5.0, 5.0]), RECORDED, Settings.model_construct(monitor_windows=1))
    assert early.first_crossing == 1
    late = judge(
        _windows([5.0, None, 5.0, 5.0]), RECORDED, Settings.model_construct(monitor_windows=3)
    )
    assert late.judged == 3 and late.first_crossing == 2  # the unjudged window is skipped


def test_a_log_loss_degradation_the_auc_rule_missed_is_caught() -> None:
    """Predictions that keep their ranking (ROC-AUC unchanged) but lose their calibration, for
    three days: the old per-window ROC-AUC rule holds, the CUSUM rolls back."""
    rng = np.random.default_rng(4)
    times = pd.date_range("2024-05-01", periods=3 * 1440, freq="1min", tz="UTC")
    signal = rng.standard_normal(len(times))
    label = (signal + 2.5 * rng.standard_normal(len(times)) > 0).astype(int)
    healthy = 1 / (1 + np.exp(-0.68 * signal))  # calibrated: P(up | signal)
    overconfident = 1 / (1 + np.exp(-2.0 * signal))  # same order, far too sure
    settings = Settings.model_construct()

    def windows(p: np.ndarray) -> list[dict[str, Any]]:
        joined = pd.DataFrame({"open_time": times, "label": label, "probability_up": p})
        return judge_windows(joined, 24.0, 100, 0.0, settings.monitor_max_auc_drop)

    before = windows(healthy)
    recorded = {
        "roc_auc": float(np.mean([w["roc_auc"] for w in before])),
        WITHIN: float(np.mean([w[WITHIN] for w in before])),
        "log_loss": float(np.mean([w["log_loss"] for w in before])),
    }
    after = windows(overconfident)
    for window in after:  # as judged against the recorded ROC-AUC
        window["degraded"] = window["roc_auc"] < recorded["roc_auc"] - settings.monitor_max_auc_drop
    assert trailing_degraded(after) < settings.monitor_windows  # the old rule: hold
    verdict = judge(after, recorded, settings)
    assert verdict.rollback and verdict.crossed == "log_loss"
    assert verdict.statistics["roc_auc"] < settings.monitor_cusum_threshold  # same ranking
    assert not judge(before, recorded, settings).rollback


def test_a_reversed_signal_is_caught_by_its_ranking() -> None:
    """Predictions whose signal reverses for three days while staying close to 0.5: their
    log-loss barely rises, their ROC-AUC falls below 0.5; the ROC-AUC CUSUM rolls back."""
    rng = np.random.default_rng(5)
    times = pd.date_range("2024-05-01", periods=6 * 1440, freq="1min", tz="UTC")
    signal = rng.standard_normal(len(times))
    label = (signal + 8.0 * rng.standard_normal(len(times)) > 0).astype(int)
    p = 1 / (1 + np.exp(-0.1 * signal))  # a weak model: ROC-AUC about 0.54
    reversed_label = np.where(times >= times[3 * 1440], 1 - label, label)
    settings = Settings.model_construct()
    joined = pd.DataFrame({"open_time": times, "label": reversed_label, "probability_up": p})
    windows = judge_windows(joined, 24.0, 100, 0.0, settings.monitor_max_auc_drop)
    before, after = windows[:3], windows[3:]
    recorded = {
        "roc_auc": float(np.mean([w["roc_auc"] for w in before])),
        WITHIN: float(np.mean([w[WITHIN] for w in before])),
        "log_loss": float(np.mean([w["log_loss"] for w in before])),
    }
    assert 0.52 < recorded["roc_auc"] < 0.58
    assert not judge(before, recorded, settings).rollback
    verdict = judge(after, recorded, settings)
    assert verdict.rollback and verdict.crossed == "roc_auc"
    assert verdict.statistics["log_loss"] < settings.monitor_cusum_threshold


def test_the_units_shrink_with_the_evidence_in_a_window() -> None:
    """The settings state each unit for a window of `UNIT_SYMBOL_DAYS` symbol-days; six
    symbols' day holds three times that, so its s.d. is sqrt(3) smaller, and a deficit that a
    two-symbol window's CUSUM only accumulates slowly rolls six symbols' champion back."""
    two = Settings(symbols=["BTCUSDT", "ETHUSDT"], monitor_window_hours=24)
    six = Settings(symbols=[f"S{i}USDT" for i in range(6)], monitor_window_hours=24)
    half = Settings(symbols=["BTCUSDT", "ETHUSDT"], monitor_window_hours=12)
    assert UNIT_SYMBOL_DAYS == 2.0
    assert units(two)["roc_auc"] == pytest.approx(two.monitor_auc_sd)
    assert units(six)["roc_auc"] == pytest.approx(six.monitor_auc_sd / np.sqrt(3))
    assert units(six)["log_loss"] == pytest.approx(six.monitor_log_loss_sd / np.sqrt(3))
    assert units(half)["roc_auc"] == pytest.approx(half.monitor_auc_sd * np.sqrt(2))
    drop = 1.5 * two.monitor_auc_sd  # each window's ROC-AUC this far below the recorded
    windows = [
        {WITHIN: RECORDED[WITHIN] - drop, "log_loss": RECORDED["log_loss"], "judged": True}
    ] * 3
    assert not judge(windows, RECORDED, two).rollback
    assert judge(windows, RECORDED, six).rollback


def test_a_window_weighs_the_hours_each_symbol_covers() -> None:
    """`symbol_days`: a whole day of six symbols is 6; two symbols' first six hours 0.5; a log
    that holds every fifth bar still covers its day. A partial window's unit is larger, so
    its few rows cannot weigh like a day's."""
    from pipelines.decisions.monitor import symbol_days

    day = pd.date_range("2024-03-01", periods=1440, freq="1min", tz="UTC")
    six = pd.DataFrame(
        {"open_time": np.tile(day, 6), "symbol": np.repeat([f"S{i}" for i in range(6)], 1440)}
    )
    assert symbol_days(six) == 6.0
    assert symbol_days(six[six["symbol"].isin(["S0", "S1"]) & (six["open_time"] < day[360])]) == 0.5
    assert symbol_days(six.iloc[::5]) == 6.0
    settings = Settings(symbols=[f"S{i}USDT" for i in range(6)], monitor_window_hours=24)
    assert units(settings, 0.5)["roc_auc"] == pytest.approx(2 * settings.monitor_auc_sd)
    assert units(settings, 6.0)["roc_auc"] == pytest.approx(units(settings)["roc_auc"])


def test_a_version_without_a_recorded_roc_auc_within_symbol_is_judged_on_log_loss() -> None:
    """A champion trained before the evaluation recorded its ROC-AUC within symbol: the ROC-AUC
    CUSUM cannot run (no reference of the same kind), the record says so and how it ends, and
    the log-loss CUSUM still judges every window."""
    settings = Settings.model_construct()
    legacy = {"roc_auc": 0.55, "log_loss": RECORDED["log_loss"]}
    reversed_ranking = _windows([10.0, 10.0, 10.0])
    verdict = judge(reversed_ranking, legacy, settings)
    assert verdict.judged == 3 and verdict.excess["roc_auc"] == [] and not verdict.rollback
    assert "ROC-AUC deficit not judged (no recorded roc_auc_within_symbol" in verdict.reason(legacy)
    assert judge(reversed_ranking, RECORDED, settings).rollback
    overconfident = _windows([0.0, 0.0, 0.0], [4.0, 4.0, 4.0])
    assert judge(overconfident, legacy, settings).crossed == "log_loss"


def test_a_live_window_ranks_only_pairs_of_the_same_symbol() -> None:
    """Two symbols in one window, each ranked perfectly within itself, the one that rose more
    often given the lower probabilities: the pooled ROC-AUC is pulled below 1 by cross-symbol
    pairs, the within-symbol one (what the rollback reads) is 1. A window where no symbol has
    both classes is not judged, however many rows it holds."""
    times = pd.date_range("2024-01-02", periods=8, freq="1h", tz="UTC")
    joined = pd.DataFrame(
        {
            "open_time": times,
            "symbol": ["A"] * 4 + ["B"] * 4,
            "label": [0, 0, 1, 1, 0, 1, 1, 1],
            "probability_up": [0.6, 0.7, 0.8, 0.9, 0.1, 0.2, 0.3, 0.4],
        }
    )
    (window,) = judge_windows(joined, 24.0, 8, 0.55, 0.05)
    assert window["roc_auc"] == pytest.approx(0.6) and window[WITHIN] == 1.0 and window["judged"]
    one_class_each = joined.assign(label=[0] * 4 + [1] * 4)
    (window,) = judge_windows(one_class_each, 24.0, 8, 0.55, 0.05)
    assert window[WITHIN] is None and not window["judged"] and window["roc_auc"] is not None
