"""The flattened forest answers exactly what scikit-learn answers, or is not used."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from bentos.fast_trees import flatten
from bentos.runtime import Scorer
from pipelines.ml.modeling import make_model


def data(seed: int = 3, n: int = 4000) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6))
    x[rng.uniform(size=x.shape) < 0.05] = np.nan  # learned missing-value directions too
    signal = np.nan_to_num(x[:, 0]) - 0.5 * np.nan_to_num(x[:, 3]) ** 2
    y = (signal + rng.normal(scale=1.0, size=n) > 0).astype(int)
    return x, y


def test_the_project_model_flattens_to_the_same_probabilities() -> None:
    x, y = data()
    model = make_model("hist_gradient_boosting", {"max_iter": 60})
    model.fit(x, y)
    forest = flatten(model)
    assert forest is not None and forest.depth > 2
    rows = data(seed=9, n=500)[0]
    np.testing.assert_allclose(
        forest.predict_proba_up(rows), model.predict_proba(rows)[:, 1], rtol=0, atol=1e-12
    )
    one = rows[:1]
    assert forest.predict_proba_up(one)[0] == pytest.approx(
        model.predict_proba(one)[0, 1], abs=1e-12
    )


def test_models_it_does_not_cover_fall_back_to_scikit_learn() -> None:
    x, y = data()
    x = np.nan_to_num(x)
    logistic = Pipeline([("scale", StandardScaler()), ("model", LogisticRegression())]).fit(x, y)
    assert flatten(logistic) is None
    three = HistGradientBoostingClassifier(max_iter=5).fit(
        x, (x[:, 0] > 0).astype(int) + (x[:, 1] > 0)
    )
    assert flatten(three) is None  # multiclass
    categorical = HistGradientBoostingClassifier(max_iter=5, categorical_features=[5])
    categorical.fit(np.c_[x[:, :5], (x[:, 5] > 0).astype(int)], y)
    assert flatten(categorical) is None
    scorer = Scorer(logistic)
    np.testing.assert_allclose(scorer(x[:3]), logistic.predict_proba(x[:3])[:, 1])


def test_the_scorer_uses_scikit_learn_for_large_requests() -> None:
    x, y = data()
    model = make_model("hist_gradient_boosting", {"max_iter": 20}).fit(x, y)
    scorer = Scorer(model)
    assert scorer.forest is not None
    big = data(seed=5, n=Scorer.SMALL + 1)[0]
    np.testing.assert_allclose(scorer(big), model.predict_proba(big)[:, 1], atol=1e-12)
    np.testing.assert_allclose(scorer(big[:2]), model.predict_proba(big[:2])[:, 1], atol=1e-12)


class Recording:
    """An estimator that records the sizes it was asked to score."""

    def __init__(self, model: object) -> None:
        self.model = model
        self.sizes: list[int] = []

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        self.sizes.append(len(x))
        return self.model.predict_proba(x)  # type: ignore[attr-defined, no-any-return]


def test_requests_of_up_to_100_rows_take_the_flattened_forest() -> None:
    x, y = data()
    model = make_model("hist_gradient_boosting", {"max_iter": 20}).fit(x, y)
    scorer = Scorer(model)
    recording = Recording(model)
    scorer.estimator = recording
    rows = data(seed=7, n=100)[0]
    np.testing.assert_allclose(scorer(rows), model.predict_proba(rows)[:, 1], atol=1e-12)
    assert recording.sizes == [], "100 rows were scored by scikit-learn, not the fast path"
