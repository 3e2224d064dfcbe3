"""Has the serving champion degraded? One-sided CUSUMs over its judged live windows.

The monitor used to roll back after ``MLOPS_MONITOR_WINDOWS`` windows in a row whose live ROC-AUC
was below the recorded one minus ``MLOPS_MONITOR_MAX_AUC_DROP``. A 1-day window's ROC-AUC has a
standard deviation of about 0.03 on the synthetic market, so that rule can tell neither a small
drop from noise nor, when it is loosened, noise from a drop.

This module accumulates evidence instead, on two statistics of each judged window, each in units
of its standard deviation for a healthy champion in one window (measured by
``mlops decisions backtest``: it holds the rows' sampling noise — their labels overlap by
``horizon`` bars —, the market's day-to-day variation and the recorded evaluation's own noise),
clipped at ``CLIP``:

- the **ROC-AUC deficit**, the champion's recorded ROC-AUC less the window's, both *within
  symbol* (over pairs of bars of the same symbol and window, `WITHIN`), in units of
  ``MLOPS_MONITOR_AUC_SD``: a model whose signal weakens or reverses ranks worse. Pairs
  across symbols would also score which symbol rose more that day, noise to this question;
- the **log-loss excess**, the window's mean per-row log-loss less the recorded one, in units of
  ``MLOPS_MONITOR_LOG_LOSS_SD``: a model that ranks as well but whose probabilities are no longer
  calibrated (overconfident, shifted).

For each, Page's CUSUM ``S_w = max(0, S_{w-1} + z_w - k)``, ``k`` its `ALLOWANCE`, runs over the
judged windows since the champion was promoted (its inference log holds only its own windows);
the champion is degraded when either reaches ``MLOPS_MONITOR_CUSUM_THRESHOLD`` once at least
``MLOPS_MONITOR_WINDOWS`` windows are judged. A healthy champion's windows pull ``S`` down by
``k`` each, so one noisy window does not trigger it; a sustained deficit adds up. The pair's
false-rollback rate is measured by the backtest's ``healthy-champion`` scenario, their power by
``champion-degrades`` (docs/decisions.md).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel

from pipelines.settings import Settings

ALLOWANCE = {"roc_auc": 1.0, "log_loss": 1.5}
"""Each CUSUM's allowance per window ``k``, in standard deviations. Not the textbook 0.5: part
of a healthy champion's deficit is common to all its windows (its recorded evaluation's own
noise, and the market's regimes outlasting a week: on the backtest's healthy champions a
third of the ROC-AUC deficit's variance, half of the log-loss excess's, is common to a
champion's windows), and an allowance below that offset would let a healthy champion's CUSUM
climb without end. Chosen with `MLOPS_MONITOR_CUSUM_THRESHOLD` on the backtest's tuning seeds
(docs/decisions.md)."""
CUSUM_K = ALLOWANCE["roc_auc"]
"""The default allowance of `cusum`."""
CLIP = 3.5
"""A window adds at most this many standard deviations (less the allowance): with a threshold
above ``CLIP - k`` no single window, however bad (a glitch), rolls a champion back."""


UNIT_SYMBOL_DAYS = 2.0
"""The evidence ``MLOPS_MONITOR_AUC_SD`` and ``MLOPS_MONITOR_LOG_LOSS_SD`` are stated for: a
window of two symbols' day (what they were measured on)."""

WITHIN = "roc_auc_within_symbol"
"""The ROC-AUC the deficit is measured on: over pairs of the same symbol and window
(`pipelines.ml.evaluation.roc_auc_within`), live and as recorded at evaluation."""

STATISTICS = ("roc_auc", "log_loss")
"""The statistics, by the window metric each reads."""


class Verdict(BaseModel):
    """The sequential tests' state after the latest judged window."""

    judged: int
    """Judged windows the tests ran over."""
    statistic: float
    """The larger CUSUM after the latest judged window (0 without any)."""
    statistics: dict[str, float]
    """Each CUSUM after the latest judged window, by statistic (`STATISTICS`)."""
    threshold: float
    rollback: bool
    first_crossing: int | None
    """Index, among the judged windows, of the first at which a CUSUM reached the threshold."""
    crossed: str | None
    """The statistic whose CUSUM reached it first (``roc_auc`` when both did at once)."""
    excess: dict[str, list[float]]
    """Each judged window's standardized ROC-AUC deficit and log-loss excess, by statistic."""

    def reason(self, recorded: dict[str, float]) -> str:
        """One line for the decision record."""
        verdict = "roll back" if self.rollback else "hold"
        paths = ", ".join(
            f"{LABELS[name]} against the recorded {recorded[RECORDED[name]]:.4f}: "
            f"{self.statistics[name]:.2f}"
            if RECORDED[name] in recorded
            else f"{LABELS[name]} not judged (no recorded {RECORDED[name]}: a version trained "
            "since it is recorded has it)"
            for name in STATISTICS
        )
        why = f" ({LABELS[self.crossed]})" if self.crossed else ""
        return (
            f"live CUSUMs over {self.judged} judged window(s), {paths} (rollback at "
            f"{self.threshold:g}): {verdict}{why}"
        )


