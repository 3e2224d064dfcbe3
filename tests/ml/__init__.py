"""Tests of features, training, evaluation and the registry."""

from __future__ import annotations

from pathlib import Path

from pipelines.settings import Settings


def fast_training_settings(home: Path) -> Settings:
    """Settings that train a small model on the test mirror in seconds: one evaluation day,
    two folds, few boosting rounds, and any ROC-AUC good enough to become champion."""
    return Settings(
        home=home,
        eval_days=1,
        cv_folds=2,
        min_train_rows=1000,
        champion_min_roc_auc=0.0,
        model_params={"max_iter": 40},
    )
