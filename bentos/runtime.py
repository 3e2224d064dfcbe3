"""What the service needs at run time: its settings, the model, metrics, and the image spec."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from pipelines.storage import Storage

REQUIREMENTS = Path(__file__).with_name("requirements.txt")
"""Pinned closure of the serving dependencies, exported from ``uv.lock`` (``mlops bento
requirements`` regenerates it; a test fails when it is stale)."""

PYTHON_IMAGE = "python:3.11.15-slim-bookworm"
"""Base image, pinned to the Python the project is tested with."""

UV_VERSION = "0.13.9"
"""The installer inside the image (the same uv as CI)."""

SERVICE_ENVS: list[dict[str, str]] = [
    {"name": "OMP_NUM_THREADS", "value": "1"},
    {"name": "OPENBLAS_NUM_THREADS", "value": "1"},
    {"name": "MKL_NUM_THREADS", "value": "1"},
    {"name": "MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "value": "false"},
]
"""One BLAS/OpenMP thread per worker: with more, tail latency collapses on small machines
(docs/architecture.md §7). Models are skops files, so pickle loading stays off."""


class ServiceArgs(BaseModel):
    """Bento arguments (``--arg model=…``), stored in the built Bento."""

    model: str = "market-direction:latest"
    """BentoML model tag to serve."""
    challenger: str = ""
    """BentoML model tag scored in shadow (`bentos.shadow`); empty: no shadow."""


class ServingSettings(BaseSettings):
    """Run-time settings of the service, from ``MLOPS_*`` variables (same names as the
    pipelines' where they overlap)."""

    model_config = SettingsConfigDict(env_prefix="MLOPS_", extra="ignore")

    home: Path = Path(".mlops")
    env: str = "local"
    storage_url: str | None = None
    """Where ``inference/`` is written; default ``$MLOPS_HOME/data``."""
    max_rows: int = Field(default=10_000, ge=1)
    """Largest number of rows (or klines) one request may carry."""
    max_batch_size: int = Field(default=2_000, ge=1)
    """Most rows the runner scores in one adaptive batch."""
    max_latency_ms: int = Field(default=2_000, ge=10)
    """Latency budget of one batched call: BentoML sheds requests it predicts will miss it
    (503), so it is sized from measurements (benchmarks/README.md), not set tight."""
    max_concurrency: int = Field(default=64, ge=1)
    """Requests the API handles at once (BentoML's ``traffic.max_concurrency``): beyond it,
    BentoML answers 429 at once — no queue grows. The benchmarks' 32 clients fit twice over."""
    inference_flush_seconds: float = Field(default=2.0, gt=0)
    """Longest a logged prediction waits in memory before it is written."""
    inference_retry_max_seconds: float = Field(default=60.0, gt=0)
    """Longest wait between two inference-log writes while its storage fails (the backoff
    starts at ``inference_flush_seconds`` and doubles, with jitter)."""
    inference_spill_dir: Path | None = None
    """Where inference-log rows go at shutdown if the storage is unreachable (sent on at the
    next start); default ``$MLOPS_HOME/inference-spill``."""

    def open_storage(self) -> Storage:
        """The storage layout the inference log goes to."""
        from pipelines.storage import open_storage

        return open_storage(self.storage_url or str(self.home / "data"))

    def spill_dir(self) -> Path:
        """The inference log's spill directory."""
        return self.inference_spill_dir or self.home / "inference-spill"


def local_model(tag: str) -> Any:
    """The BentoML model `tag` from the local store (a built Bento carries its own store).

    Raises:
        bentoml.exceptions.NotFound: with how to import one, instead of BentoML's attempt to
            fetch it from BentoCloud.
    """
    import bentoml
    from bentoml.exceptions import NotFound

    try:
        return bentoml.models.get(tag)
    except NotFound:
        raise NotFound(
            f"no BentoML model {tag!r} in the store at $BENTOML_HOME; "
            "import one with: mlops bento build --alias champion"
        ) from None


def load_estimator(model: Any) -> Any:
    """The scikit-learn pipeline inside an imported MLflow model, limited to one thread.

    Loaded with skops against the allow-list in *our* code (`SKOPS_TRUSTED_TYPES`), not the one
    the model file carries — so pickle-style loading stays off in MLflow
    (``MLFLOW_ALLOW_PICKLE_DESERIALIZATION=false``) and a crafted artifact cannot widen it.

    Raises:
        ValueError: the model was not saved in the skops format.
    """
    from threadpoolctl import threadpool_limits

    from pipelines.errors import PipelineError
    from pipelines.ml.modeling import load_skops_model

    threadpool_limits(1)
    # Requests arrive as matrices in the model's column order (checked by the request models).
    warnings.filterwarnings("ignore", message="X does not have valid feature names")
    try:
        return load_skops_model(Path(model.path_of("mlflow_model")), str(model.tag))
    except PipelineError as error:
        raise ValueError(str(error)) from None


class Scorer:
    """P(up) for a matrix of rows: the flattened forest for small requests (~10x faster for one
    row, identical answers), scikit-learn for large ones and for models it does not cover."""

    SMALL = 128
    """Rows up to which the flattened forest is used, on the event loop. Measured on the
    project's model (150 trees, depth 12), flat vs scikit-learn: 1 row 0.07 vs 1.0 ms, 32 rows
    0.29 vs 1.1 ms, 100 rows 0.78 vs 1.4 ms, 200 rows 1.5 vs 1.9 ms, 400 rows 3.0 vs 2.8 ms
    (benchmarks/README.md); kept below the crossover so a request holds the loop ~1 ms at
    most."""

    def __init__(self, estimator: Any) -> None:
        from bentos.fast_trees import flatten

        self.estimator = estimator
        self.forest = flatten(estimator)

    def __call__(self, matrix: Any) -> Any:
        """P(up) for each row of `matrix` (columns in the model's feature order)."""
        import numpy as np

        if self.forest is not None and matrix.shape[0] <= self.SMALL:
            return self.forest.predict_proba_up(matrix)
        return np.asarray(self.estimator.predict_proba(matrix)[:, 1])


@dataclass
class ServingMetrics:
    """Prometheus metrics of the service beyond BentoML's request metrics, each labelled with
    the model version it serves (names from `pipelines.metrics`)."""

    rows: Any
    """Counter per endpoint: ``rows.labels(endpoint=…).inc(n)``."""
    log_failures: Any
    log_dropped: Any
    log_lag: Any


def serving_metrics(model_name: str, model_version: str) -> ServingMetrics:
    """Create the service's metrics (once per worker), bound to the served model version.

    Every series exists from the start (at 0), so a rule over its increase sees the first
    failure or drop, not only the ones after it.
    """
    import bentoml

    from pipelines import metrics as m

    def counter(metric: m.Metric) -> Any:
        return bentoml.metrics.Counter(
            name=metric.family, documentation=metric.help, labelnames=list(metric.labels)
        )

    version = {"model_version": model_version}
    rows = counter(m.PREDICTED_ROWS)
    failures = counter(m.INFERENCE_LOG_FAILURES).labels(**version)
    dropped = counter(m.INFERENCE_LOG_DROPPED).labels(**version)
    failures.inc(0)
    dropped.inc(0)
    lag = bentoml.metrics.Gauge(
        name=m.INFERENCE_LOG_LAG.name,
        documentation=m.INFERENCE_LOG_LAG.help,
        labelnames=list(m.INFERENCE_LOG_LAG.labels),
        multiprocess_mode="livemax",
    ).labels(**version)
    lag.set(0)
    info = bentoml.metrics.Gauge(
        name=m.SERVING_MODEL.name,
        documentation=m.SERVING_MODEL.help,
        labelnames=list(m.SERVING_MODEL.labels),
        multiprocess_mode="livemax",
    )
    info.labels(model_name=model_name, model_version=model_version).set(1)

    class _Rows:
        """``rows.labels(endpoint=…)`` with the model version bound; children kept."""

        def __init__(self) -> None:
            self.children: dict[str, Any] = {}

        def labels(self, endpoint: str) -> Any:
            child = self.children.get(endpoint)
            if child is None:
                child = self.children[endpoint] = rows.labels(endpoint=endpoint, **version)
            return child

    return ServingMetrics(rows=_Rows(), log_failures=failures, log_dropped=dropped, log_lag=lag)


def image() -> Any:
    """The container image spec: pinned Python, no extra system packages, pinned wheels.

    BentoML's Dockerfile runs the server as its non-root ``bentoml`` user; the service's
    ``envs`` become ``ENV`` lines (one thread per worker, pickle loading off).
    """
    import bentoml

    # A distro BentoML has no recipe for: it then adds no system packages of its own (its debian
    # recipe installs build-essential, git and gnupg, and re-adds them on every copy of the spec).
    spec = bentoml.images.Image(
        base_image=PYTHON_IMAGE, distro="bookworm-slim", python_version="3.11"
    )
    spec.run(f"pip install --no-cache-dir uv=={UV_VERSION}")  # BentoML's own step is unpinned
    spec.lock_python_packages = False  # requirements.txt is already the locked closure
    pins = [line for line in REQUIREMENTS.read_text().splitlines() if line and line[0] != "#"]
    return spec.python_packages(*pins)
