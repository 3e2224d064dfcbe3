"""A second drift statistic: the shift of the market's volatility level.

The per-feature PSI cannot see a volatility x2 day: one day's distribution of a volatility
feature is dominated by the minute-level volatility clustering, so two stable days' PSI already
varies widely and its calibrated tail sits 7-8x above its median (benchmarks/README.md). The
*level* of the volatility moves far less between stable days, so this statistic compares it
directly: for each symbol, the mean log absolute one-bar return (``log_return_1``: the level of
the day's volatility, each minute counted once) in the window minus the same over the same bars
of the day before (the reference's last day, `LEVEL_REFERENCE`), averaged over the symbols
(each symbol's volatility moves on its own, so averaging adds evidence). A volatility x2
shift adds ``log 2 = 0.69`` to it.

Its null distribution is calibrated exactly as the PSI's (`pipelines.reports.calibration`:
the same window positions over stable history, each against the reference days just before
it); the statistic is signed and its null roughly normal, so its tail is a normal fitted to
the samples, two-sided (a fall in volatility is a change too), and its threshold on the
absolute value is the 95th percentile of the fits over the same moving-block bootstrap, never
below the largest absolute sample. The decision's false-alarm rate is shared between all its
statistics (weighted Bonferroni): `SHARE` of it goes to this one, the rest is split equally
between the features' PSI, so the rate per decision stays ``MLOPS_DRIFT_FALSE_ALARM_RATE``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from pydantic import BaseModel
from scipy.stats import norm

STATISTIC = "volatility_level"
"""The statistic's name in calibrations, reports and decision records."""
SHARE = 0.5
"""Share of the decision's false-alarm rate given to this statistic (the rest: the PSIs)."""
LEVEL_REFERENCE = pd.Timedelta(days=1)
"""The window's level is compared with the level of this much of the reference just before
it: the market's day-level volatility persists (AR(1), 0.9 a day), so the latest day predicts
a window's level better than the average of the whole reference."""
PREFIX = "log_return_"


class StatisticCheck(BaseModel):
    """One drift statistic of a window against its calibrated threshold."""

    name: str
    feature: str
    """The feature it is computed from."""
    score: float
    """Signed: the window's volatility level minus the reference's (``inf``: no value)."""
    threshold: float
    """Calibrated threshold on the absolute score."""
    drifted: bool


def volatility_feature(features: Sequence[str]) -> str | None:
    """The one-bar return among `features` (``log_return_{k}`` of the shortest `k`; None:
    none)."""
    found = [f for f in features if f.startswith(PREFIX) and f[len(PREFIX) :].isdigit()]
    return min(found, key=lambda f: int(f[len(PREFIX) :])) if found else None


def _levels(values: np.ndarray, groups: np.ndarray) -> dict[object, float]:
    """Mean log absolute return per group (non-zero values; a group without any is left out)."""
    keep = np.isfinite(values) & (values != 0)
    logs, groups = np.log(np.abs(values[keep])), groups[keep]
    return {g: float(logs[groups == g].mean()) for g in np.unique(groups)}


def _shift(
    ref: np.ndarray, ref_groups: np.ndarray, cur: np.ndarray, cur_groups: np.ndarray
) -> float:
    before, now = _levels(ref, ref_groups), _levels(cur, cur_groups)
    shared = [g for g in now if g in before]
    if not shared:
        return float("inf")
    return float(np.mean([now[g] - before[g] for g in shared]))


def _groups(frame: pd.DataFrame, other: pd.DataFrame) -> np.ndarray:
    """Each row's symbol when both frames name them, else one group for all."""
    if "symbol" in frame.columns and "symbol" in other.columns:
        return frame["symbol"].astype(str).to_numpy()
    return np.zeros(len(frame), dtype=int)


def _day_before(ref_times: np.ndarray, cur_times: np.ndarray) -> np.ndarray:
    """Which reference rows are a window row's time less `LEVEL_REFERENCE` (the same bars of
    the day before: a window missing hours is compared with the same hours, so the intraday
    seasonality cancels); all rows of the day before the window's first when none is."""
    step = np.int64(LEVEL_REFERENCE.value)
    same = np.isin(ref_times, cur_times - step)
    return same if same.any() else ref_times >= cur_times.min() - step