LABELS = {"roc_auc": "ROC-AUC deficit", "log_loss": "log-loss excess"}
RECORDED = {"roc_auc": WITHIN, "log_loss": "log_loss"}
"""The recorded evaluation's metric each statistic is measured against."""


def cusum(excess: Sequence[float], k: float = CUSUM_K) -> list[float]:
    """Page's one-sided CUSUM of standardized `excess` (each clipped at `CLIP`), after each
    value."""
    path, statistic = [], 0.0
    for z in excess:
        statistic = max(0.0, statistic + min(z, CLIP) - k)
        path.append(statistic)
    return path


def standardized(
    windows: Sequence[dict[str, Any]], recorded: dict[str, float], settings: Settings
) -> dict[str, list[float]]:
    """The judged windows' ROC-AUC deficit (within symbol: `WITHIN`) and log-loss excess, each
    in its healthy s.d.; no ROC-AUC deficit when the recorded evaluation has no ROC-AUC within
    symbol (a version trained before it was recorded: log-loss alone judges it)."""
    judged = [w for w in windows if w["judged"]]
    unit = [units(settings, w.get("symbol_days")) for w in judged]
    reference = recorded.get(WITHIN)
    return {
        "roc_auc": []
        if reference is None
        else [(reference - w[WITHIN]) / u["roc_auc"] for w, u in zip(judged, unit, strict=True)],
        "log_loss": [
            (w["log_loss"] - recorded["log_loss"]) / u["log_loss"]
            for w, u in zip(judged, unit, strict=True)
        ],
    }


def units(settings: Settings, symbol_days: float | None = None) -> dict[str, float]:
    """Each statistic's healthy s.d. in a window holding `symbol_days` of evidence (the hours
    each symbol's rows cover, summed over the symbols, in days: `symbol_days`; None: a whole
    window of every ``MLOPS_SYMBOLS``). The settings are stated for `UNIT_SYMBOL_DAYS`, and the
    s.d. scales by ``sqrt(UNIT_SYMBOL_DAYS / symbol-days)`` (the synthetic market's symbols move
    independently; symbols that move together add less, docs/decisions.md), so a partial
    window, or one missing a symbol, weighs what it holds."""
    evidence = (
        symbol_days if symbol_days else len(settings.symbols) * settings.monitor_window_hours / 24
    )
    scale = math.sqrt(UNIT_SYMBOL_DAYS / evidence)
    return {
        "roc_auc": settings.monitor_auc_sd * scale,
        "log_loss": settings.monitor_log_loss_sd * scale,
    }


def judge(
    windows: Sequence[dict[str, Any]], recorded: dict[str, float], settings: Settings
) -> Verdict:
    """The verdict on the champion's windows (`pipelines.decisions.monitor.judge_windows`),
    judged ones only, against its recorded evaluation (`WITHIN` and ``log_loss``): degraded
    once at least ``MLOPS_MONITOR_WINDOWS`` windows are judged and either CUSUM has reached
    its threshold."""
    excess = standardized(windows, recorded, settings)
    paths = {name: cusum(values, ALLOWANCE[name]) for name, values in excess.items()}
    threshold = settings.monitor_cusum_threshold
    least = settings.monitor_windows - 1
    crossings = {
        name: next((i for i, v in enumerate(path) if v >= threshold and i >= least), None)
        for name, path in paths.items()
    }
    found = [(i, STATISTICS.index(name), name) for name, i in crossings.items() if i is not None]
    first = min(found) if found else None
    finals = {name: path[-1] if path else 0.0 for name, path in paths.items()}
    return Verdict(
        judged=len(excess["log_loss"]),
        statistic=max(finals.values()),
        statistics=finals,
        threshold=threshold,
        rollback=first is not None,
        first_crossing=first[0] if first else None,
        crossed=first[2] if first else None,
        excess=excess,
    )
