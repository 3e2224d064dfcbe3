"""A model artifact is data from the registry: loading it must never run its code.

The attack: a version registered with a pickle payload (MLflow's sklearn flavor with
``serialization_format="pickle"``) whose unpickling writes a file. MLflow's own loader runs it;
every loader of ours (the gate, the evaluate step, serving) refuses the artifact by its format
before reading it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.errors import PipelineError
from pipelines.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.hostile]  # MLflow logs through subprocesses


class Payload:
    """Unpickling this writes `marker`: stands for any code an attacker wants run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (self.marker.write_text, ("code from the artifact ran",))


def register_pickled(settings: Settings, marker: Path) -> str:
    import mlflow
    import mlflow.sklearn

    from pipelines.ml.tracking import configure

    configure(settings)
    with mlflow.start_run():
        logged = mlflow.sklearn.log_model(
            Payload(marker),
            name="model",
            serialization_format="pickle",
            pip_requirements=[],
            registered_model_name=settings.model_name,
        )
    assert not marker.exists(), "logging alone runs nothing"
    return str(logged.model_uri)


def test_the_gate_refuses_a_pickled_model_and_runs_none_of_its_code(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    settings = Settings(home=tmp_path / "home")
    marker = tmp_path / "pwned"
    register_pickled(settings, marker)

    from pipelines.ml.tracking import load_model_safely

    with pytest.raises(PipelineError, match="serialization format 'pickle' is not skops"):
        load_model_safely(settings, f"models:/{settings.model_name}/1")
    assert not marker.exists()

    import pandas as pd

    from pipelines.decisions import gate

    with pytest.raises(PipelineError, match="is not skops"):
        gate._probabilities(settings, 1, pd.DataFrame({"x": [0.0]}))
    assert not marker.exists()


def test_the_payload_is_real_mlflows_own_loader_runs_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The control: without our loader the artifact's code runs (so the test above is a real
    attack, refused — not a file that fails to load for some other reason)."""
    import mlflow.sklearn

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "true")
    settings = Settings(home=tmp_path / "home")
    marker = tmp_path / "pwned"
    uri = register_pickled(settings, marker)
    mlflow.sklearn.load_model(uri)
    assert marker.read_text() == "code from the artifact ran"
