"""`/predict_batch` asks the runner again once when BentoML's keep-alive connection to it broke
(a 500 seen in CI under 16 concurrent batches), and only once."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import numpy as np
import pytest

from bentos.retry import scores_asked_again_once


class FlakyRunner:
    """A runner client whose first `failures` calls break like a closing keep-alive transport."""

    def __init__(self, failures: int) -> None:
        self.failures, self.calls = failures, 0

    async def predict_proba(self, matrix: np.ndarray) -> list[float]:
        self.calls += 1
        if self.calls <= self.failures:
            raise aiohttp.ClientOSError(None, "Can not write request body")
        return [float(row.sum()) for row in matrix]


def batched(runner: FlakyRunner, matrix: np.ndarray) -> Any:
    # a loop of its own, never the thread's current one: asyncio.run would unset that at exit,
    # and later tests in this worker (Pulumi's mocks) ask for it
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(scores_asked_again_once(runner.predict_proba, matrix))
    finally:
        loop.close()


def test_a_broken_runner_connection_is_asked_again_once() -> None:
    runner = FlakyRunner(failures=1)
    matrix = np.array([[1.0, 2.0], [3.0, 4.0]])
    assert batched(runner, matrix).tolist() == [3.0, 7.0]
    assert runner.calls == 2


def test_a_runner_that_stays_broken_still_fails() -> None:
    runner = FlakyRunner(failures=2)
    with pytest.raises(aiohttp.ClientOSError):
        batched(runner, np.ones((1, 2)))
    assert runner.calls == 2