def _nanoseconds(times: pd.Series) -> np.ndarray:
    return np.asarray(pd.to_datetime(times, utc=True).dt.as_unit("ns").astype("int64"))


def volatility_shift(reference: pd.DataFrame, current: pd.DataFrame, feature: str) -> float:
    """The statistic: per symbol, the mean log absolute `feature` (a one-bar return) in
    `current` minus the same over the reference's rows one `LEVEL_REFERENCE` before
    `current`'s (`_day_before`; all of `reference` when either frame has no ``open_time``),
    averaged over the symbols; ``inf`` when `current` has no value for any symbol of the
    reference (it broke)."""
    if "open_time" in reference.columns and "open_time" in current.columns and len(current):
        reference = reference[
            _day_before(_nanoseconds(reference["open_time"]), _nanoseconds(current["open_time"]))
        ]
    return _shift(
        reference[feature].to_numpy(dtype=float),
        _groups(reference, current),
        current[feature].to_numpy(dtype=float),
        _groups(current, reference),
    )


def null_shifts(
    rows: pd.DataFrame, feature: str, bounds: Sequence[tuple[int, int, int]]
) -> list[float]:
    """The statistic at each window position (``first, lo, hi``: the reference is
    ``rows[first:lo]``, the window ``rows[lo:hi]``) of `rows` in time order, as
    `volatility_shift` computes it."""
    values = rows[feature].to_numpy(dtype=float)
    groups = _groups(rows, rows)
    times = _nanoseconds(rows["open_time"])
    found = []
    for first, lo, hi in bounds:
        since = max(first, int(np.searchsorted(times, times[lo] - LEVEL_REFERENCE.value)))
        keep = since + np.flatnonzero(_day_before(times[since:lo], times[lo:hi]))
        found.append(_shift(values[keep], groups[keep], values[lo:hi], groups[lo:hi]))
    return found


def shift_threshold(
    samples: np.ndarray, rate: float, block: int, resamples: int, quantile: float
) -> float:
    """Threshold on the absolute statistic at two-sided `rate`: the `quantile` of
    ``|mean| + z(1 - rate/2) * sd`` of normals fitted to `resamples` moving-block bootstrap
    resamples of the signed `samples` (in time order, blocks of `block`, wrapped around), never
    below the largest absolute sample. Deterministic (a fixed generator seed)."""
    samples = samples[np.isfinite(samples)]
    n = len(samples)
    if n < 2:
        return float("inf")
    block = max(1, min(block, n))
    rng = np.random.default_rng(0)
    starts = rng.integers(0, n, size=(resamples, -(-n // block)))
    index = ((starts[:, :, None] + np.arange(block)) % n).reshape(resamples, -1)[:, :n]
    drawn = samples[index]
    fitted = np.abs(drawn.mean(axis=1)) + norm.ppf(1 - rate / 2) * drawn.std(axis=1, ddof=1)
    return max(float(np.quantile(fitted, quantile)), float(np.max(np.abs(samples))))


def check(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    thresholds: dict[str, float],
    feature: str | None,
) -> list[StatisticCheck]:
    """The window's drift statistics against their calibrated `thresholds` (empty when none
    was calibrated or the volatility feature is missing from a frame)."""
    if STATISTIC not in thresholds or feature is None:
        return []
    if feature not in reference.columns or feature not in current.columns:
        return []
    score = volatility_shift(reference, current, feature)
    limit = thresholds[STATISTIC]
    return [
        StatisticCheck(
            name=STATISTIC,
            feature=feature,
            score=score,
            threshold=limit,
            drifted=bool(abs(score) >= limit),
        )
    ]


def describe(found: StatisticCheck) -> str:
    """One line for a decision record."""
    return (
        f"{found.name}: mean log |{found.feature}| {found.score:+.3f} against the reference's "
        "last day"
        f" (calibrated line ±{found.threshold:.3f})"
        + (" — drifted" if found.drifted else " — within")
    )
