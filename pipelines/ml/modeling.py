"""The scikit-learn pipeline: model type and hyperparameters are configuration."""

from __future__ import annotations

from typing import Any

from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from pipelines.errors import PipelineError

SKOPS_TRUSTED_TYPES = ["sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"]
"""Types MLflow's skops format must be told to trust to save and load our pipelines."""

DEFAULTS: dict[str, dict[str, Any]] = {
    "hist_gradient_boosting": {
        "max_iter": 150,
        "learning_rate": 0.05,
        "max_leaf_nodes": 15,
        "min_samples_leaf": 200,
        "l2_regularization": 1.0,
        "early_stopping": False,
        "random_state": 0,
    },
    "logistic_regression": {"C": 1.0, "max_iter": 500},
}


def model_params(model_type: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """The type's defaults updated with `overrides`."""
    return {**DEFAULTS[model_type], **overrides}


def make_model(model_type: str, overrides: dict[str, Any]) -> Pipeline:
    """A fresh, unfitted pipeline.

    Raises:
        PipelineError: on a hyperparameter the estimator does not accept.
    """
    params = model_params(model_type, overrides)
    try:
        if model_type == "hist_gradient_boosting":
            return Pipeline([("model", HistGradientBoostingClassifier(**params))])
        return Pipeline([("scale", StandardScaler()), ("model", LogisticRegression(**params))])
    except TypeError as error:
        raise PipelineError(
            f"MLOPS_MODEL_PARAMS: {error}", f"use hyperparameters of {model_type}"
        ) from None
