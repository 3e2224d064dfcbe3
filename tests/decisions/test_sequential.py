"""The confidence sequence the shadow decision stops on: its error rate holds at any stopping
time (simulated), it decides a real difference, and it refuses bad input."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.decisions.sequential import (
    confidence_sequence,
    difference_interval,
    first_crossing,
    log_loss_rows,
)

ALPHA = 0.05
SEQUENCES = 400
ROWS = 3_000


@pytest.mark.parametrize(
    "draw",
    [
        lambda rng, n: rng.normal(0.0, 0.3, n),  # symmetric
        lambda rng, n: rng.exponential(0.2, n) - 0.2,  # skewed, mean 0
        lambda rng, n: rng.choice([-1.0, 1.0], n),  # at the bound, largest variance
    ],
    ids=["normal", "skewed", "two-point"],
)
def test_under_the_null_the_sequence_ever_excludes_0_at_most_alpha_of_the_time(draw) -> None:
    """Checking after every row (the most looks any schedule can make) and stopping at the first
    crossing: the share of null sequences that ever cross stays within alpha. A fixed-n interval
    checked this way crosses far more often (shown below), so this test fails for an interval
    that is not anytime-valid."""
    rng = np.random.default_rng(7)
    crossed = sum(first_crossing(draw(rng, ROWS), ALPHA, 1.0) is not None for _ in range(SEQUENCES))
    assert crossed / SEQUENCES <= ALPHA


def test_a_fixed_sample_interval_peeked_at_every_row_would_fail_the_same_check() -> None:
    """The check above has power: a 95% normal interval looked at after every row crosses 0
    under the null in far more than 5% of the sequences."""
    rng = np.random.default_rng(7)
    crossed = 0
    for _ in range(200):
        x = rng.normal(0.0, 0.3, ROWS)
        n = np.arange(1, ROWS + 1)
        mean = np.cumsum(x) / n
        half = 1.96 * 0.3 / np.sqrt(n)
        crossed += bool(((mean - half > 0) | (mean + half < 0))[10:].any())
    assert crossed / 200 > 3 * ALPHA


def test_the_sequence_covers_the_true_mean_at_every_time_in_almost_every_run() -> None:
    rng = np.random.default_rng(3)
    misses = 0
    for _ in range(200):
        x = rng.beta(2, 5, 2_000)  # mean 2/7
        low, high = confidence_sequence(x, ALPHA)
        misses += bool(((low > 2 / 7) | (high < 2 / 7)).any())
        assert (np.diff(low) >= 0).all() and (np.diff(high) <= 0).all()  # never widens
    assert misses / 200 <= ALPHA


def test_a_better_challenger_is_promoted_and_a_worse_one_rejected() -> None:
    rng = np.random.default_rng(1)
    better = difference_interval(rng.normal(-0.05, 0.3, 2_000), ALPHA, 1.0)
    worse = difference_interval(rng.normal(0.05, 0.3, 2_000), ALPHA, 1.0)
    same = difference_interval(rng.normal(0.0, 0.3, 2_000), ALPHA, 1.0)
    assert better.high < 0 and better.verdict() == "promote"
    assert worse.low > 0 and worse.verdict() == "reject"
    assert same.low < 0 < same.high and same.verdict() == "continue"
    assert -0.08 < better.mean < -0.02


def test_differences_are_clipped_to_the_bound() -> None:
    interval = difference_interval(np.array([5.0, 5.0, -5.0]), ALPHA, 1.0)
    assert interval.mean == pytest.approx(1 / 3)
    assert -1.0 <= interval.low <= interval.high <= 1.0


def test_no_rows_leaves_the_whole_range() -> None:
    interval = difference_interval(np.array([]), ALPHA, 2.0)
    assert (interval.low, interval.high, interval.verdict()) == (-2.0, 2.0, "continue")


@pytest.mark.parametrize(
    ("x", "alpha", "message"),
    [
        (np.array([0.5, 1.5]), ALPHA, "in \\[0, 1\\]"),
        (np.array([0.5, np.nan]), ALPHA, "finite"),
        (np.array([0.5]), 1.0, "alpha must be in"),
    ],
)
def test_bad_input_is_one_clear_error(x: np.ndarray, alpha: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        confidence_sequence(x, alpha)


def test_log_loss_rows_matches_sklearn() -> None:
    from sklearn.metrics import log_loss

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 500)
    p = rng.uniform(0.05, 0.95, 500)
    assert log_loss_rows(y, p).mean() == pytest.approx(log_loss(y, p))
