"""The scenario matrix: run trials (a process pool of at most 2), aggregate each scenario's
rates, check them against the targets with 95% upper bounds (Clopper-Pearson), and render
them (JSON, a Markdown table for benchmarks/README.md).

The settings digest names what the figures are for: every ``MLOPS_GATE_*``,
``MLOPS_MONITOR_*`` and ``MLOPS_DRIFT_*`` value, the calibration method and this backtest's
version. tests/decisions/test_backtest_figures.py fails when an env's digest has no figures.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np
from pydantic import BaseModel
from scipy.stats import beta

from pipelines.backtest.trials import Market, Outcome, Scenario, run_trial, trial_days
from pipelines.errors import PipelineError
from pipelines.reports.calibration import METHOD
from pipelines.settings import Settings
from pipelines.synthetic.market import Regime

BACKTEST_VERSION = 8
"""Bump when a trial's meaning changes: part of the settings digest."""
DECISION_PREFIXES = ("gate_", "monitor_", "drift_")
DECISION_FIELDS = ("eval_days", "symbols")
"""Other settings the trials read: the gate decides on, and the monitor's champion is recorded
on, the last ``MLOPS_EVAL_DAYS``; every trial's market has ``MLOPS_SYMBOLS`` (each symbol adds
independent evidence to every window)."""
WITHIN_WINDOWS = 3
"""A shift is detected, a degraded champion rolled back, only within this many windows."""
ONLY_VOL = {"volume": 1.0, "daily_drift": 0.0, "taker_bias": 0.0}

SCENARIOS = (
    Scenario("no-change", "drift", "stable market: every alarm is false"),
    Scenario("late-days", "drift", "the last 6 h of each window missing", missing_hours=6.0),
    Scenario("vol-x2", "drift", "volatility x2", Regime(vol=2.0, **ONLY_VOL), expects_drift=True),
    Scenario("vol-x3", "drift", "volatility x3", Regime(vol=3.0, **ONLY_VOL), expects_drift=True),
    Scenario(
        "trend",
        "drift",
        "a 1%/day trend",
        Regime(vol=1.0, volume=1.0, daily_drift=0.01, taker_bias=0.0),
        expects_drift=True,
    ),
    Scenario(
        "volume",
        "drift",
        "volume x3, buyers +8%",
        Regime(vol=1.0, volume=3.0, daily_drift=0.0, taker_bias=0.08),
        expects_drift=True,
    ),
    Scenario(
        "broken-constant",
        "drift",
        "taker_buy_ratio constant",
        broken=("taker_buy_ratio", "constant"),
        expects_drift=True,
    ),
    Scenario(
        "broken-nan",
        "drift",
        "volume_z_48 all NaN",
        broken=("volume_z_48", "nan"),
        expects_drift=True,
    ),
    Scenario(
        "broken-unit",
        "drift",
        "hl_range in percent",
        broken=("hl_range", "unit"),
        expects_drift=True,
    ),
    Scenario("same-challenger", "gate", "challenger = champion's recipe on a day more"),
    Scenario(
        "better-challenger",
        "gate",
        "champion trained on 50% flipped labels (no skill)",
        champion_noise=0.5,
    ),
    Scenario(
        "worse-challenger",
        "gate",
        "challenger trained on 45% flipped labels",
        challenger_noise=0.45,
    ),
    Scenario(
        "label-noise", "gate", "challenger trained on 20% flipped labels", challenger_noise=0.2
    ),
    Scenario("healthy-champion", "monitor", "champion keeps its quality"),
    Scenario(
        "champion-degrades",
        "monitor",
        "the order-flow signal the labels depend on reverses from the first live window",
        Regime(vol=1.0, volume=1.0, daily_drift=0.0, taker_bias=0.0, flow=-1.0),
        degrades=True,
    ),
    Scenario(
        "served-in-percent",
        "monitor",
        "log returns served in percent (a broken input, not a market change: drift catches it)",
        broken=("log_return_*", "unit"),
        degrades=True,
    ),
)
BY_NAME = {s.name: s for s in SCENARIOS}


