"""Shadow scenarios of the backtest: a challenger scored in shadow beside the champion over the
live windows of the synthetic market, decided by the shadow decision's own rule
(`pipelines.decisions.shadow.evidence`: the anytime-valid confidence sequence of the per-row
log-loss difference, in bar-time order).

Each trial trains a small champion and challenger on the history (one of them by an
overfitting recipe, or both by the default one with the champion a day behind), joins both
models' answers on the live rows with their realized labels, and finds the first window after
which the sequence, over block means of a label horizon, excludes 0 (the monitor judges at
least once per window). The truth is which model has the lower log-loss on fresh days after
the live ones.

``mlops decisions backtest-shadow [--seeds N] [--scenarios A,B] [--json]`` prints the figures.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel

from pipelines.backtest.trials import FAST_MODEL, MODEL_HISTORY_DAYS, market_rows
from pipelines.decisions.sequential import difference_interval, first_crossing
from pipelines.decisions.shadow import block_differences, row_differences
from pipelines.errors import PipelineError
from pipelines.ml.features import FeatureConfig, feature_names
from pipelines.ml.modeling import make_model
from pipelines.settings import Settings

SHADOW_WINDOWS = 4
"""Live windows a challenger is shadowed for: the expected time to a decision is within it."""
FRESH_DAYS = 1
"""Days after the live windows that say which model is truly better."""


OVERFIT = {"max_iter": 150, "learning_rate": 0.2, "early_stopping": False}
"""A recipe that overfits the synthetic market: live log-loss ~0.76 against ~0.69 for
`FAST_MODEL` (measured on seed 0: 0.756 vs 0.686; the base rate alone gives 0.693)."""


@dataclass(frozen=True)
class ShadowScenario:
    """One shadow scenario: each model's recipe (hyperparameters over the default) and how
    many of the history's last days the champion did not see."""

    name: str
    description: str
    champion_params: tuple[tuple[str, Any], ...] = ()
    challenger_params: tuple[tuple[str, Any], ...] = ()
    champion_days_less: int = 0
    expected: str = ""
    """``promote`` or ``reject``: the right decision ("": none is owed; a decision is false
    when the fresh days say the other model is better)."""


SCENARIOS = (
    ShadowScenario(
        "shadow-better",
        "champion overfit, challenger the default recipe",
        champion_params=tuple(OVERFIT.items()),
        expected="promote",
    ),
    ShadowScenario(
        "shadow-worse",
        "champion the default recipe, challenger overfit",
        challenger_params=tuple(OVERFIT.items()),
        expected="reject",
    ),
    ShadowScenario(
        "shadow-day-more",
        "same recipe, the challenger trained on one day more (no decision owed)",
        champion_days_less=1,
    ),
)
BY_NAME = {s.name: s for s in SCENARIOS}


@dataclass
class ShadowOutcome:
    """One trial: the decision, when, and the truth on fresh days."""

    scenario: str
    seed: int
    decision: str
    """``promote``, ``reject`` or ``continue`` after `SHADOW_WINDOWS` windows."""
    window: int | None
    """1-based window after which it was decided (None: not decided)."""
    fresh_log_loss_delta: float
    """Challenger minus champion on the fresh days (< 0: the challenger is truly better)."""
    live_log_loss_delta: float


def _fit_recipe(rows: pd.DataFrame, params: dict[str, Any]) -> Any:
    model = make_model("hist_gradient_boosting", {**FAST_MODEL, **params})
    model.fit(rows[feature_names(FeatureConfig())], rows["label"].to_numpy())
    return model


def shadow_trial(scenario: ShadowScenario, seed: int, settings: Settings) -> ShadowOutcome:
    """Train both models, shadow the challenger over the live windows, decide."""
    hours = settings.monitor_window_hours
    live_days = int(np.ceil(SHADOW_WINDOWS * hours / 24))
    rows = market_rows(
        settings.symbols, seed, MODEL_HISTORY_DAYS + live_days + FRESH_DAYS, None, None
    )
    first = rows["open_time"].min().normalize()
    live_start = first + pd.Timedelta(days=MODEL_HISTORY_DAYS)
    live_end = live_start + pd.Timedelta(hours=hours * SHADOW_WINDOWS)
    fresh_start = live_start + pd.Timedelta(days=live_days)
    embargo = pd.Timedelta(minutes=settings.effective_embargo)
    history = rows[rows["open_time"] < live_start - embargo]
    champion = _fit_recipe(
        history[history["open_time"] < live_start - pd.Timedelta(days=scenario.champion_days_less)]
        if scenario.champion_days_less
        else history,
        dict(scenario.champion_params),
    )
    challenger = _fit_recipe(history, dict(scenario.challenger_params))
    features = feature_names(FeatureConfig())
    live = rows[(rows["open_time"] >= live_start) & (rows["open_time"] < live_end)]
    fresh = rows[rows["open_time"] >= fresh_start]

    def delta(frame: pd.DataFrame) -> np.ndarray:
        return row_differences(
            frame.assign(
                p_challenger=challenger.predict_proba(frame[features])[:, 1],
                p_champion=champion.predict_proba(frame[features])[:, 1],
            )
        )

    rows_diff = delta(live)
    block = pd.Timedelta(minutes=settings.horizon)  # 1-minute bars
    diff = block_differences(live["open_time"], rows_diff, block, complete_only=False)
    crossed = first_crossing(diff, settings.shadow_alpha, settings.shadow_loss_bound)
    decision, window = "continue", None
    if crossed is not None:
        # block k (1-based) is complete at live_start + k blocks
        window = math.ceil((block * crossed) / pd.Timedelta(hours=hours))
        decision = difference_interval(
            diff[:crossed], settings.shadow_alpha, settings.shadow_loss_bound
        ).verdict()
    return ShadowOutcome(
        scenario.name,
        seed,
        decision,
        window,
        float(delta(fresh).mean()),
        float(rows_diff.mean()),
    )


