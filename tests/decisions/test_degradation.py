"""The monitor's rollback rule: a one-sided CUSUM of each judged window's log-loss excess over
the recorded evaluation's (`pipelines.decisions.degradation`)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from pipelines.decisions.degradation import CLIP, CUSUM_K, cusum, judge
from pipelines.decisions.monitor import judge_windows, trailing_degraded
from pipelines.settings import Settings

RECORDED = 0.69
SD = Settings.model_fields["monitor_log_loss_sd"].default
"""The CUSUM's unit the tests' settings use (the default)."""


def _windows(excess_sd: list[float | None], sd: float = SD) -> list[dict[str, Any]]:
    """Windows whose log-loss is `RECORDED` plus the excess (None: not judged)."""
    return [
        {
            "log_loss": RECORDED + (z or 0.0) * sd,
            "judged": z is not None,
            "degraded": False,
        }
        for z in excess_sd
    ]


def test_cusum_accumulates_and_forgets() -> None:
    assert cusum([2.0, 2.5, -5.0, 3.0]) == pytest.approx([0.5, 1.5, 0.0, 1.5])
    # one window adds at most CLIP - k, however bad
    assert cusum([100.0]) == pytest.approx([CLIP - CUSUM_K])


def test_a_sustained_excess_rolls_back_and_noise_does_not() -> None:
    settings = Settings.model_construct(monitor_windows=3)
    # a hair above 2.5 s.d.: 3 x (2.5 - k) is exactly the line, which rounding could miss
    sustained = judge(_windows([2.51, 2.51, 2.51]), RECORDED, settings)
    assert sustained.rollback and sustained.first_crossing == 2
    assert sustained.excess == pytest.approx([2.51, 2.51, 2.51])
    noise = judge(_windows([1.2, -0.8, 1.5, 0.3, 1.1, -0.2]), RECORDED, settings)
    assert not noise.rollback and noise.statistic < noise.threshold


def test_one_catastrophic_window_is_not_a_rollback() -> None:
    settings = Settings.model_construct(monitor_windows=1)
    verdict = judge(_windows([0.0, 0.0, 80.0]), RECORDED, settings)
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
    recorded_auc = float(np.mean([w["roc_auc"] for w in before]))
    recorded_log_loss = float(np.mean([w["log_loss"] for w in before]))
    after = windows(overconfident)
    for window in after:  # as judged against the recorded ROC-AUC
        window["degraded"] = window["roc_auc"] < recorded_auc - settings.monitor_max_auc_drop
    assert trailing_degraded(after) < settings.monitor_windows  # the old rule: hold
    assert judge(after, recorded_log_loss, settings).rollback
    assert not judge(before, recorded_log_loss, settings).rollback
