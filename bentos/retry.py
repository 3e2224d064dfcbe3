"""Asking BentoML's runner again once when the keep-alive connection to it broke."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import numpy as np


async def scores_asked_again_once(
    call: Callable[[np.ndarray], Awaitable[Any]], matrix: np.ndarray
) -> np.ndarray:
    """`call(matrix)` as an array, asked again once when the connection to the runner broke
    before its answer: BentoML's client reuses keep-alive connections, and one the runner is
    closing fails the write ("Cannot write to closing transport": a 500 seen in CI under 16
    concurrent batches at load 3). Scoring is pure, so asking again is safe; a runner that is
    down still fails the second try."""
    try:
        return np.asarray(await call(matrix))
    except aiohttp.ClientConnectionError:
        return np.asarray(await call(matrix))
