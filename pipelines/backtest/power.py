"""What any test could detect: power computations that say why a target is out of reach when
the backtest says it is not met.

**Volatility shifts.** The synthetic market's day-level log-volatility of each symbol is an
AR(1) (`pipelines.synthetic.market`: innovation s.d. `VOL_INNOVATION`, persistence
`VOL_PERSISTENCE`), drawn independently per symbol. A shift multiplies every day's volatility
from the shift on by ``k``: it adds ``log k`` to each day's log-volatility. An *oracle* that
reads each live day's log-volatility exactly (real features only estimate it from a day of
noisy minutes) and combines the symbols optimally is the best any test can do, so its power is
an upper bound:

* against the pooled training rows (what the decisions compared with before the trailing
  reference), a day's log-volatility varies by the AR(1)'s stationary s.d., and the live days
  are correlated (the generalized-least-squares test over ``n`` windows);
* against the days just before the window (the decisions' trailing reference,
  ``MLOPS_DRIFT_REFERENCE_DAYS``; the oracle knows the last day's level), by the innovations
  only. The likelihood-ratio test over ``n`` windows gains little from the windows after the
  first: the AR(1) absorbs a level shift, so each later innovation carries only
  ``(1 - persistence) log k``.

**Champion degradation.** With the measured effect of the degradation on a window's ROC-AUC
and the s.d. of a healthy champion's ROC-AUC deficit, the best one-sided test on ``n`` windows
(if they were independent: an upper bound, since a recorded evaluation's noise is common to
all) has power
``Phi(sqrt(n) * effect / sd - z(rate))``.
"""

from __future__ import annotations

import math

import numpy as np
from pydantic import BaseModel
from scipy.stats import norm

VOL_INNOVATION = 0.25
VOL_PERSISTENCE = 0.9
"""The generator's day-level log-volatility AR(1) (tested against `pipelines.synthetic.market`)."""


class Power(BaseModel):
    """One upper bound on detection."""

    test: str
    z: float
    """Standardized effect of the shift on the best test statistic."""
    power: float
    """Probability of detection at the false-alarm rate."""
    needed: float
    """The effect (same units as the shift) the test would need for `target_power`."""


def _power(z: float, false_alarm_rate: float) -> float:
    return float(norm.cdf(z - norm.ppf(1 - false_alarm_rate)))


def vol_shift_power(
    multiplier: float,
    false_alarm_rate: float,
    symbols: int,
    windows: int,
    target_power: float = 0.95,
) -> list[Power]:
    """Oracle power to detect volatility x`multiplier` at `false_alarm_rate`, within
    `windows` windows of a day, over `symbols` independent symbols; ``needed``: the multiplier
    that would reach `target_power`."""
    shift = math.log(multiplier)
    need = norm.ppf(1 - false_alarm_rate) + norm.ppf(target_power)
    stationary = VOL_INNOVATION / math.sqrt(1 - VOL_PERSISTENCE**2)
    lags = np.abs(np.subtract.outer(np.arange(windows), np.arange(windows)))
    correlation = VOL_PERSISTENCE**lags  # of the live days' log-volatility (stationary AR(1))
    ones = np.ones(windows)
    training_gain = math.sqrt(float(ones @ np.linalg.solve(correlation, ones)))
    trailing_gain = math.sqrt(1 + (windows - 1) * (1 - VOL_PERSISTENCE) ** 2)
    found = []
    for test, sd, gain in (
        ("oracle, against the training rows", stationary, training_gain),
        ("oracle, against the days just before", VOL_INNOVATION, trailing_gain),
    ):
        unit = gain * math.sqrt(symbols) / sd  # z per unit of log-volatility shift
        found.append(
            Power(
                test=test,
                z=shift * unit,
                power=_power(shift * unit, false_alarm_rate),
                needed=math.exp(need / unit),
            )
        )
    return found


def degradation_power(
    effect_sd: float, false_alarm_rate: float, windows: int, target_power: float = 0.95
) -> Power:
    """Power of the best one-sided test on `windows` independent windows to detect a mean
    excess of `effect_sd` standard deviations; ``needed``: the effect (s.d.) for
    `target_power`."""
    z = math.sqrt(windows) * effect_sd
    need = (norm.ppf(1 - false_alarm_rate) + norm.ppf(target_power)) / math.sqrt(windows)
    return Power(
        test=f"best test on {windows} independent windows",
        z=z,
        power=_power(z, false_alarm_rate),
        needed=need,
    )
