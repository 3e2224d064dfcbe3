"""The features a client computes from the klines (float64), as the server logs them.

The model-ready dataset keeps features as float32 (its memory bound), which the monitor's trust
check rightly calls altered: tests that stand in for live traffic take a row's bar from the
dataset and its features from the curated klines, as a real client's would be."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipelines.decisions.trust import _curated_rows
from pipelines.ml.features import FeatureConfig
from pipelines.storage import Storage


def client_features(
    storage: Storage,
    part: pd.DataFrame,
    features: list[str],
    interval: str,
    config: FeatureConfig,
) -> np.ndarray:
    """`features` of each (symbol, open_time) of `part`, recomputed from the curated bars."""
    first, last = part["open_time"].min(), part["open_time"].max()
    curated = pd.concat(
        [
            _curated_rows(storage, symbol, interval, config, first, last)
            for symbol in sorted(part["symbol"].unique())
        ]
    )
    joined = part[["symbol", "open_time"]].merge(curated, on=["symbol", "open_time"], how="left")
    assert len(joined) == len(part), "one curated row per bar"
    return joined[[f"{f}__curated" for f in features]].to_numpy(dtype=float)
