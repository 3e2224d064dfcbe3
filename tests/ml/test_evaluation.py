"""Splits that cannot leak, and metrics that mean what they say."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipelines.errors import PipelineError
from pipelines.ml.evaluation import (
    classification_metrics,
    roc_auc_within,
    split_eval_window,
    walk_forward,
    window_starts,
)


def frame(n: int = 5000, symbols: tuple[str, ...] = ("A", "B")) -> pd.DataFrame:
    times = pd.date_range("2024-01-01", periods=n, freq="1min", tz="UTC")
    rng = np.random.default_rng(0)
    parts = [
        pd.DataFrame(
            {
                "open_time": times,
                "symbol": s,
                "label": rng.integers(0, 2, n),
                "future_return": rng.normal(0, 1e-3, n),
            }
        )
        for s in symbols
    ]
    return pd.concat(parts, ignore_index=True).sort_values(
        ["open_time", "symbol"], ignore_index=True
    )


def test_eval_window_is_the_latest_and_training_stops_an_embargo_before() -> None:
    rows = frame()
    embargo = pd.Timedelta(minutes=12)
    window = split_eval_window(rows, eval_days=1.0, embargo=embargo, min_train_rows=100)
    assert window.eval_end == rows["open_time"].max()
    assert window.evaluation["open_time"].min() > window.eval_end - pd.Timedelta(days=1)
    # a training row's label looks 12 bars ahead: it must end before the window starts
    assert window.train["open_time"].max() + embargo < window.eval_start
    assert len(window.train) + len(window.evaluation) + 2 * 12 == len(rows)


def test_walk_forward_never_trains_on_or_near_its_test_block() -> None:
    rows = frame()
    embargo = pd.Timedelta(minutes=30)
    folds = list(walk_forward(rows["open_time"], 4, embargo))
    assert len(folds) == 4
    tested = np.concatenate([test for _, test in folds])
    assert len(np.unique(tested)) == len(tested), "test blocks do not overlap"
    for train, test in folds:
        assert rows["open_time"].iloc[train].max() + embargo < rows["open_time"].iloc[test].min()
    assert [len(train) for train, _ in folds] == sorted(len(train) for train, _ in folds)


def test_too_few_rows_is_a_clear_error() -> None:
    with pytest.raises(PipelineError, match="too few labelled rows"):
        split_eval_window(
            frame(300), eval_days=1.0, embargo=pd.Timedelta(minutes=12), min_train_rows=100
        )


def test_metrics_reward_the_truth_and_charge_fees() -> None:
    rows = frame(2000)
    y = rows["label"].to_numpy()
    rows["future_return"] = np.where(y == 1, 1e-3, -1e-3)
    perfect = classification_metrics(rows, y.astype(float), horizon=1, fee_bps=0, window_hours=24.0)
    assert perfect["roc_auc"] == 1.0 and perfect["accuracy"] == 1.0 and perfect["brier"] < 1e-6
    assert perfect["roc_auc_within_symbol"] == 1.0
    # long the ups, short the downs: every trade earns |simple return|; mean over the 2 symbols
    assert perfect["strategy_return"] == pytest.approx(
        np.abs(np.expm1(rows["future_return"])).sum() / 2
    )
    wrong = classification_metrics(rows, 1.0 - y, horizon=1, fee_bps=0, window_hours=24.0)
    assert wrong["accuracy"] == 0.0 and wrong["strategy_return"] < 0
    assert wrong["roc_auc_within_symbol"] == 0.0
    fees = classification_metrics(rows, y.astype(float), horizon=1, fee_bps=10, window_hours=24.0)
    assert fees["strategy_return"] == pytest.approx(perfect["strategy_return"] - 2000 * 10 / 1e4)
    coin = classification_metrics(
        rows, np.full(len(y), 0.5), horizon=4, fee_bps=0, window_hours=24.0
    )
    assert coin["log_loss"] == pytest.approx(np.log(2)) and coin["strategy_trades"] == 2 * 500
    assert perfect["base_rate"] == pytest.approx(y.mean())


def test_roc_auc_within_ranks_only_pairs_of_the_same_group() -> None:
    """Two symbols, each ranked perfectly within itself, but the one that rose more often gets
    the lower probabilities: pooled, the cross-symbol pairs pull ROC-AUC far below 1; within
    symbol it is 1. Each group weighs by its pairs; without a group holding both classes it is
    NaN."""
    y = np.array([0, 0, 1, 1, 0, 1, 1, 1])
    p = np.array([0.6, 0.7, 0.8, 0.9, 0.1, 0.2, 0.3, 0.4])
    g = np.array(["A"] * 4 + ["B"] * 4)
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(y, p) == pytest.approx(0.6)
    assert roc_auc_within(y, p, g) == 1.0
    # A's 4 pairs all wrong, B's 3 pairs all right: 3/7, not the mean of 0 and 1
    flipped = np.where(g == "A", 1 - p, p)
    assert roc_auc_within(y, flipped, g) == pytest.approx(3 / 7)
    assert np.isnan(roc_auc_within(np.array([0, 0, 1, 1]), p[:4], np.array(list("ABCD"))))


def test_the_recorded_roc_auc_within_symbol_is_grouped_by_monitor_window() -> None:
    """The recorded evaluation's ROC-AUC within symbol pairs bars of the same symbol and the same
    epoch-aligned monitor window, as the monitor judges a live window: a model that ranks each
    day right but gives one day higher probabilities than the next is perfect by day, not over
    two days."""
    # 2024-01-02 is an even day since the epoch: a 48-hour window starts there
    times = pd.Series(pd.date_range("2024-01-02", periods=4, freq="12h", tz="UTC"))
    assert list(window_starts(times, 24.0).dt.hour) == [0, 0, 0, 0]
    assert window_starts(times, 24.0).nunique() == 2
    rows = pd.DataFrame(
        {
            "open_time": times,
            "symbol": "A",
            "label": [0, 1, 0, 1],
            "future_return": [-1e-3, 1e-3, -1e-3, 1e-3],
        }
    )
    p = np.array([0.1, 0.2, 0.8, 0.9])  # day 2's down bar above day 1's up bar
    by_day = classification_metrics(rows, p, horizon=1, fee_bps=0, window_hours=24.0)
    by_two_days = classification_metrics(rows, p, horizon=1, fee_bps=0, window_hours=48.0)
    assert by_day["roc_auc_within_symbol"] == 1.0
    assert by_two_days["roc_auc_within_symbol"] == pytest.approx(3 / 4)
