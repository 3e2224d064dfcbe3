"""The scikit-learn pipeline: model type and hyperparameters are configuration."""

from __future__ import annotations

from pathlib import Path
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


def load_skops_model(root: Path, name: str) -> Any:
    """The scikit-learn pipeline of the MLflow model directory `root` (its ``MLmodel`` file and
    the model file), loaded with skops against *our* allow-list (`SKOPS_TRUSTED_TYPES`), never
    the one the artifact carries, and never by unpickling: a model artifact is data from the
    registry, and whoever can write to the registry must not get code execution.

    Raises:
        PipelineError: the model is not in the skops format (e.g. a pickle), naming `name`.
    """
    import skops.io
    import yaml

    flavors = yaml.safe_load((root / "MLmodel").read_text()).get("flavors", {})
    flavor = flavors.get("sklearn", {})
    found = flavor.get("serialization_format")
    if found != "skops":
        raise PipelineError(
            f"{name}: serialization format {found!r} is not skops; it is refused (loading it "
            "could run code from the artifact)",
            "retrain with this version of the pipelines (it logs skops models)",
        )
    model_file = (root / str(flavor["pickled_model"])).resolve()
    if root.resolve() not in model_file.parents:
        raise PipelineError(f"{name}: the model file points outside the model directory")
    return skops.io.load(model_file, trusted=SKOPS_TRUSTED_TYPES)
