"""The shadow decision's pure parts, in-process: rows of the same request and bar are paired,
dependent rows are reduced to block means, and the sequence decides on those."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipelines.decisions.sequential import first_crossing
from pipelines.decisions.shadow import block_differences, evidence, pair_rows

T0 = pd.Timestamp("2024-03-04", tz="UTC")


def logged(ids: list[str], minutes: list[int], p: list[float], label: list[float]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "request_id": ids,
            "symbol": "BTCUSDT",
            "open_time": [T0 + pd.Timedelta(minutes=m) for m in minutes],
            "timestamp": [T0 + pd.Timedelta(minutes=m + 1) for m in minutes],
            "probability_up": p,
            "label": label,
        }
    )


def test_rows_pair_on_request_and_bar_and_need_a_realized_label() -> None:
    served = logged(["a", "b", "c"], [2, 1, 3], [0.6, 0.4, 0.5], [1, 0, np.nan])
    shadow = logged(["a", "b", "c", "x"], [2, 1, 3, 4], [0.7, 0.3, 0.5, 0.9], [np.nan] * 4)
    joined = pair_rows(served, shadow.drop(columns=["label"]))
    assert joined["request_id"].tolist() == ["b", "a"], "bar-time order; no label, no pair"
    assert joined["p_champion"].tolist() == [0.4, 0.6]
    assert joined["p_challenger"].tolist() == [0.3, 0.7]


def test_a_shadow_answer_under_another_request_id_is_not_paired() -> None:
    served = logged(["a"], [1], [0.6], [1])
    shadow = logged(["z"], [1], [0.9], [np.nan]).drop(columns=["label"])
    assert pair_rows(served, shadow).empty


def test_block_means_follow_bar_time_and_leave_the_growing_block_out() -> None:
    times = pd.Series([T0 + pd.Timedelta(minutes=m) for m in (0, 5, 11, 12, 13, 24)])
    diff = np.array([1.0, 3.0, 2.0, -1.0, -3.0, 7.0])
    block = pd.Timedelta(minutes=12)
    assert block_differences(times, diff, block).tolist() == [2.0, -2.0]
    assert block_differences(times, diff, block, complete_only=False).tolist() == [2.0, -2.0, 7.0]


def test_dependent_rows_fool_a_row_level_sequence_but_not_the_block_one() -> None:
    """Rows sharing a horizon: each block of 12 rows carries one common shock (mean 0). Taken
    row by row the sequence sees 12x the evidence there is and crosses often under the null;
    on block means it keeps its rate. (This is what the backtest showed on the synthetic
    market before blocks: half its decisions were in the wrong direction.)"""
    rng = np.random.default_rng(5)
    rows_crossed = blocks_crossed = 0
    block = pd.Timedelta(minutes=12)
    times = pd.Series([T0 + pd.Timedelta(minutes=m) for m in range(12 * 150)])
    for _ in range(100):
        shock = np.repeat(rng.normal(0, 0.3, 150), 12) + rng.normal(0, 0.02, 12 * 150)
        rows_crossed += first_crossing(shock, 0.05, 1.0) is not None
        means = block_differences(times, shock, block, complete_only=False)
        blocks_crossed += first_crossing(means, 0.05, 1.0) is not None
    assert blocks_crossed <= 5
    assert rows_crossed > 3 * max(blocks_crossed, 5)


def test_evidence_promotes_a_challenger_with_the_lower_loss() -> None:
    rng = np.random.default_rng(0)
    n = 12 * 80
    label = rng.integers(0, 2, n).astype(float)
    joined = pd.DataFrame(
        {
            "open_time": [T0 + pd.Timedelta(minutes=m) for m in range(n)],
            "label": label,
            "p_champion": np.where(label == 1, 0.3, 0.7),
            "p_challenger": np.where(label == 1, 0.7, 0.3),
        }
    )
    better = evidence(joined, pd.Timedelta(minutes=12), 0.05, 1.0)
    assert better.verdict() == "promote" and better.rows == 79
    swapped = joined.rename(columns={"p_champion": "p_challenger", "p_challenger": "p_champion"})
    assert evidence(swapped, pd.Timedelta(minutes=12), 0.05, 1.0).verdict() == "reject"
    assert evidence(joined.head(12), pd.Timedelta(minutes=12), 0.05, 1.0).verdict() == "continue"
    with pytest.raises(ValueError, match="alpha"):
        evidence(joined, pd.Timedelta(minutes=12), 1.5, 1.0)


def test_no_shadow_rows_is_a_hold_without_a_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A champion with nothing logged, or only served rows, and a challenger alias: the
    shadow decision holds and writes no ledger record (serving is not shadowing it)."""
    from types import SimpleNamespace

    from bentos.inference_log import Chunk, InferenceLog
    from pipelines.decisions import ledger, shadow
    from pipelines.settings import Settings
    from pipelines.storage import LocalStorage

    root = tmp_path
    storage = LocalStorage(root)
    registry = SimpleNamespace(
        get_registered_model=lambda name: SimpleNamespace(
            aliases={"champion": "1", "challenger": "2"}
        )
    )
    monkeypatch.setattr(shadow, "mlflow_client", lambda settings: registry)
    settings = Settings(home=root)
    for _ in range(2):  # nothing logged; then served rows only
        result = shadow._decide(settings, storage, None)
        assert result.decision == "hold" and result.record is None
        assert "no answer of challenger v2 logged in shadow yet" in result.reasons[0]
        logger = InferenceLog(storage, "local", "1", ["a"])
        logger.append(Chunk("r", "predict", 0, np.zeros((1, 1)), np.zeros(1), ["X"], [0]))
        logger.close()
    assert ledger.read_all(storage, "local") == []
