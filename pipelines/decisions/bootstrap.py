"""The gate's evidence of "better by more than noise": a moving-block bootstrap of the ROC-AUC
difference between two models scored on the same rows (`pipelines.decisions.gate`)."""

from __future__ import annotations

import numpy as np

BLOCK_HOURS = 6
"""The bootstrap's blocks hold this many hours of rows (every symbol's), at least one label
horizon. A challenger's edge over the champion comes and goes with the market's intraday
regimes, not only with the overlap of neighbouring labels: on the backtest's gate trials
(180 of 2026-12-02, 7-day windows) blocks of one horizon (12 bars) made the 90% interval so
narrow that 14 of 115 truly worse challengers were promoted; 6-hour blocks with the 98%
interval, 2 (docs/decisions.md)."""


def bootstrap_block(horizon: int, interval: str, symbols: int) -> int:
    """Rows per bootstrap block: `BLOCK_HOURS` of bars (at least `horizon`) times `symbols`."""
    from datetime import timedelta

    from pipelines.intervals import interval_delta

    bars = max(horizon, int(timedelta(hours=BLOCK_HOURS) / interval_delta(interval)))
    return bars * max(1, symbols)


def fast_auc(y: np.ndarray, p: np.ndarray) -> float:
    """ROC-AUC as the Mann-Whitney statistic (average ranks for ties): the number
    ``sklearn.metrics.roc_auc_score`` returns, without its per-call validation, which cost
    ~20 ms per call, i.e. seconds per bootstrap."""
    from scipy.stats import rankdata

    positives = y == 1
    n1 = int(positives.sum())
    n0 = len(y) - n1
    ranks = rankdata(p)
    return float((ranks[positives].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def block_bootstrap_auc_delta(
    y: np.ndarray,
    challenger: np.ndarray,
    champion: np.ndarray,
    block: int,
    samples: int,
    seed: int = 0,
) -> np.ndarray:
    """ROC-AUC(challenger) - ROC-AUC(champion) over `samples` moving-block resamples of the
    rows (in time order; blocks keep the overlap of labels that share a horizon together)."""
    n = len(y)
    block = max(1, min(block, n))
    starts = np.arange(n - block + 1)
    rng = np.random.default_rng(seed)
    deltas = []
    for _ in range(samples):
        picks = rng.choice(starts, size=int(np.ceil(n / block)))
        idx = (picks[:, None] + np.arange(block)[None, :]).ravel()[:n]
        ys = y[idx]
        if ys.min() == ys.max():
            continue
        deltas.append(fast_auc(ys, challenger[idx]) - fast_auc(ys, champion[idx]))
    return np.asarray(deltas)
