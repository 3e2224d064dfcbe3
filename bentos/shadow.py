"""The challenger in shadow: loaded beside the champion, scored off the request path by the
inference log's writer thread, its answers logged (role ``shadow``, same request id) and never
returned.

A challenger that cannot be loaded — missing from the store, not a skops model, other features
than the champion's — never stops serving: the service starts without shadow and says why
(``/metadata`` → ``shadow``, the log, ``mlops_serving_shadow_info``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

log = logging.getLogger(__name__)

SERVED = "served"
"""``role`` of a row the caller got as its answer."""
SHADOW_ROLE = "shadow"
"""``role`` of a challenger's answer to the same request, never returned."""
SHADOW_SLICE = 128
"""Rows scored in one shadow call: the flattened forest's range (~1 ms each), so the writer
thread never holds the GIL long enough to delay a request on the loop for long."""


@dataclass(frozen=True)
class Shadow:
    """A challenger scored in shadow."""

    model_version: str
    score: Callable[[np.ndarray], np.ndarray]
    """P(up) for a matrix of rows in the served model's column order."""

    def answers(self, matrix: np.ndarray) -> np.ndarray:
        """P(up) for every row of `matrix`, scored `SHADOW_SLICE` rows at a time.

        Raises:
            ValueError: the model returned another number of answers than rows.
        """
        parts = [
            np.asarray(self.score(matrix[i : i + SHADOW_SLICE]), dtype=np.float64)
            for i in range(0, len(matrix), SHADOW_SLICE)
        ]
        out = np.concatenate(parts) if parts else np.zeros(0)
        if out.shape != (len(matrix),):
            raise ValueError(f"{out.shape} answers for {len(matrix)} rows")
        return out

    def rows(self, served: pa.Table, answers: np.ndarray) -> pa.Table:
        """The served rows again as this challenger's: its version, answers and role."""
        n = served.num_rows
        up = pa.array(answers, pa.float64())
        replaced = {
            "model_version": pa.repeat(pa.scalar(self.model_version, pa.string()), n),
            "probability_up": up,
            "direction": pc.if_else(pc.greater_equal(up, 0.5), "up", "down"),
            "role": pa.repeat(pa.scalar(SHADOW_ROLE, pa.string()), n),
        }
        for name, column in replaced.items():
            served = served.set_column(served.schema.get_field_index(name), name, column)
        return served


def load_shadow(tag: str, features: Sequence[str]) -> tuple[Shadow | None, dict[str, Any]]:
    """The challenger `tag` (a BentoML model tag; empty: none) ready to score, and its status
    for ``/metadata``: ``{"state": "on"|"off", "model_version", "error"}``. Never raises: any
    failure turns shadow off, with the reason."""
    if not tag:
        return None, {"state": "off", "model_version": None, "error": None}
    from bentos.card import ModelCard
    from bentos.runtime import Scorer, load_estimator, local_model

    try:
        model = local_model(tag)
        card = ModelCard.from_metadata(model.info.metadata)
        if list(card.features) != list(features):
            raise ValueError(
                f"its features {list(card.features)} are not the champion's {list(features)} "
                "(shadow scores the champion's rows as they are)"
            )
        scorer = Scorer(load_estimator(model))
    except Exception as error:
        reason = f"{type(error).__name__}: {error}"
        log.error("challenger %s not loaded, shadow is off: %s", tag, reason)
        return None, {"state": "off", "model_version": None, "error": reason}
    version = str(card.model_version)
    log.info("challenger %s loaded: every request is scored in shadow", tag)
    return Shadow(version, scorer), {"state": "on", "model_version": version, "error": None}
