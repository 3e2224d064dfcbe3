"""A vectorised evaluator for a fitted binary ``HistGradientBoostingClassifier``, for the
low-latency path.

scikit-learn scores a row by calling each of the ~150 trees in turn from Python (about 1.7 ms
for one row here, most of a request's time). The same trees flattened into arrays are walked for
all trees at once, one NumPy step per tree level (~0.1 ms). The answers are the same: a test
compares them with scikit-learn's ``predict_proba`` on real rows, and the service falls back to
scikit-learn for any model this does not cover (categorical splits, multiclass, transformers
before the estimator).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class FlatForest:
    """All trees' nodes in one set of arrays; ``roots[t]`` is tree t's first node. A leaf is its
    own child on both sides, so every row takes exactly `depth` steps in every tree."""

    roots: np.ndarray
    feature: np.ndarray
    threshold: np.ndarray
    missing_left: np.ndarray
    children: np.ndarray
    """``children[2 * node]`` is the left child, ``children[2 * node + 1]`` the right one."""
    value: np.ndarray
    baseline: float
    depth: int

    def predict_proba_up(self, matrix: np.ndarray) -> np.ndarray:
        """P(class 1) for each row of `matrix` (model column order).

        One step per tree level for all rows and trees at once, each a few ``take`` gathers
        over rows x trees nodes (faster than scikit-learn's per-tree loop up to a few hundred
        rows: benchmarks/README.md)."""
        rows, width = matrix.shape
        flat = np.ascontiguousarray(matrix, dtype=np.float64).ravel()
        base = np.arange(0, rows * width, width, dtype=np.intp)[:, None]
        node = np.broadcast_to(self.roots, (rows, self.roots.size))
        missing = bool(np.isnan(flat).any())
        for _ in range(self.depth):
            x = flat.take(base + self.feature.take(node))
            go_right = x > self.threshold.take(node)  # NaN compares False: left by default
            if missing:
                go_right |= np.isnan(x) & ~self.missing_left.take(node)
            node = self.children.take(2 * node + go_right)
        raw = self.baseline + self.value.take(node).sum(axis=1)
        return np.asarray(1.0 / (1.0 + np.exp(-raw)))


def flatten(estimator: Any) -> FlatForest | None:
    """The forest of a pipeline whose only step is a binary HistGradientBoostingClassifier
    without categorical features; None for anything else (use scikit-learn)."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.pipeline import Pipeline

    model = estimator
    if isinstance(estimator, Pipeline):
        if len(estimator.steps) != 1:
            return None
        model = estimator.steps[0][1]
    if not isinstance(model, HistGradientBoostingClassifier):
        return None
    if model.n_trees_per_iteration_ != 1 or model.is_categorical_ is not None:
        return None
    trees = [predictors[0].nodes for predictors in model._predictors]
    if any(t["is_categorical"].any() for t in trees):
        return None
    offsets = np.cumsum([0] + [len(t) for t in trees[:-1]])
    nodes = np.concatenate(trees)
    shift = np.repeat(offsets, [len(t) for t in trees])
    leaf = nodes["is_leaf"].astype(bool)
    here = np.arange(len(nodes), dtype=np.intp)
    left = np.where(leaf, here, nodes["left"].astype(np.intp) + shift)
    right = np.where(leaf, here, nodes["right"].astype(np.intp) + shift)
    return FlatForest(
        roots=offsets.astype(np.intp),
        feature=np.where(leaf, 0, nodes["feature_idx"]).astype(np.intp),
        threshold=nodes["num_threshold"].astype(np.float64),
        missing_left=nodes["missing_go_to_left"].astype(bool),
        children=np.column_stack([left, right]).ravel(),
        value=np.where(leaf, nodes["value"], 0.0).astype(np.float64),
        baseline=float(np.ravel(model._baseline_prediction)[0]),
        depth=int(nodes["depth"].max()),
    )
