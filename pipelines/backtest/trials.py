"""One trial of the backtest: a scenario on one seed of the synthetic market, judged by the
decisions' own rules (`pipelines.decisions.gate.judge`, `compare_predictions`,
`pipelines.decisions.monitor.judge_windows`, `pipelines.decisions.degradation.judge`) and the
calibrated drift test
(`pipelines.reports.calibration`), without MLflow, storage or a server: the rules are pure
functions of the evidence, so replaying them is cheap.

Three kinds: ``drift`` trials calibrate on a stable history and test the monitor's windows after
it, each against the ``MLOPS_DRIFT_REFERENCE_DAYS`` days just before it (no model); ``gate``
trials train a small champion and challenger and let the gate decide, the ground truth being
their ROC-AUC on fresh generator days; ``monitor`` trials train a small champion and replay the
monitor over live windows, in which the market may change (a concept change) or an input
break.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import numpy as np
import pandas as pd

from pipelines.decisions import degradation
from pipelines.decisions.bootstrap import bootstrap_block
from pipelines.decisions.degradation import WITHIN
from pipelines.decisions.gate import compare_predictions, judge
from pipelines.decisions.monitor import judge_windows
from pipelines.errors import PipelineError
from pipelines.ml.evaluation import roc_auc_within, symbol_windows
from pipelines.ml.features import FeatureConfig, feature_names, symbol_rows
from pipelines.ml.modeling import make_model
from pipelines.reports.calibration import (
    MIN_WINDOWS,
    calibrate,
    drifted,
    feature_psi,
    statistic_checks,
    trailing,
)
from pipelines.reports.drift import drift_features
from pipelines.settings import Settings
from pipelines.synthetic.market import Regime, minute_bars

START = date(2024, 1, 1)
INTERVAL = "1m"
"""The trials' bars: the generator's minutes."""
DRIFT_HISTORY_DAYS = 60
"""Stable history a drift trial calibrates on (the envs' `MLOPS_LOOKBACK_DAYS`)."""
LIVE_WINDOWS = 4
"""Windows replayed after the history (the shift or the degradation starts with the first)."""
MODEL_HISTORY_DAYS = 8
"""Days a shadow trial's models see (`pipelines.backtest.shadow`)."""
TRAIN_DAYS = 7
"""Days a gate or monitor trial's models train on, just before their evaluation window."""
FRESH_DAYS = 14
"""Generator days after the gate's window whose ROC-AUC decides which model is truly better
(the ground truth: twice the evaluation window, so the truth is less noisy than the gate's
evidence)."""
FAST_MODEL = {"max_iter": 40}
NO_SHIFT = Regime(vol=1.0, volume=1.0, daily_drift=0.0, taker_bias=0.0)


@dataclass(frozen=True)
class Scenario:
    """One row of the matrix."""

    name: str
    kind: str
    """``drift``, ``gate`` or ``monitor``."""
    description: str
    regime: Regime | None = None
    """Market shift from the first live window on."""
    broken: tuple[str, str] | None = None
    """(feature, how): ``constant``, ``nan`` or ``unit`` from the first live window on."""
    missing_hours: float = 0.0
    """Hours missing at the end of each live window (late or missing bars)."""
    champion_noise: float = 0.0
    challenger_noise: float = 0.0
    """Share of training labels flipped (gate trials)."""
    expects_drift: bool = False
    degrades: bool = False


@dataclass
class Outcome:
    """What one trial observed."""

    scenario: str
    seed: int
    windows: int = 0
    alarms: int = 0
    first_alarm: int | None = None
    promoted: bool | None = None
    truly_worse: bool | None = None
    rolled_back_at: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def market_rows(
    symbols: Sequence[str], seed: int, days: int, shift_at: date | None, regime: Regime | None
) -> pd.DataFrame:
    """Labelled model rows (default features) of `symbols` over `days` from `START`."""
    config = FeatureConfig()
    parts = []
    for symbol in symbols:
        bars = pd.concat(
            [
                minute_bars(symbol, START + timedelta(days=d), seed, shift_at, regime or NO_SHIFT)
                for d in range(days)
            ],
            ignore_index=True,
        )
        bars["open_time"] = pd.to_datetime(bars["open_time"], unit="ms", utc=True)
        parts.append(symbol_rows(bars, symbol, config))
    rows = pd.concat(parts).sort_values(["open_time", "symbol"], ignore_index=True)
    return rows[rows["label"].notna()].astype({"label": "int64"})


@dataclass(frozen=True)
class Market:
    """Where a trial's rows come from: the synthetic market of `symbols` (``archive`` None) or
    the labelled model rows of a real archive (`pipelines.backtest.archive`), in which a
    trial's seed is its first day (seed 0: the archive's first whole day)."""

    symbols: tuple[str, ...]
    archive: str | None = None
    """Parquet file of the archive's labelled model rows."""

    def rows(
        self, seed: int, days: int, shift_at: date | None = None, regime: Regime | None = None
    ) -> pd.DataFrame:
        """`days` days of labelled rows for `seed`, shifted by `regime` from `shift_at` (the
        synthetic market only: a real archive is what it is)."""
        if self.archive is None:
            return market_rows(self.symbols, seed, days, shift_at, regime)
        from pipelines.backtest.archive import archive_rows

        if regime is not None:
            raise PipelineError(
                "a market shift cannot be replayed on a real archive",
                "run the shift scenarios without --source",
            )
        return archive_rows(self.archive, seed, days)


def break_feature(rows: pd.DataFrame, broken: tuple[str, str] | None) -> pd.DataFrame:
    """`rows` with one feature broken as a faulty pipeline would break it."""
    if broken is None:
        return rows
    name, how = broken
    rows = rows.copy()
    columns = [
        c for c in rows.columns if c == name or (name.endswith("*") and c.startswith(name[:-1]))
    ]
    for column in columns:
        if how == "constant":
            rows[column] = float(rows[column].median())
        elif how == "nan":
            rows[column] = np.nan
        else:  # unit: a fraction served as a percentage
            rows[column] = rows[column] * 100
    return rows


def _window(rows: pd.DataFrame, start: pd.Timestamp, hours: float, missing: float) -> pd.DataFrame:
    end = start + pd.Timedelta(hours=hours - missing)
    return rows[(rows["open_time"] >= start) & (rows["open_time"] < end)]


def drift_trial(scenario: Scenario, seed: int, settings: Settings, market: Market) -> Outcome:
    """Calibrate on a stable history, then test each live window against the reference days
    just before it (the live windows before it included: a shift is "recent" only so long)."""
    hours = settings.monitor_window_hours
    shift = START + timedelta(days=DRIFT_HISTORY_DAYS)
    rows = market.rows(seed, trial_days(scenario, settings), shift, scenario.regime)
    boundary = _first_day(rows) + pd.Timedelta(days=DRIFT_HISTORY_DAYS)
    history = rows[rows["open_time"] < boundary]
    features = drift_features(feature_names(FeatureConfig()))
    thresholds = _thresholds(settings, history, features, {"monitor": hours})
    live = break_feature(rows[rows["open_time"] >= boundary], scenario.broken)
    served = pd.concat([history, live])
    outcome = Outcome(scenario.name, seed)
    for k in range(LIVE_WINDOWS):
        start = boundary + pd.Timedelta(hours=hours * k)
        current = _window(served, start, hours, scenario.missing_hours)
        reference = trailing(served, start, settings.drift_reference_days)
        flagged = drifted(feature_psi(reference, current, features), thresholds["monitor"])
        checks = statistic_checks(
            thresholds["calibration"], "monitor", reference, current, features
        )
        outcome.windows += 1
        if _is_drift(settings, flagged, len(features), thresholds["calibrated"]) or any(
            c.drifted for c in checks
        ):
            outcome.alarms += 1
            if outcome.first_alarm is None:
                outcome.first_alarm = k
    return outcome


def _thresholds(
    settings: Settings, history: pd.DataFrame, features: list[str], windows: dict[str, float]
) -> dict[str, Any]:
    """Per-decision thresholds: calibrated (``null``; ``calibration`` holds the other
    statistics' thresholds) or the fixed line for every feature."""
    if settings.drift_calibration == "null" and (settings.drift_method or "") == "psi":
        calibration = calibrate(
            history,
            features,
            windows,
            settings.drift_false_alarm_rate,
            settings.drift_threshold,
            settings.drift_reference_days,
        )
        found = {d: calibration.thresholds(d) for d in windows}
        if all(found.values()):
            return {**found, "calibrated": True, "calibration": calibration}
    fixed = settings.drift_threshold if settings.drift_threshold is not None else 0.1
    fixed_lines = {d: dict.fromkeys(features, fixed) for d in windows}
    return {**fixed_lines, "calibrated": False, "calibration": None}


def _is_drift(settings: Settings, flagged: list[str], features: int, calibrated: bool) -> bool:
    """The decision's drift verdict: any feature when calibrated, else the share limit."""
    limit = 1 / features if calibrated else settings.gate_max_drift_share
    return len(flagged) / features >= limit


def _fit(rows: pd.DataFrame, noise: float, seed: int) -> Any:
    features = feature_names(FeatureConfig())
    labels = rows["label"].to_numpy()
    if noise:
        flip = np.random.default_rng(seed).random(len(labels)) < noise
        labels = np.where(flip, 1 - labels, labels)
    model = make_model("hist_gradient_boosting", FAST_MODEL)
    model.fit(rows[features], labels)
    return model


def _auc(model: Any, rows: pd.DataFrame) -> float:
    from sklearn.metrics import roc_auc_score

    p = model.predict_proba(rows[feature_names(FeatureConfig())])[:, 1]
    return float(roc_auc_score(rows["label"], p))


def gate_history_days(settings: Settings) -> int:
    """Days of stable history before a gate trial's window: enough for its drift calibration
    to have `MIN_WINDOWS` null windows of the gate's length (``MLOPS_EVAL_DAYS``) each after its
    ``MLOPS_DRIFT_REFERENCE_DAYS`` (`pipelines.reports.calibration.calibrate`), and at least
    the models' training days."""
    window = settings.eval_days
    step = max(0.5, window / 2)
    needed = settings.drift_reference_days + window + (MIN_WINDOWS - 1) * step
    return max(TRAIN_DAYS + 1, int(np.ceil(needed)) + 1)


def gate_trial(scenario: Scenario, seed: int, settings: Settings, market: Market) -> Outcome:
    """The gate as the platform runs it: its evaluation window is the last ``MLOPS_EVAL_DAYS``
    days, the champion is yesterday's challenger (trained on the `TRAIN_DAYS` before the
    window less a day, embargoed), the challenger is trained on the `TRAIN_DAYS` just before
    the window (embargoed); the gate decides on the window (drift: against the reference days
    just before it, calibrated on the history before it for windows of its length); the
    `FRESH_DAYS` after the window are the truth."""
    history_days = gate_history_days(settings)
    window_days = pd.Timedelta(days=settings.eval_days)
    rows = market.rows(seed, trial_days(scenario, settings))
    first = _first_day(rows)
    window_start = first + pd.Timedelta(days=history_days)
    fresh_start = window_start + window_days
    embargo = pd.Timedelta(minutes=settings.effective_embargo)
    day = pd.Timedelta(days=1)
    history = rows[rows["open_time"] < window_start]
    challenger_rows = _between(rows, window_start - TRAIN_DAYS * day, window_start - embargo)
    champion_rows = _between(
        rows, window_start - (TRAIN_DAYS + 1) * day, window_start - day - embargo
    )
    window = _between(rows, window_start, fresh_start)
    fresh = _between(rows, fresh_start, fresh_start + FRESH_DAYS * day)
    champion = _fit(champion_rows, scenario.champion_noise, seed)
    challenger = _fit(challenger_rows, scenario.challenger_noise, seed + 1)
    features = feature_names(FeatureConfig())
    y = window["label"].to_numpy(dtype=int)
    evidence = compare_predictions(
        settings,
        y,
        challenger.predict_proba(window[features])[:, 1],
        champion.predict_proba(window[features])[:, 1],
        bootstrap_block(settings.horizon, INTERVAL, len(market.symbols)),
    )
    tested = drift_features(features)
    thresholds = _thresholds(settings, history, tested, {"gate": settings.eval_days * 24})
    reference = trailing(history, window_start, settings.drift_reference_days)
    flagged = drifted(feature_psi(reference, window, tested), thresholds["gate"])
    checks = statistic_checks(thresholds["calibration"], "gate", reference, window, tested)
    limit = 1 / len(tested) if thresholds["calibrated"] else settings.gate_max_drift_share
    _, promote = judge(settings, evidence, flagged, len(tested), limit, checks)
    truth = _auc(challenger, fresh) - _auc(champion, fresh)
    return Outcome(
        scenario.name,
        seed,
        windows=1,
        alarms=int(
            (bool(flagged) and len(flagged) / len(tested) >= limit)
            or any(c.drifted for c in checks)
        ),
        promoted=promote,
        truly_worse=truth < 0,
        extra={"fresh_auc_delta": truth, "window_auc_delta": evidence["roc_auc_delta"]},
    )


def _between(rows: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
    return rows[(rows["open_time"] >= start) & (rows["open_time"] < end)]


def monitor_trial(scenario: Scenario, seed: int, settings: Settings, market: Market) -> Outcome:
    """A champion trained on the `TRAIN_DAYS` before its evaluation window (the last
    ``MLOPS_EVAL_DAYS``: its recorded ROC-AUC and log-loss, as the platform records them),
    then the monitor's windows over the live days after it, in which the market changes
    (`regime`) or its serving features break (`broken`) when it degrades. ``extra`` keeps each
    judged window's ROC-AUC deficit (the CUSUM's input) and, when it degrades, how much the
    change itself lowered each window's ROC-AUC (the same champion on the same seed's unchanged
    market, served right), the size of the effect to detect."""
    from sklearn.metrics import log_loss

    hours = settings.monitor_window_hours
    eval_days = int(np.ceil(settings.eval_days))
    days = trial_days(scenario, settings)
    shift = START + timedelta(days=TRAIN_DAYS + eval_days) if scenario.regime else None
    unchanged = market.rows(seed, days)
    rows = market.rows(seed, days, shift, scenario.regime) if shift else unchanged
    first = _first_day(rows)
    live_start = first + pd.Timedelta(days=TRAIN_DAYS + eval_days)
    eval_start = live_start - pd.Timedelta(days=settings.eval_days)
    embargo = pd.Timedelta(minutes=settings.effective_embargo)
    champion = _fit(_between(rows, first, eval_start - embargo), 0.0, seed)
    evaluation = _between(rows, eval_start, live_start)
    names = feature_names(FeatureConfig())
    recorded_p = champion.predict_proba(evaluation[names])[:, 1]
    recorded = _auc(champion, evaluation)
    strata = symbol_windows(evaluation, hours)
    within = roc_auc_within(evaluation["label"].to_numpy(), recorded_p, strata)
    recorded_log_loss = float(log_loss(evaluation["label"], recorded_p, labels=[0, 1]))
    live = rows[rows["open_time"] >= live_start]
    served = break_feature(live, scenario.broken) if scenario.degrades else live
    joined = live.assign(probability_up=champion.predict_proba(served[names])[:, 1])
    windows = judge_windows(
        joined, hours, settings.monitor_min_rows, recorded, settings.monitor_max_auc_drop
    )[:LIVE_WINDOWS]
    verdict = degradation.judge(windows, {WITHIN: within, "log_loss": recorded_log_loss}, settings)
    judged = [w for w in windows if w["judged"]]
    extra: dict[str, Any] = {
        "recorded": within,
        "auc_deficit": [within - w[WITHIN] for w in judged],
        "excess_log_loss": [w["log_loss"] - recorded_log_loss for w in judged],
    }
    if scenario.degrades:
        before = unchanged[unchanged["open_time"] >= live_start]
        right = before.assign(probability_up=champion.predict_proba(before[names])[:, 1])
        healthy = judge_windows(
            right, hours, settings.monitor_min_rows, recorded, settings.monitor_max_auc_drop
        )[:LIVE_WINDOWS]
        extra["effect"] = [h[WITHIN] - w[WITHIN] for w, h in zip(windows, healthy, strict=True)]
    outcome = Outcome(scenario.name, seed, windows=len(windows), extra=extra)
    if verdict.first_crossing is not None:
        positions = [k for k, w in enumerate(windows) if w["judged"]]
        outcome.rolled_back_at = positions[verdict.first_crossing]
    return outcome


def trial_days(scenario: Scenario, settings: Settings) -> int:
    """Days of market a trial of `scenario` reads from its first day."""
    live_days = int(np.ceil(LIVE_WINDOWS * settings.monitor_window_hours / 24))
    if scenario.kind == "drift":
        return DRIFT_HISTORY_DAYS + live_days + 1
    eval_days = int(np.ceil(settings.eval_days))
    if scenario.kind == "gate":
        return gate_history_days(settings) + eval_days + FRESH_DAYS
    return TRAIN_DAYS + eval_days + live_days


def _first_day(rows: pd.DataFrame) -> pd.Timestamp:
    """Midnight (UTC) of a trial's first day: its rows start there, less the features'
    warm-up."""
    first: pd.Timestamp = rows["open_time"].min().normalize()
    return first


def run_trial(
    scenario: Scenario, seed: int, settings: Settings, market: Market | None = None
) -> Outcome:
    """The trial of `scenario` on `seed`, on `market` (default: the synthetic market of
    ``MLOPS_SYMBOLS``)."""
    kinds = {"drift": drift_trial, "gate": gate_trial, "monitor": monitor_trial}
    chosen = market or Market(tuple(settings.symbols))
    return kinds[scenario.kind](scenario, seed, settings, chosen)
