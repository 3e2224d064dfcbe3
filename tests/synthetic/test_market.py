"""The synthetic market's controlled concept change (`pipelines.synthetic.market.Regime.flow`)."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd

from pipelines.synthetic.market import Regime, minute_bars

SHIFT = date(2024, 1, 10)
QUIET = {"vol": 1.0, "volume": 1.0, "daily_drift": 0.0, "taker_bias": 0.0}


def _flow_edge(regime: Regime, days: list[date]) -> float:
    """Correlation of a minute's taker-buy share with the next minute's return."""
    parts = [minute_bars("BTCUSDT", d, 5, SHIFT, regime) for d in days]
    bars = pd.concat(parts, ignore_index=True)
    share = (bars["taker_buy_volume"] / bars["volume"]).to_numpy()
    returns = np.diff(np.log(bars["close"].to_numpy()))
    return float(np.corrcoef(share[:-1], returns)[0, 1])


def test_a_reversed_flow_reverses_the_signal_and_leaves_the_days_before_alone() -> None:
    after = [SHIFT + timedelta(days=k) for k in range(3)]
    normal = _flow_edge(Regime(**QUIET), after)
    reversed_ = _flow_edge(Regime(**QUIET, flow=-1.0), after)
    gone = _flow_edge(Regime(**QUIET, flow=0.0), after)
    assert normal > 0.02 and reversed_ < -0.02  # the edge the labels depend on flips sign
    assert abs(gone) < 0.5 * normal
    before = SHIFT - timedelta(days=1)
    pd.testing.assert_frame_equal(
        minute_bars("BTCUSDT", before, 5, SHIFT, Regime(**QUIET, flow=-1.0)),
        minute_bars("BTCUSDT", before, 5, SHIFT, Regime(**QUIET)),
    )
    # a concept change: the taker-buy share (what a model reads) keeps its distribution
    shifted = minute_bars("BTCUSDT", SHIFT, 5, SHIFT, Regime(**QUIET, flow=-1.0))
    plain = minute_bars("BTCUSDT", SHIFT, 5, SHIFT, Regime(**QUIET))
    ratio = [b["taker_buy_volume"] / b["volume"] for b in (shifted, plain)]
    assert abs(ratio[0].mean() - ratio[1].mean()) < 0.002
