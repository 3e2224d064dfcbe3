"""The targets the default settings must meet on the synthetic matrix, and the Markdown of the
figures (benchmarks/README.md).

A target is *met* when its 95% upper bound (one-sided Clopper-Pearson) is within it, *met on
the point estimate only* when the rate is but the bound is not (more seeds would tell), and
*not met* otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel

from pipelines.backtest.matrix import WITHIN_WINDOWS, Rate, ScenarioResult, upper_bound
from pipelines.backtest.power import degradation_power, vol_shift_power

DRIFT_LIMIT = 0.02
"""The drift false-alarm target."""
ROLLBACK_LIMIT = 0.02
"""The false-rollback target."""


class Target(BaseModel):
    """One target: a bad-event rate that must stay at or below `limit`."""

    name: str
    limit: float
    events: int
    trials: int

    @property
    def rate(self) -> float | None:
        """events / trials."""
        return self.events / self.trials if self.trials else None

    @property
    def upper(self) -> float | None:
        """95% upper bound of the rate."""
        return upper_bound(self.events, self.trials)

    @property
    def status(self) -> str:
        """``met``, ``point estimate only`` or ``not met`` (``no trials`` without any)."""
        if self.rate is None or self.upper is None:
            return "no trials"
        if self.upper <= self.limit:
            return "met"
        return "point estimate only" if self.rate <= self.limit else "not met"


def _sum(rates: Sequence[Rate | None]) -> tuple[int, int]:
    present = [r for r in rates if r is not None]
    return sum(r.events for r in present), sum(r.trials for r in present)


def targets(results: Sequence[ScenarioResult]) -> list[Target]:
    """The issue's targets from the scenario results present."""
    by = {r.name: r for r in results}
    found = []

    def add(name: str, limit: float, rates: Sequence[Rate | None]) -> None:
        events, trials = _sum(rates)
        if trials:
            found.append(Target(name=name, limit=limit, events=events, trials=trials))

    add(
        "drift false alarms per window, no change (≤ 2%)",
        0.02,
        [by[n].drift_false_alarm for n in ("no-change",) if n in by],
    )
    add(
        "volatility x2 missed within 3 windows (≤ 5%)",
        0.05,
        [by[n].missed_detection for n in ("vol-x2",) if n in by],
    )
    add(
        "false promotion of a truly worse challenger (≤ 5%)",
        0.05,
        [r.false_promotion for r in results],
    )
    add(
        "false rollback of a healthy champion (≤ 2%)",
        0.02,
        [by[n].false_rollback for n in ("healthy-champion",) if n in by],
    )
    add(
        "no rollback within 3 windows of degrading (≤ 5%)",
        0.05,
        [by[n].missed_rollback for n in ("champion-degrades",) if n in by],
    )
    return found


def _cell(rate: Rate | None) -> str:
    if rate is None or rate.value is None:
        return "-"
    return f"{rate.value:.1%} ({rate.events}/{rate.trials}, ≤ {rate.upper:.1%})"


def markdown(
    results: Sequence[ScenarioResult],
    digest: str,
    label: str,
    day: str,
    seeds: int,
    drift_seeds: int,
    first_seed: int,
    symbols: int,
) -> str:
    """The figures as Markdown: the matrix, then the targets (and what `symbols` symbols'
    evidence allows any test to reach)."""
    drift = any(r.drift_false_alarm is not None for r in results)
    counts = [f"{drift_seeds} per no-change drift scenario (4 windows each)"] if drift else []
    if not all(r.drift_false_alarm is not None for r in results):
        counts.append(f"{seeds} per {'other ' if drift else ''}scenario")
    start = f", from seed {first_seed}" if first_seed else ""
    lines = [
        f"#### {label} — settings digest `{digest}` ({day})",
        "",
        f"Seeds: {', '.join(counts)}{start}; {symbols} symbols. Each cell: "
        "rate (events/trials, one-sided 95% Clopper-Pearson upper bound).",
        "",
        "| scenario | seeds | promotion | false promotion | false rollback | missed rollback "
        "| missed detection (3 windows) | delay (windows) | drift false alarm |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        delay = f"{r.detection_delay_windows:.2f}" if r.detection_delay_windows else "-"
        lines.append(
            f"| {r.name} | {r.seeds} | {_cell(r.promotion)} | {_cell(r.false_promotion)} "
            f"| {_cell(r.false_rollback)} | {_cell(r.missed_rollback)} "
            f"| {_cell(r.missed_detection)} | {delay} | {_cell(r.drift_false_alarm)} |"
        )
    lines += ["", "| target | rate | trials | 95% upper bound | status |", "|---|---|---|---|---|"]
    for t in targets(results):
        lines.append(f"| {t.name} | {t.rate:.1%} | {t.trials} | {t.upper:.1%} | {t.status} |")
    return "\n".join(lines + power_lines(results, symbols)) + "\n"


def power_lines(results: Sequence[ScenarioResult], symbols: int) -> list[str]:
    """What any test could reach on `symbols` symbols (`pipelines.backtest.power`), for the
    scenarios present."""
    by = {r.name: r for r in results}
    rows = []
    if "vol-x2" in by:
        for p in vol_shift_power(2.0, DRIFT_LIMIT, symbols, WITHIN_WINDOWS):
            rows.append(
                f"| volatility x2 within {WITHIN_WINDOWS} windows at {DRIFT_LIMIT:.0%} false "
                f"alarms, {symbols} symbols: {p.test} | {p.z:.2f} | {p.power:.1%} "
                f"| volatility x{p.needed:.2f} |"
            )
    healthy, degrades = by.get("healthy-champion"), by.get("champion-degrades")
    if healthy and degrades and healthy.excess_sd and degrades.effect is not None:
        effect = degrades.effect / healthy.excess_sd
        p = degradation_power(effect, ROLLBACK_LIMIT, WITHIN_WINDOWS)
        rows.append(
            f"| champion-degrades: a window's ROC-AUC within symbol falls by {degrades.effect:.4f} "
            f"(healthy deficit s.d. {healthy.excess_sd:.4f}, i.e. {effect:.2f} s.d.), "
            f"{p.test} at {ROLLBACK_LIMIT:.0%} false rollbacks | {p.z:.2f} | {p.power:.1%} "
            f"| {p.needed:.2f} s.d. |"
        )
    if not rows:
        return []
    header = ["", "| best possible test (power upper bound) | z | power | needed for 95% |"]
    return [*header, "|---|---|---|---|", *rows]
