"""The decisions backtest: the gate and the monitor replayed over a scenario matrix of the
synthetic market (``mlops decisions backtest``)."""
