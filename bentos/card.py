"""The model card: what the service knows about the model it serves (``/metadata``).

Written into the BentoML model's metadata when a registry version is imported, so a built Bento
(and its container) answers ``/metadata`` without reaching MLflow.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel

from pipelines.ml.features import FeatureConfig

CARD_KEY = "mlops_card"


class ModelCard(BaseModel):
    """Registry facts of one served version."""

    model_name: str
    model_version: str
    aliases: list[str]
    """Aliases the version held when it was imported (what it was built for)."""
    features: list[str]
    feature_types: dict[str, str]
    feature_config: dict[str, Any]
    interval: str
    horizon: int
    dataset_hash: str
    train_start: str
    train_end: str
    eval_start: str
    eval_end: str
    eval_metrics: dict[str, float | None]
    mlflow_run_id: str
    git_commit: str | None = None

    @property
    def config(self) -> FeatureConfig:
        """The feature configuration training used (same module, same windows)."""
        return FeatureConfig.model_validate(self.feature_config)

    def labels(self) -> dict[str, str]:
        """BentoML model labels (searchable with ``bentoml models list``)."""
        return {
            "registered_model": self.model_name,
            "model_version": self.model_version,
            "dataset_hash": self.dataset_hash,
            "interval": self.interval,
            "horizon": str(self.horizon),
        }

    def metadata(self) -> dict[str, Any]:
        """BentoML model metadata: the card as one JSON string."""
        return {CARD_KEY: self.model_dump_json()}

    @classmethod
    def from_metadata(cls, metadata: dict[str, Any]) -> ModelCard:
        """The card stored by `metadata`."""
        return cls.model_validate(json.loads(metadata[CARD_KEY]))
