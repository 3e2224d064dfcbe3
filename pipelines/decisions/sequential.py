"""An anytime-valid confidence sequence for the mean of a bounded per-row difference.

The shadow decision compares the challenger and the champion on the same trusted rows as they
are realized: per row ``d = loss(challenger) - loss(champion)``, clipped to ``[-bound, bound]``.
Looking at a classical interval every hour and stopping the first time it excludes 0 would
promote a no-better model far more often than its nominal rate. A *confidence sequence* is a
sequence of intervals that all cover the mean at once with probability ≥ 1 - alpha, so the decision
may be taken at any time — after every window, after any number of looks — and its error rate
still holds.

The sequence is the predictable plug-in empirical-Bernstein (PrPl-EB) confidence sequence of
Waudby-Smith & Ramdas, "Estimating means of bounded random variables by betting", JRSS-B 86(1),
2024 (arXiv:2010.09686), Theorem 2 and eq. (13)-(15): for ``X_i`` in [0, 1] with conditional mean
mu, with mu_t and var_t running estimates (of the rows *before* i, so λ_i is predictable),

    λ_i = min(sqrt(2 log(2/alpha) / (var_{i-1} · i · log(1 + i))), c)
    v_i = 4 (X_i - mu_{i-1})²,   ψ_E(λ) = (-log(1 - λ) - λ) / 4
    C_t = (Σ λ_i X_i) / (Σ λ_i)  ±  (log(2/alpha) + Σ v_i ψ_E(λ_i)) / (Σ λ_i)

Differences are mapped to [0, 1] by ``(d + bound) / (2 · bound)`` and back.

Why not a library: ``confseq`` (the authors' package, PyPI 0.0.11) had its last release in
January 2023 and builds a C++ extension; ``expectation`` (0.6.1, 2026) needs Python ≥ 3.12, and
the platform runs 3.11. The formula is a few lines of NumPy; the test checks its coverage by
simulation at every stopping time.

Validity needs the rows' conditional mean to be mu given the past (a martingale-difference
assumption, weaker than independence). Overlapping label horizons make neighbouring rows
dependent; the backtest (`pipelines.backtest.shadow`) measures the false-decision rate on rows
with exactly that overlap.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

Verdict = Literal["promote", "reject", "continue"]

MAX_BET = 0.5
"""``c`` in λ_i ≤ c (the paper uses 1/2 or 3/4): caps how much one row can move the bound."""


@dataclass(frozen=True)
class Interval:
    """The confidence sequence after `rows` observations, in the units of the difference."""

    rows: int
    mean: float
    """The plain running mean of the clipped differences."""
    low: float
    high: float
    alpha: float
    bound: float

    def verdict(self) -> Verdict:
        """``promote`` when the whole interval is below 0 (the challenger's loss is lower),
        ``reject`` when it is above 0, else ``continue``."""
        if self.high < 0:
            return "promote"
        if self.low > 0:
            return "reject"
        return "continue"


def confidence_sequence(x: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """PrPl-EB lower and upper bounds after each of the observations `x` (each in [0, 1]);
    simultaneously valid at level 1 - `alpha` (two-sided).

    Raises:
        ValueError: a value outside [0, 1], or `alpha` outside (0, 1).
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    x = np.asarray(x, dtype=np.float64)
    if x.size and (not np.isfinite(x).all() or x.min() < 0 or x.max() > 1):
        raise ValueError("every observation must be a finite number in [0, 1]")
    t = np.arange(1, x.size + 1, dtype=np.float64)
    # mu_t and var_t over the first t rows (with the paper's priors 1/2 and 1/4)
    mu = (0.5 + np.cumsum(x)) / (t + 1)
    sigma2 = (0.25 + np.cumsum((x - mu) ** 2)) / (t + 1)
    mu_before = np.concatenate([[0.5], mu[:-1]])
    sigma2_before = np.concatenate([[0.25], sigma2[:-1]])
    log_term = math.log(2 / alpha)
    lam = np.minimum(np.sqrt(2 * log_term / (sigma2_before * t * np.log1p(t))), MAX_BET)
    psi = (-np.log1p(-lam) - lam) / 4
    v = 4 * (x - mu_before) ** 2
    weight = np.cumsum(lam)
    center = np.cumsum(lam * x) / weight
    margin = (log_term + np.cumsum(v * psi)) / weight
    low = np.maximum(center - margin, 0.0)
    high = np.minimum(center + margin, 1.0)
    # the running intersection is a confidence sequence too, and never widens
    return np.maximum.accumulate(low), np.minimum.accumulate(high)


def difference_interval(diff: np.ndarray, alpha: float, bound: float) -> Interval:
    """The confidence sequence of the mean of `diff` (clipped to [-`bound`, `bound`]) after all
    its rows, in the order given (time order: the sequence is predictable in it).

    Raises:
        ValueError: `bound` is not positive, or `alpha` outside (0, 1).
    """
    if not bound > 0:
        raise ValueError(f"bound must be positive, got {bound}")
    clipped = np.clip(np.asarray(diff, dtype=np.float64), -bound, bound)
    if clipped.size == 0:
        if not 0 < alpha < 1:
            raise ValueError(f"alpha must be in (0, 1), got {alpha}")
        return Interval(0, 0.0, -bound, bound, alpha, bound)
    low, high = confidence_sequence((clipped + bound) / (2 * bound), alpha)
    return Interval(
        rows=int(clipped.size),
        mean=float(clipped.mean()),
        low=float(low[-1] * 2 * bound - bound),
        high=float(high[-1] * 2 * bound - bound),
        alpha=alpha,
        bound=bound,
    )


def first_crossing(diff: np.ndarray, alpha: float, bound: float) -> int | None:
    """The first row count at which the sequence excludes 0 (either side), or None."""
    clipped = np.clip(np.asarray(diff, dtype=np.float64), -bound, bound)
    if clipped.size == 0:
        return None
    low, high = confidence_sequence((clipped + bound) / (2 * bound), alpha)
    crossed = np.flatnonzero((low > 0.5) | (high < 0.5))
    return int(crossed[0]) + 1 if crossed.size else None


def log_loss_rows(y: np.ndarray, p: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Per-row log-loss of probabilities `p` for labels `y` (0/1), `p` clipped to
    [`eps`, 1 - `eps`]."""
    q = np.clip(np.asarray(p, dtype=np.float64), eps, 1 - eps)
    y = np.asarray(y, dtype=np.float64)
    return np.asarray(-(y * np.log(q) + (1 - y) * np.log1p(-q)))
