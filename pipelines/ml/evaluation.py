"""Leakage-safe splits and the metrics every model is judged by."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, brier_score_loss, f1_score, log_loss, roc_auc_score

from pipelines.errors import PipelineError


@dataclass(frozen=True)
class Window:
    """Rows of a dataset split into a training part and the latest evaluation window."""

    train: pd.DataFrame
    evaluation: pd.DataFrame
    eval_start: pd.Timestamp
    eval_end: pd.Timestamp


def split_eval_window(
    rows: pd.DataFrame, eval_days: float, embargo: pd.Timedelta, min_train_rows: int
) -> Window:
    """The last `eval_days` of labelled rows for evaluation; training rows end `embargo`
    before it (their labels would otherwise peek into the window).

    Raises:
        PipelineError: if too few rows are left on either side.
    """
    times = rows["open_time"]
    last = times.max()
    eval_start = last - pd.Timedelta(days=eval_days)
    if times.is_monotonic_increasing:  # the parts are slices, not copies
        train = rows.iloc[: times.searchsorted(eval_start - embargo, side="right")]
        evaluation = rows.iloc[times.searchsorted(eval_start, side="right") :]
    else:
        evaluation = rows[times > eval_start]
        train = rows[times <= eval_start - embargo]
    if len(train) < min_train_rows or evaluation.empty:
        raise PipelineError(
            f"too few labelled rows: {len(train)} to train (need {min_train_rows}) and "
            f"{len(evaluation)} to evaluate, from {rows['open_time'].min()} to {last}",
            "widen --start/--end, or lower MLOPS_EVAL_DAYS, MLOPS_HORIZON or MLOPS_MIN_TRAIN_ROWS",
        )
    return Window(train, evaluation, evaluation["open_time"].min(), last)


def walk_forward(
    times: pd.Series, folds: int, embargo: pd.Timedelta
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Expanding-window folds in time order: (train indices, test indices) per fold.

    The time range is cut into ``folds + 1`` equal blocks; fold k tests on block k and trains on
    everything that ends `embargo` before that block starts.
    """
    values = times.to_numpy()
    edges = pd.date_range(times.min(), times.max(), periods=folds + 2).to_numpy()
    for k in range(1, folds + 1):
        test = np.flatnonzero(
            (values >= edges[k]) & (values < edges[k + 1] if k < folds else values <= edges[k + 1])
        )
        train = np.flatnonzero(values < edges[k] - embargo.to_timedelta64())
        if len(train) and len(test):
            yield train, test


def strategy_return(
    rows: pd.DataFrame, probability: np.ndarray, horizon: int, fee_bps: float
) -> tuple[float, int]:
    """Naive strategy: every `horizon` bars per symbol go long if p > 0.5 else short, hold for
    `horizon` bars, pay `fee_bps` per trade. Returns (mean total net return per symbol, trades)."""
    frame = pd.DataFrame(
        {
            "symbol": rows["symbol"].to_numpy(),
            "p": probability,
            "r": np.expm1(rows["future_return"].to_numpy()),
        }
    )
    totals, trades = [], 0
    for _, group in frame.groupby("symbol", sort=True):
        taken = group.iloc[::horizon]
        position = np.where(taken["p"] > 0.5, 1.0, -1.0)
        net = position * taken["r"].to_numpy() - fee_bps / 1e4
        totals.append(float(np.sum(net)))
        trades += len(taken)
    return (float(np.mean(totals)) if totals else 0.0), trades


def window_starts(times: pd.Series, hours: float) -> pd.Series:
    """The start of the `hours`-long window (aligned on the Unix epoch, UTC) each time falls
    in: the monitor's windows (`pipelines.decisions.monitor.judge_windows`)."""
    width = pd.Timedelta(hours=hours)
    epoch = pd.Timestamp(0, tz="UTC")
    return epoch + ((times - epoch) // width) * width


def symbol_windows(rows: pd.DataFrame, hours: float) -> np.ndarray:
    """Each row's symbol and monitor window (``symbol@window start``): the groups
    `roc_auc_within` is recorded over at evaluation."""
    starts = window_starts(rows["open_time"], hours).astype(str)
    return np.asarray((rows["symbol"].astype(str) + "@" + starts).to_numpy())


def roc_auc_within(labels: np.ndarray, probability: np.ndarray, groups: np.ndarray) -> float:
    """ROC-AUC over the pairs (one up, one down) of the same group only: each group's ROC-AUC,
    weighted by its pairs (NaN when no group has both classes).

    Grouped by symbol and monitor window, it asks what the monitor can judge a model on: does
    it rank one symbol's bars within a window? Pairs across symbols or windows also score
    whether it guessed which symbol or day would rise more, which a day's few trends decide by
    chance: on the synthetic market they make a healthy window's ROC-AUC vary 40% more and hide
    part of a concept change (docs/decisions.md)."""
    y = np.asarray(labels).astype(int)
    p = np.asarray(probability, dtype=float)
    codes = pd.factorize(pd.Series(groups))[0]
    total = weight = 0.0
    for code in np.unique(codes):
        member = codes == code
        ups = int(y[member].sum())
        pairs = ups * (int(member.sum()) - ups)
        if pairs:
            total += float(roc_auc_score(y[member], p[member])) * pairs
            weight += pairs
    return total / weight if weight else float("nan")


def classification_metrics(
    rows: pd.DataFrame,
    probability: np.ndarray,
    horizon: int,
    fee_bps: float,
    window_hours: float,
) -> dict[str, float]:
    """Accuracy, ROC-AUC (and within symbol and `window_hours` window: `roc_auc_within`), log-loss,
    F1, Brier, base rate and the naive strategy's net return."""
    y = rows["label"].to_numpy().astype(int)
    p = np.clip(probability, 1e-7, 1 - 1e-7)
    predicted = (p > 0.5).astype(int)
    both_classes = len(np.unique(y)) == 2
    strategy, trades = strategy_return(rows, p, horizon, fee_bps)
    return {
        "accuracy": float(accuracy_score(y, predicted)),
        "roc_auc": float(roc_auc_score(y, p)) if both_classes else float("nan"),
        "roc_auc_within_symbol": roc_auc_within(y, p, symbol_windows(rows, window_hours)),
        "log_loss": float(log_loss(y, p, labels=[0, 1])),
        "f1": float(f1_score(y, predicted, zero_division=0)),
        "brier": float(brier_score_loss(y, p)),
        "base_rate": float(y.mean()),
        "strategy_return": strategy,
        "strategy_trades": float(trades),
        "rows": float(len(y)),
    }
