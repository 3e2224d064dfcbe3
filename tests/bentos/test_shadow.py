"""The challenger in shadow, in-process: the inference log's writer scores every logged row
with it and writes its answers beside the served ones (same request id, role ``shadow``); a
challenger that fails to score or to load never costs a served row or the service."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from bentos.inference_log import Chunk, InferenceLog
from bentos.shadow import SHADOW_SLICE, Shadow, load_shadow
from pipelines.decisions.inference import read_inference
from pipelines.storage import LocalStorage

FEATURES = ("a", "b")


def chunk(request_id: str, n: int) -> Chunk:
    rng = np.random.default_rng(len(request_id) + n)
    return Chunk(
        request_id,
        "predict",
        1_709_251_200_000,
        rng.normal(size=(n, 2)),
        rng.uniform(size=n),
        ["BTCUSDT"] * n,
        [1_709_251_200_000 + 60_000 * k for k in range(n)],
    )


def challenger(matrix: np.ndarray) -> np.ndarray:
    """A stand-in challenger: a function of the features, so its answers can be checked."""
    return np.asarray(1 / (1 + np.exp(-(matrix[:, 0] - matrix[:, 1]))))


def test_every_logged_row_gets_the_challengers_answer_under_the_same_request_id(
    tmp_path: Path,
) -> None:
    storage = LocalStorage(tmp_path)
    calls: list[int] = []

    def score(matrix: np.ndarray) -> np.ndarray:
        calls.append(len(matrix))
        return challenger(matrix)

    logger = InferenceLog(
        storage, "local", "3", FEATURES, flush_seconds=3600, shadow=Shadow("4", score)
    )
    chunks = [chunk("r1", 2), chunk("r2", 300), chunk("r3", 1)]
    for c in chunks:
        logger.append(c)
    assert logger.flush()
    assert logger.stats.rows_written == 303 and logger.stats.pending == 0, "served rows counted"
    served = read_inference(storage, "local", "3").to_pandas()
    shadow = read_inference(storage, "local", "3", role="shadow").to_pandas()
    assert len(served) == len(shadow) == 303
    assert served["model_version"].unique().tolist() == ["3"]
    assert shadow["model_version"].unique().tolist() == ["4"]
    pairs = served.merge(shadow, on=["request_id", "row"], suffixes=("", "_shadow"))
    assert len(pairs) == 303
    np.testing.assert_allclose(
        pairs["probability_up"], np.concatenate([c.probability_up for c in chunks])
    )
    matrix = np.concatenate([c.features for c in chunks])
    np.testing.assert_allclose(pairs["probability_up_shadow"], challenger(matrix))
    assert (pairs["direction_shadow"] == np.where(challenger(matrix) >= 0.5, "up", "down")).all()
    assert max(calls) <= SHADOW_SLICE, "scored in slices: the writer never holds the GIL long"


def test_a_challenger_that_fails_to_score_costs_no_served_row(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    failures: list[int] = []

    def broken(matrix: np.ndarray) -> np.ndarray:
        raise RuntimeError("tree walk failed")

    logger = InferenceLog(
        storage,
        "local",
        "3",
        FEATURES,
        flush_seconds=3600,
        shadow=Shadow("4", broken),
        on_shadow_failure=lambda: failures.append(1),
    )
    logger.append(chunk("r1", 5))
    assert logger.flush()
    assert read_inference(storage, "local", "3").num_rows == 5
    assert read_inference(storage, "local", "3", role="shadow").num_rows == 0
    assert failures == [1]


def test_a_wrong_number_of_answers_is_a_shadow_failure_not_a_misaligned_log(
    tmp_path: Path,
) -> None:
    storage = LocalStorage(tmp_path)
    logger = InferenceLog(
        storage, "local", "3", FEATURES, shadow=Shadow("4", lambda m: np.zeros(len(m) + 1))
    )
    logger.append(chunk("r1", 3))
    assert logger.flush()
    assert read_inference(storage, "local", "3", role=None).num_rows == 3


def test_shadow_scoring_happens_in_the_writer_not_in_append(tmp_path: Path) -> None:
    """``append`` (the request path) never calls the challenger: a slow one costs a request
    nothing."""

    def slow(matrix: np.ndarray) -> np.ndarray:
        time.sleep(0.2)
        return challenger(matrix)

    logger = InferenceLog(
        LocalStorage(tmp_path), "local", "3", FEATURES, flush_seconds=3600, shadow=Shadow("4", slow)
    )
    start = time.perf_counter()
    for k in range(20):
        logger.append(chunk(f"r{k}", 1))
    assert time.perf_counter() - start < 0.05
    assert logger.flush()
    assert read_inference(LocalStorage(tmp_path), "local", "3", role="shadow").num_rows == 20


def test_logs_written_before_roles_read_as_served(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    old = tmp_path / "inference" / "local" / "3" / "2024-03-01" / "old.parquet"
    old.parent.mkdir(parents=True)
    pq.write_table(pa.table({"request_id": ["x"], "probability_up": [0.4]}), old)
    storage = LocalStorage(tmp_path)
    assert read_inference(storage, "local", "3").num_rows == 1
    assert read_inference(storage, "local", "3", role="shadow").num_rows == 0


@pytest.mark.parametrize("tag", ["market-direction:v999", "not a tag"])
def test_a_challenger_that_cannot_be_loaded_turns_shadow_off_with_the_reason(
    tag: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BENTOML_HOME", str(tmp_path / "bentoml"))
    shadow, status = load_shadow(tag, FEATURES)
    assert shadow is None
    assert status["state"] == "off" and status["error"]
    assert load_shadow("", FEATURES) == (
        None,
        {"state": "off", "model_version": None, "error": None},
    )
