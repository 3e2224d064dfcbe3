"""Drift thresholds calibrated on the platform's own stable history, for a stated false-alarm
rate per decision.

A decision's drift test compares its window with the ``MLOPS_DRIFT_REFERENCE_DAYS`` whole days
just before it (a *trailing* reference: "has the market changed recently?"). Against the pooled
training rows a stable day is routinely 1.8x more or less volatile than the long-run level
(the market's volatility regimes persist ~10 days), so even a perfect test could not tell a
volatility x2 shift from an ordinary regime there (benchmarks/README.md, power rows).

A fixed PSI line (0.2) is both too loose and too tight: the market's own day-to-day volatility
clustering moves the volatility features' PSI far more than the others on stable days. So for
each feature and each window length a decision uses (the gate's evaluation window, the
monitor's window), the statistic's *null* distribution is estimated from stable history: the
window is slid over the latest `MAX_HISTORY_DAYS` of the training rows (at most
`MAX_HISTORY_ROWS`: the cost is bounded whatever the dataset's size) and each position is
compared with the reference days just before it — the statistic the decision computes.

A decision drifts when ANY feature exceeds its threshold, or the volatility level
(`pipelines.reports.volatility`, calibrated on the same windows) exceeds its own, so the
thresholds share the target false-alarm rate ``alpha`` (weighted Bonferroni: ``SHARE`` of it to
the volatility level, the rest split equally between the ``m`` features, which bounds the
decision's rate by ``alpha`` whatever the statistics' correlation). With tens of
windows an empirical ``1 - alpha/m`` quantile does not exist, so each feature's tail is a
log-normal fitted to its null samples. The samples of a market whose volatility regimes persist
~10 days are far from independent, so one fit understates how high a new day goes: the
threshold is the 95th percentile of the fits over block-bootstrap resamples (blocks of
`BLOCK`), never below the largest sample seen.

"Stable history" is defined in docs/decisions.md: the training rows, in windows whose days are
complete (a day with fewer than `COMPLETE_DAY_SHARE` of the busiest day's rows — late, missing
or quarantined bars — is excluded).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

import numpy as np
import pandas as pd
from pydantic import BaseModel
from scipy.stats import norm

from pipelines import layout
from pipelines.errors import PipelineError
from pipelines.reports.volatility import (
    SHARE,
    STATISTIC,
    StatisticCheck,
    check,
    null_shifts,
    shift_threshold,
    volatility_feature,
)
from pipelines.settings import Settings
from pipelines.storage import Storage

METHOD = (
    "psi+volatility-level-trailing-days/60d-capped-by-bar-time/"
    "lognormal-or-normal-tail-block-bootstrap-q95/weighted-bonferroni/v5"
)
"""Names the calibration procedure; part of every calibration and of the settings digest."""
MIN_WINDOWS = 8
"""Fewer null windows than this and a window length keeps the fixed threshold."""
MAX_HISTORY_DAYS = 60
"""Calibration reads at most the latest this many days of stable history (the envs' lookback)."""
MAX_HISTORY = pd.Timedelta(days=MAX_HISTORY_DAYS)
MAX_HISTORY_ROWS = 600_000
"""...and at most this many rows of it (thinned by bar time beyond, `capped`): the default
universe's 60 days (6 symbols x 1,440 minutes x 60 = 518,400 rows) fit whole, so its null
windows hold as many rows as the live windows they judge."""
BLOCK = pd.Timedelta(days=10)
"""Block length of the bootstrap: the market's volatility regimes persist ~10 days."""
BOOTSTRAP_RESAMPLES = 200
BOOTSTRAP_QUANTILE = 0.95
"""A threshold is this upper quantile of the resampled fits (the fit's own uncertainty)."""
MAX_WINDOWS = 240
"""At most this many null windows per window length."""
COMPLETE_DAY_SHARE = 0.95
"""A day with fewer rows than this share of the busiest day is not stable history."""


def psi(reference: np.ndarray, current: np.ndarray) -> float:
    """The PSI Evidently's ``psi`` stattest computes for a numeric column with more than 20
    distinct values (Sturges bins over both samples together, empty bins floored), in numpy, so
    a calibrated threshold means the same number as in its reports (tested against it)."""
    edges = np.histogram_bin_edges(np.concatenate([reference, current]), bins="sturges")
    return _psi_counts(_counts(reference, edges), _counts(current, edges))


def _counts(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """`np.histogram` counts over Sturges' (equal-width) `edges`, by numpy's equal-width path
    (the same counts without sorting the values: calibration bins hundreds of windows)."""
    return np.histogram(values, bins=len(edges) - 1, range=(edges[0], edges[-1]))[0]


def feature_psi(
    reference: pd.DataFrame, current: pd.DataFrame, features: Sequence[str]
) -> dict[str, float]:
    """PSI of each feature; a feature with no value in `current` scores ``inf`` (it broke)."""
    scores = {}
    for name in features:
        ref = reference[name].dropna().to_numpy(dtype=float)
        cur = current[name].dropna().to_numpy(dtype=float)
        scores[name] = psi(ref, cur) if len(ref) and len(cur) else float("inf")
    return scores


class WindowCalibration(BaseModel):
    """Thresholds of one window length."""

    window_hours: float
    windows: int
    """Null windows the thresholds were estimated from (0: too few; the fixed threshold)."""
    thresholds: dict[str, float]
    null_median: dict[str, float]
    statistics: dict[str, float] = {}
    """Thresholds of the other drift statistics (`pipelines.reports.volatility`), by name."""
    statistics_null_median: dict[str, float] = {}


class Calibration(BaseModel):
    """Calibrated drift thresholds of one model version, by decision."""

    method: str
    reference_days: int = 0
    """Whole days before a window that are its drift reference (0: a calibration of the pooled
    training rows, from before the trailing reference; its thresholds are not used)."""
    false_alarm_rate: float
    per_feature_rate: float
    statistic_rate: float = 0.0
    """Two-sided rate of the volatility-level statistic (0: calibrated without it)."""
    volatility_feature: str | None = None
    fixed_threshold: float | None
    history: list[str]
    """First and last time of the stable history."""
    excluded_days: list[str]
    decisions: dict[str, WindowCalibration]
    """``gate`` (the evaluation window) and ``monitor`` (the monitor's window)."""

    def thresholds(self, decision: str) -> dict[str, float] | None:
        """The per-feature thresholds of `decision`, or None when it was not calibrated."""
        found = self.decisions.get(decision)
        return found.thresholds if found and found.windows and self.reference_days else None

    def statistic_thresholds(self, decision: str) -> dict[str, float]:
        """The thresholds of `decision`'s other drift statistics (empty: none calibrated)."""
        found = self.decisions.get(decision)
        return dict(found.statistics) if found and found.windows and self.reference_days else {}

    @property
    def digest(self) -> str:
        """Content digest (names the stored calibration)."""
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def stable_days(rows: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """`rows` without the days that are not stable history, and those days."""
    days = rows["open_time"].dt.floor("D")
    counts = days.value_counts()
    short = counts[counts < COMPLETE_DAY_SHARE * counts.max()].index
    # The first and last day are partial by construction (warm-up, label horizon): keep them.
    short = [d for d in short if d not in (days.min(), days.max())]
    keep = ~days.isin(short)
    return rows[keep], sorted(str(d.date()) for d in short)


def capped(rows: pd.DataFrame) -> pd.DataFrame:
    """The latest `MAX_HISTORY_DAYS` of `rows`, thinned to at most about `MAX_HISTORY_ROWS` by
    keeping every n-th bar time with all its rows: calibration's cost is bounded whatever the
    dataset's size, and every symbol stays in it (a stride over rows sorted by time would keep
    only every other symbol of an even number)."""
    rows = rows.sort_values("open_time", kind="stable")
    if rows.empty:
        return rows
    recent: pd.DataFrame = rows[rows["open_time"] >= rows["open_time"].iloc[-1] - MAX_HISTORY]
    stride = -(-len(recent) // MAX_HISTORY_ROWS)
    if stride <= 1:
        return recent
    times = pd.to_datetime(recent["open_time"], utc=True).dt.as_unit("ns").astype("int64")
    kept = np.unique(times.to_numpy())[::stride]
    thinned: pd.DataFrame = recent[np.isin(times.to_numpy(), kept)]
    return thinned


def _psi_counts(ref: np.ndarray, cur: np.ndarray) -> float:
    """`psi` from bin counts over shared edges (the same flooring as Evidently)."""
    fractions = []
    for counts in (ref, cur):
        part = counts / counts.sum()
        smallest = part[part > 0].min()
        part[part == 0] = smallest / 10**6 if smallest <= 0.0001 else 0.0001
        fractions.append(part)
    return float(np.sum((fractions[0] - fractions[1]) * np.log(fractions[0] / fractions[1])))


def trailing(rows: pd.DataFrame, start: pd.Timestamp, days: int) -> pd.DataFrame:
    """The rows of the `days` days just before `start` (``start - days <= open_time < start``):
    a window's drift reference."""
    times = rows["open_time"]
    return rows[(times >= start - pd.Timedelta(days=days)) & (times < start)]


def positions(
    rows: pd.DataFrame, window: pd.Timedelta, step: pd.Timedelta, reference_days: int
) -> list[tuple[int, int, int]]:
    """Window positions over `rows` (in time order): every `step` from the first one that has
    `reference_days` of history before it, at most `MAX_WINDOWS`, as row indices ``(first, lo,
    hi)``: the reference is ``rows[first:lo]``, the window ``rows[lo:hi]``."""
    times = rows["open_time"]
    reference = pd.Timedelta(days=reference_days)
    last = times.iloc[-1]
    bounds: list[tuple[int, int, int]] = []
    start = times.iloc[0] + reference
    while start + window <= last + pd.Timedelta(minutes=1) and len(bounds) < MAX_WINDOWS:
        lo, hi = int(times.searchsorted(start)), int(times.searchsorted(start + window))
        first = int(times.searchsorted(start - reference))
        if hi > lo > first:
            bounds.append((first, lo, hi))
        start += step
    return bounds


def null_samples(
    rows: pd.DataFrame,
    features: Sequence[str],
    window: pd.Timedelta,
    step: pd.Timedelta,
    reference_days: int,
    volatility: str | None = None,
) -> pd.DataFrame:
    """One row per window position (`positions`): each feature's PSI between the window and the
    `reference_days` days just before it (`trailing`), as a decision computes it; with a
    `volatility` feature, the volatility-level statistic too (column `STATISTIC`)."""
    rows = rows.sort_values("open_time", kind="stable")
    columns = list(features) + ([STATISTIC] if volatility else [])
    if rows.empty:
        return pd.DataFrame(columns=columns)
    bounds = positions(rows, window, step, reference_days)
    samples: dict[str, list[float]] = {name: [] for name in features}
    for name in features:
        values = rows[name].to_numpy(dtype=float)
        for first, lo, hi in bounds:
            ref, cur = values[first:lo], values[lo:hi]
            ref, cur = ref[~np.isnan(ref)], cur[~np.isnan(cur)]
            samples[name].append(psi(ref, cur) if len(ref) and len(cur) else float("inf"))
    if volatility:
        samples[STATISTIC] = null_shifts(rows, volatility, bounds)
    return pd.DataFrame(samples, columns=columns)


def tail_threshold(samples: np.ndarray, rate: float) -> float:
    """The ``1 - rate`` quantile of a log-normal fitted to `samples`, never below their max."""
    logs = np.log(np.maximum(samples, 1e-12))
    sigma = float(np.std(logs, ddof=1)) if len(logs) > 1 else 0.0
    fitted = float(np.exp(np.mean(logs) + norm.ppf(1 - rate) * sigma))
    return max(fitted, float(np.max(samples)))


def bootstrap_threshold(samples: np.ndarray, rate: float, block: int) -> float:
    """The `BOOTSTRAP_QUANTILE` quantile of `tail_threshold` over `BOOTSTRAP_RESAMPLES` moving
    block-bootstrap resamples of `samples` (in time order; blocks of `block` consecutive
    windows, wrapped around), never below their max: the null windows of a persistent market
    are far from independent, so a fit to one history's windows understates how high a new
    day's statistic goes. Deterministic (a fixed generator seed)."""
    n = len(samples)
    block = max(1, min(block, n))
    rng = np.random.default_rng(0)
    starts = rng.integers(0, n, size=(BOOTSTRAP_RESAMPLES, -(-n // block)))
    index = ((starts[:, :, None] + np.arange(block)) % n).reshape(BOOTSTRAP_RESAMPLES, -1)[:, :n]
    logs = np.log(np.maximum(samples, 1e-12))[index]
    fitted = np.exp(logs.mean(axis=1) + norm.ppf(1 - rate) * logs.std(axis=1, ddof=1))
    return max(float(np.quantile(fitted, BOOTSTRAP_QUANTILE)), float(np.max(samples)))


def calibrate(
    rows: pd.DataFrame,
    features: Sequence[str],
    windows: dict[str, float],
    false_alarm_rate: float,
    fixed_threshold: float | None,
    reference_days: int,
) -> Calibration:
    """Thresholds per feature for each decision's window length (in hours) from `rows`, the
    stable history (a model's training rows), for windows tested against the
    `reference_days` days just before them."""
    used = capped(rows)
    stable, excluded = stable_days(used)
    volatility = volatility_feature(features)
    shared = SHARE if volatility else 0.0
    rate = false_alarm_rate * (1 - shared) / max(1, len(features))
    decisions = {}
    for decision, hours in windows.items():
        window = pd.Timedelta(hours=hours)
        step = max(pd.Timedelta(hours=12), window / 2)
        null = null_samples(stable, features, window, step, reference_days, volatility)
        enough = len(null) >= MIN_WINDOWS
        block = max(1, int(BLOCK / step))
        statistics = (
            {
                STATISTIC: shift_threshold(
                    null[STATISTIC].to_numpy(dtype=float),
                    false_alarm_rate * shared,
                    block,
                    BOOTSTRAP_RESAMPLES,
                    BOOTSTRAP_QUANTILE,
                )
            }
            if enough and volatility
            else {}
        )
        decisions[decision] = WindowCalibration(
            window_hours=hours,
            windows=len(null) if enough else 0,
            thresholds={
                f: bootstrap_threshold(null[f].to_numpy(), rate, block)
                if enough
                else (fixed_threshold or 0.2)
                for f in features
            },
            null_median={f: float(null[f].median()) if enough else 0.0 for f in features},
            statistics=statistics,
            statistics_null_median={s: float(null[s].median()) for s in statistics},
        )
    times = used["open_time"]
    return Calibration(
        method=METHOD,
        reference_days=reference_days,
        false_alarm_rate=false_alarm_rate,
        per_feature_rate=rate,
        statistic_rate=false_alarm_rate * shared,
        volatility_feature=volatility,
        fixed_threshold=fixed_threshold,
        history=[str(times.min()), str(times.max())],
        excluded_days=excluded,
        decisions=decisions,
    )


def decision_windows(settings: Settings) -> dict[str, float]:
    """The window length, in hours, of each decision that tests drift."""
    return {"gate": settings.eval_days * 24, "monitor": settings.monitor_window_hours}


def drifted(scores: dict[str, float], thresholds: dict[str, float]) -> list[str]:
    """The features at or above their threshold (the decision drifted when any is)."""
    return [f for f, score in scores.items() if score >= thresholds[f]]


def statistic_checks(
    calibration: Calibration | None,
    decision: str,
    reference: pd.DataFrame,
    current: pd.DataFrame,
    features: Sequence[str],
) -> list[StatisticCheck]:
    """`decision`'s other drift statistics (the volatility level) of `current` against
    `reference`, each against its threshold in `calibration` (empty: none calibrated)."""
    if calibration is None:
        return []
    found = calibration.statistic_thresholds(decision)
    return check(reference, current, found, volatility_feature(features)) if found else []


def store(storage: Storage, dataset_prefix: str, calibration: Calibration) -> str:
    """Write `calibration` beside its dataset (whole, at once); returns its key."""
    key = layout.drift_calibration(dataset_prefix, calibration.digest)
    if not storage.exists(key):
        storage.write_bytes(key, calibration.model_dump_json(indent=2).encode())
    return key


def load(storage: Storage, key: str) -> Calibration:
    """The calibration stored at `key`.

    Raises:
        PipelineError: if it is missing or unreadable.
    """
    try:
        return Calibration.model_validate_json(storage.read_bytes(key))
    except FileNotFoundError:
        raise PipelineError(
            f"drift calibration {key} is missing", "re-run the gate for that model version"
        ) from None
    except ValueError as error:
        raise PipelineError(f"drift calibration {key} is unreadable ({error})") from None