class ShadowResult(BaseModel):
    """One shadow scenario's figures over its seeds."""

    name: str
    seeds: int
    promoted: int
    rejected: int
    undecided: int
    false_decisions: int
    """Promoted while truly worse on the fresh days, or rejected while truly better."""
    mean_delay_windows: float | None
    max_delay_windows: int | None
    expected: str


def aggregate(scenario: ShadowScenario, outcomes: Sequence[ShadowOutcome]) -> ShadowResult:
    """A scenario's counts, false decisions and delays from its trials."""
    windows = [o.window for o in outcomes if o.window is not None]
    false = sum(
        (o.decision == "promote" and o.fresh_log_loss_delta > 0)
        or (o.decision == "reject" and o.fresh_log_loss_delta < 0)
        for o in outcomes
    )
    return ShadowResult(
        name=scenario.name,
        seeds=len(outcomes),
        promoted=sum(o.decision == "promote" for o in outcomes),
        rejected=sum(o.decision == "reject" for o in outcomes),
        undecided=sum(o.decision == "continue" for o in outcomes),
        false_decisions=int(false),
        mean_delay_windows=float(np.mean(windows)) if windows else None,
        max_delay_windows=max(windows) if windows else None,
        expected=scenario.expected,
    )


def _single_threaded() -> None:
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)


def _trial(args: tuple[str, int, dict[str, Any]]) -> ShadowOutcome:
    name, seed, values = args
    return shadow_trial(BY_NAME[name], seed, Settings.model_validate(values))


def run_shadow(
    settings: Settings, scenarios: Sequence[str], seeds: int, workers: int = 2
) -> tuple[list[ShadowResult], list[ShadowOutcome]]:
    """Every trial of `scenarios` (`seeds` each) on at most 2 processes.

    Raises:
        PipelineError: a scenario name is not a shadow scenario's, or `seeds` is below 1.
    """
    unknown = [n for n in scenarios if n not in BY_NAME]
    if unknown:
        raise PipelineError(
            f"unknown shadow scenario(s): {', '.join(unknown)}",
            f"use some of: {', '.join(BY_NAME)}",
        )
    if seeds < 1:
        raise PipelineError(f"--seeds {seeds}: at least one seed per scenario")
    values = settings.model_dump(mode="json")
    jobs = [(name, seed, values) for name in scenarios for seed in range(seeds)]
    with ProcessPoolExecutor(
        max_workers=max(1, min(workers, 2)), initializer=_single_threaded
    ) as pool:
        outcomes = list(pool.map(_trial, jobs))
    results = [aggregate(BY_NAME[n], [o for o in outcomes if o.scenario == n]) for n in scenarios]
    return results, outcomes


def markdown(results: Sequence[ShadowResult], settings: Settings) -> str:
    """The figures as a Markdown table (benchmarks/README.md)."""
    lines = [
        f"alpha {settings.shadow_alpha}, loss bound {settings.shadow_loss_bound}, windows of "
        f"{settings.monitor_window_hours:g} h ({len(settings.symbols)} symbols, 1-minute bars), "
        f"{SHADOW_WINDOWS} windows",
        "",
        "| scenario | seeds | expected | promoted | rejected | undecided | false decisions "
        "| delay (windows, mean / max) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        delay = (
            f"{r.mean_delay_windows:.2f} / {r.max_delay_windows}"
            if r.mean_delay_windows is not None
            else "—"
        )
        lines.append(
            f"| {r.name} | {r.seeds} | {r.expected or 'none owed'} | {r.promoted} | {r.rejected} "
            f"| {r.undecided} | {r.false_decisions} | {delay} |"
        )
    return "\n".join(lines)
