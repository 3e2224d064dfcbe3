"""Drift thresholds calibrated on the platform's own stable history, for a stated false-alarm
rate per decision.

A fixed PSI line (0.2) is both too loose and too tight: the market's own day-to-day volatility
clustering moves the volatility features' PSI far more than the others on stable days. So for
each feature and each window length a decision uses (the gate's evaluation window, the
monitor's window), the statistic's *null* distribution is estimated from stable history: the
window is slid over the training rows, each position compared with everything before it (the
same comparison the decision makes: "this window against the rows the model learned from").

A decision drifts when ANY feature exceeds its threshold, so the thresholds share the target
false-alarm rate ``alpha`` between the ``m`` features (Bonferroni: each at ``alpha / m``, which
bounds the decision's rate by ``alpha`` whatever the features' correlation). With tens of
windows an empirical ``1 - alpha/m`` quantile does not exist, so each feature's tail is a
log-normal fitted to its null samples, never below the largest sample seen.

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
from pipelines.settings import Settings
from pipelines.storage import Storage

METHOD = "psi-expanding-null/lognormal-tail/bonferroni/v1"
"""Names the calibration procedure; part of every calibration and of the settings digest."""
MIN_WINDOWS = 8
"""Fewer null windows than this and a window length keeps the fixed threshold."""
MIN_REFERENCE_DAYS = 2.0
"""A window is compared only with at least this much history before it."""
COMPLETE_DAY_SHARE = 0.95
"""A day with fewer rows than this share of the busiest day is not stable history."""


def psi(reference: np.ndarray, current: np.ndarray) -> float:
    """The PSI Evidently's ``psi`` stattest computes for a numeric column with more than 20
    distinct values (Sturges bins over both samples together, empty bins floored), in numpy, so
    a calibrated threshold means the same number as in its reports (tested against it)."""
    bins = np.histogram_bin_edges(np.concatenate([reference, current]), bins="sturges")
    ref = np.histogram(reference, bins)[0] / len(reference)
    cur = np.histogram(current, bins)[0] / len(current)
    for part in (ref, cur):
        smallest = part[part > 0].min()
        part[part == 0] = smallest / 10**6 if smallest <= 0.0001 else 0.0001
    return float(np.sum((ref - cur) * np.log(ref / cur)))


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


class Calibration(BaseModel):
    """Calibrated drift thresholds of one model version, by decision."""

    method: str
    false_alarm_rate: float
    per_feature_rate: float
    fixed_threshold: float | None
    history: list[str]
    """First and last time of the stable history."""
    excluded_days: list[str]
    decisions: dict[str, WindowCalibration]
    """``gate`` (the evaluation window) and ``monitor`` (the monitor's window)."""

    def thresholds(self, decision: str) -> dict[str, float] | None:
        """The per-feature thresholds of `decision`, or None when it was not calibrated."""
        found = self.decisions.get(decision)
        return found.thresholds if found and found.windows else None

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


def null_samples(
    rows: pd.DataFrame, features: Sequence[str], window: pd.Timedelta, step: pd.Timedelta
) -> pd.DataFrame:
    """One row per window position: each feature's PSI between the window and all rows before
    it (positions start `MIN_REFERENCE_DAYS` in and step by `step`)."""
    rows = rows.sort_values("open_time", kind="stable")
    times = rows["open_time"]
    start = times.iloc[0] + pd.Timedelta(days=MIN_REFERENCE_DAYS)
    last = times.iloc[-1]
    samples = []
    while start + window <= last + pd.Timedelta(minutes=1):
        first, stop = times.searchsorted(start), times.searchsorted(start + window)
        if stop > first and first > 0:
            samples.append(feature_psi(rows.iloc[:first], rows.iloc[first:stop], features))
        start += step
    return pd.DataFrame(samples, columns=list(features))


def tail_threshold(samples: np.ndarray, rate: float) -> float:
    """The ``1 - rate`` quantile of a log-normal fitted to `samples`, never below their max."""
    logs = np.log(np.maximum(samples, 1e-12))
    sigma = float(np.std(logs, ddof=1)) if len(logs) > 1 else 0.0
    fitted = float(np.exp(np.mean(logs) + norm.ppf(1 - rate) * sigma))
    return max(fitted, float(np.max(samples)))


def calibrate(
    rows: pd.DataFrame,
    features: Sequence[str],
    windows: dict[str, float],
    false_alarm_rate: float,
    fixed_threshold: float | None = None,
) -> Calibration:
    """Thresholds per feature for each decision's window length (in hours) from `rows`, the
    stable history (a model's training rows)."""
    stable, excluded = stable_days(rows)
    rate = false_alarm_rate / max(1, len(features))
    decisions = {}
    for decision, hours in windows.items():
        window = pd.Timedelta(hours=hours)
        step = max(pd.Timedelta(hours=12), window / 2)
        null = null_samples(stable, features, window, step)
        enough = len(null) >= MIN_WINDOWS
        decisions[decision] = WindowCalibration(
            window_hours=hours,
            windows=len(null) if enough else 0,
            thresholds={
                f: tail_threshold(null[f].to_numpy(), rate) if enough else (fixed_threshold or 0.2)
                for f in features
            },
            null_median={f: float(null[f].median()) if enough else 0.0 for f in features},
        )
    times = rows["open_time"]
    return Calibration(
        method=METHOD,
        false_alarm_rate=false_alarm_rate,
        per_feature_rate=rate,
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