def decision_settings(settings: Settings) -> dict[str, Any]:
    """Every ``MLOPS_GATE_*``, ``MLOPS_MONITOR_*`` and ``MLOPS_DRIFT_*`` value and the
    `DECISION_FIELDS`, by field."""
    return {
        name: getattr(settings, name)
        for name in sorted(Settings.model_fields)
        if name.startswith(DECISION_PREFIXES) or name in DECISION_FIELDS
    }


def settings_digest(settings: Settings, market: str | None = None) -> str:
    """Digest of the decision settings, the calibration method and the backtest's version (and
    of `market`, a real archive's source and range: its figures are never the synthetic
    market's)."""
    return digest_of(decision_settings(settings), market)


def digest_of(values: dict[str, Any], market: str | None = None) -> str:
    """`settings_digest` of decision settings given as values (e.g. defaults + an env's)."""
    document: dict[str, Any] = {
        "settings": values,
        "calibration": METHOD,
        "backtest": BACKTEST_VERSION,
    }
    if market:
        document["market"] = market
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()[:16]


def upper_bound(events: int, trials: int, confidence: float = 0.95) -> float | None:
    """One-sided Clopper-Pearson upper bound of a rate seen `events` times in `trials`."""
    if trials == 0:
        return None
    return 1.0 if events >= trials else float(beta.ppf(confidence, events + 1, trials - events))


class Rate(BaseModel):
    """A rate with its counts and its 95% upper bound."""

    events: int
    trials: int

    @property
    def value(self) -> float | None:
        """events / trials (None without trials)."""
        return self.events / self.trials if self.trials else None

    @property
    def upper(self) -> float | None:
        """The one-sided 95% Clopper-Pearson upper bound."""
        return upper_bound(self.events, self.trials)


class ScenarioResult(BaseModel):
    """One scenario's figures (None: the rate does not apply)."""

    name: str
    seeds: int
    promotion: Rate | None = None
    false_promotion: Rate | None = None
    false_rollback: Rate | None = None
    missed_rollback: Rate | None = None
    missed_detection: Rate | None = None
    detection_delay_windows: float | None = None
    drift_false_alarm: Rate | None = None
    excess_sd: float | None = None
    """Monitor scenarios: s.d. of a window's ROC-AUC deficit (within symbol) below the recorded
    one."""
    effect: float | None = None
    """``champion-degrades``: mean fall of a window's ROC-AUC the degradation itself caused."""

    def public(self) -> dict[str, Any]:
        """The JSON row of `mlops decisions backtest --json`."""

        def value(rate: Rate | None) -> float | None:
            return rate.value if rate else None

        return {
            "name": self.name,
            "seeds": self.seeds,
            "promotion_rate": value(self.promotion),
            "false_promotion_rate": value(self.false_promotion),
            "false_rollback_rate": value(self.false_rollback),
            "missed_rollback_rate": value(self.missed_rollback),
            "detection_delay_windows": self.detection_delay_windows,
            "drift_false_alarm_rate": value(self.drift_false_alarm),
        }


def aggregate(scenario: Scenario, outcomes: Sequence[Outcome]) -> ScenarioResult:
    """A scenario's rates from its trials."""
    result = ScenarioResult(name=scenario.name, seeds=len(outcomes))
    if scenario.kind == "drift":
        if scenario.expects_drift:
            found = [
                o.first_alarm
                for o in outcomes
                if o.first_alarm is not None and o.first_alarm < WITHIN_WINDOWS
            ]
            result.missed_detection = Rate(events=len(outcomes) - len(found), trials=len(outcomes))
            result.detection_delay_windows = (
                sum(k + 1 for k in found) / len(found) if found else None
            )
        else:
            result.drift_false_alarm = Rate(
                events=sum(o.alarms for o in outcomes), trials=sum(o.windows for o in outcomes)
            )
    elif scenario.kind == "gate":
        result.promotion = Rate(
            events=sum(bool(o.promoted) for o in outcomes), trials=len(outcomes)
        )
        worse = [o for o in outcomes if o.truly_worse]
        if worse:
            result.false_promotion = Rate(
                events=sum(bool(o.promoted) for o in worse), trials=len(worse)
            )
    elif scenario.degrades:
        result.effect = _mean([e for o in outcomes for e in o.extra.get("effect", [])])
        caught = [
            o.rolled_back_at
            for o in outcomes
            if o.rolled_back_at is not None and o.rolled_back_at < WITHIN_WINDOWS
        ]
        result.missed_rollback = Rate(events=len(outcomes) - len(caught), trials=len(outcomes))
        result.detection_delay_windows = (
            sum(k + 1 for k in caught) / len(caught) if caught else None
        )
    else:
        result.excess_sd = _sd([e for o in outcomes for e in o.extra.get("auc_deficit", [])])
        result.false_rollback = Rate(
            events=sum(o.rolled_back_at is not None for o in outcomes), trials=len(outcomes)
        )
    return result


