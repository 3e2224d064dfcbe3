"""Has the serving champion degraded? A one-sided CUSUM over its judged live windows.

The monitor used to roll back after ``MLOPS_MONITOR_WINDOWS`` windows in a row whose live ROC-AUC
was below the recorded one minus ``MLOPS_MONITOR_MAX_AUC_DROP``. A 1-day window's ROC-AUC has a
standard deviation of about 0.04 on the synthetic market, so that rule can tell neither a small
drop from noise nor, when it is loosened, noise from a drop.

This module accumulates evidence instead. Each judged window gives ``z``: the excess of the
champion's mean per-row log-loss over the log-loss recorded at its evaluation, in units of
``MLOPS_MONITOR_LOG_LOSS_SD`` (the standard deviation of that excess for a healthy champion in
one window, measured by ``mlops decisions backtest``: it holds the market's day-to-day variation
and the recorded evaluation's own noise, far more than the rows' sampling noise), clipped at
``CLIP``. Page's CUSUM ``S_w = max(0, S_{w-1} + z_w - k)``, ``k = CUSUM_K``, runs over the judged
windows since the champion was promoted (its inference log holds only its own windows); the
champion is degraded when ``S_w`` reaches ``MLOPS_MONITOR_CUSUM_THRESHOLD`` once at least
``MLOPS_MONITOR_WINDOWS`` windows are judged. A healthy champion's windows pull ``S`` down by
``k`` each, so one noisy window does not trigger it; a sustained excess adds up. The
threshold's false-rollback rate is measured by the backtest's ``healthy-champion`` scenario
(docs/decisions.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel

from pipelines.settings import Settings

CUSUM_K = 1.5
"""Allowance per window, in standard deviations. Not the textbook 0.5: part of a healthy
champion's excess is common to all its windows (its recorded evaluation's own noise: about 0.75
of the s.d. on the backtest's champions), and an allowance below that offset would let the CUSUM
of a healthy champion with an unlucky evaluation climb without end."""
CLIP = 3.5
"""A window adds at most this many standard deviations (less `CUSUM_K`): with a threshold above
``CLIP - CUSUM_K`` no single window, however bad (a glitch), rolls a champion back."""


class Verdict(BaseModel):
    """The sequential test's state after the latest judged window."""

    judged: int
    """Judged windows the test ran over."""
    statistic: float
    """CUSUM after the latest judged window (0 without any)."""
    threshold: float
    rollback: bool
    first_crossing: int | None
    """Index, among the judged windows, of the first that reached the threshold."""
    excess: list[float]
    """Each judged window's log-loss excess over the recorded one, in standard deviations."""

    def reason(self, recorded_log_loss: float) -> str:
        """One line for the decision record."""
        verdict = "roll back" if self.rollback else "hold"
        return (
            f"live log-loss against the recorded {recorded_log_loss:.4f}: CUSUM "
            f"{self.statistic:.2f} over {self.judged} judged window(s) (rollback at "
            f"{self.threshold:g}): {verdict}"
        )


def cusum(excess: Sequence[float], k: float = CUSUM_K) -> list[float]:
    """Page's one-sided CUSUM of standardized `excess` (each clipped at `CLIP`), after each
    value."""
    path, statistic = [], 0.0
    for z in excess:
        statistic = max(0.0, statistic + min(z, CLIP) - k)
        path.append(statistic)
    return path


def judge(
    windows: Sequence[dict[str, Any]], recorded_log_loss: float, settings: Settings
) -> Verdict:
    """The verdict on the champion's windows (`pipelines.decisions.monitor.judge_windows`),
    judged ones only, against its recorded evaluation log-loss: degraded once at least
    ``MLOPS_MONITOR_WINDOWS`` windows are judged and the CUSUM has reached its threshold."""
    sd = settings.monitor_log_loss_sd
    excess = [(w["log_loss"] - recorded_log_loss) / sd for w in windows if w["judged"]]
    path = cusum(excess)
    threshold = settings.monitor_cusum_threshold
    least = settings.monitor_windows - 1
    first = next((i for i, value in enumerate(path) if value >= threshold and i >= least), None)
    return Verdict(
        judged=len(excess),
        statistic=path[-1] if path else 0.0,
        threshold=threshold,
        rollback=first is not None,
        first_crossing=first,
        excess=excess,
    )