def _mean(values: Sequence[float]) -> float | None:
    return float(np.mean(values)) if values else None


def _sd(values: Sequence[float]) -> float | None:
    return float(np.std(values, ddof=1)) if len(values) > 1 else None


def _single_threaded() -> None:
    """Each worker computes on one core: two workers share the machine's two."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)


def _trial(args: tuple[str, int, dict[str, Any], str | None]) -> Outcome:
    name, seed, values, archive = args
    settings = Settings.model_validate(values)
    return run_trial(BY_NAME[name], seed, settings, Market(tuple(settings.symbols), archive))


def run_matrix(
    settings: Settings,
    scenarios: Sequence[str],
    seeds: int,
    drift_seeds: int | None = None,
    workers: int = 2,
    on_trial: Callable[[], None] | None = None,
    first_seed: int = 0,
    archive: str | None = None,
) -> list[ScenarioResult]:
    """Every trial of `scenarios` (``seeds`` each, from `first_seed`; the no-change drift-only
    scenarios `drift_seeds`: they are cheap, and a false-alarm bound needs many windows) on at
    most `workers` (<= 2) processes, on the synthetic market or, given `archive`, on a real
    archive's model rows (`pipelines.backtest.archive`); one result per scenario, in order."""
    from pipelines.backtest.archive import ARCHIVE_SCENARIOS

    known = ARCHIVE_SCENARIOS if archive else tuple(BY_NAME)
    unknown = [n for n in scenarios if n not in known]
    if unknown:
        where = " on a real archive" if archive else ""
        raise PipelineError(
            f"unknown scenario(s){where}: {', '.join(unknown)}", f"use some of: {', '.join(known)}"
        )
    if archive:
        from pipelines.backtest.archive import check_seeds

        counts = {n: _seeds(BY_NAME[n], seeds, drift_seeds) for n in scenarios}
        needed = {n: trial_days(BY_NAME[n], settings) for n in scenarios}
        check_seeds(archive, needed, first_seed, counts)
    values = settings.model_dump(mode="json")
    jobs = [
        (name, seed, values, archive)
        for name in scenarios
        for seed in range(first_seed, first_seed + _seeds(BY_NAME[name], seeds, drift_seeds))
    ]
    outcomes: list[Outcome] = []
    with ProcessPoolExecutor(
        max_workers=max(1, min(workers, 2)), initializer=_single_threaded
    ) as pool:
        for outcome in pool.map(_trial, jobs):
            outcomes.append(outcome)
            if on_trial:
                on_trial()
    return [aggregate(BY_NAME[n], [o for o in outcomes if o.scenario == n]) for n in scenarios]


def _seeds(scenario: Scenario, seeds: int, drift_seeds: int | None) -> int:
    """`drift_seeds` for the no-change drift scenarios (the cheap false-alarm trials), else
    `seeds`."""
    cheap = scenario.kind == "drift" and not scenario.expects_drift
    return (drift_seeds or seeds) if cheap else seeds


def trial_count(scenarios: Sequence[str], seeds: int, drift_seeds: int | None) -> int:
    """How many trials `run_matrix` runs."""
    return sum(_seeds(BY_NAME[n], seeds, drift_seeds) for n in scenarios)
