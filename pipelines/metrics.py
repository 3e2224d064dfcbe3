"""Every metric the platform emits or alerts on, named once.

A foundation (no imports beyond the standard library): the serving runtime, the pipelines, the
Argo renderer, and the generators of the alert rules and dashboards (`pipelines.observability`)
all take names from here, so no metric name is spelled twice. ``name`` is the series name as
Prometheus scrapes it (counters end in ``_total``; a histogram's series add ``_bucket``,
``_sum`` and ``_count``).

Where each family comes from (``origin``), on the cluster and locally:

- ``argo``: an Argo template or workflow metric (the workflow controller emits it when a step
  or a run ends; `pipelines.orchestration.argo`); locally the runner writes the same name to
  the metrics textfile.
- ``push``: written by the step's own process: to the Pushgateway on the cluster (the pod is
  gone before any scrape; docs/slo.md, "How decisions leave short-lived pods") and to the
  metrics textfile locally (`pipelines.orchestration.telemetry`).
- ``serving``: the BentoML service's own metrics (`bentos.runtime.serving_metrics`).
- ``bentoml``: BentoML's request metrics (its HTTP middleware; namespace ``bentoml_service``).
  The same families also count the API's calls to its model runner (``runner_name`` is the
  runner's, e.g. endpoint ``/predict_proba``): rules select the API's endpoints by name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["counter", "gauge", "histogram"]
Origin = Literal["argo", "push", "serving", "bentoml"]


@dataclass(frozen=True)
class Metric:
    """One metric family: its scraped name, type, help text, labels and origin."""

    name: str
    kind: Kind
    help: str
    labels: tuple[str, ...] = ()
    origin: Origin = "push"
    buckets: tuple[float, ...] = ()
    """Histogram bucket bounds (without +Inf)."""

    @property
    def family(self) -> str:
        """The name without a counter's ``_total`` (what client libraries are given)."""
        return self.name.removesuffix("_total") if self.kind == "counter" else self.name

    def series(self, suffix: str = "") -> str:
        """A series of the family, e.g. ``series("_bucket")`` of a histogram."""
        if suffix and self.kind != "histogram":
            raise ValueError(f"{self.name} is a {self.kind}: it has no {suffix} series")
        return self.name + suffix


STEP_STATUSES = ("Succeeded", "Failed", "Error")
"""Values of the ``status`` label of step and run results (Argo's ``{{status}}`` words)."""

# ── pipelines: per step ─────────────────────────────────────────────────────────────────────
STEP_DURATION = Metric(
    "mlops_step_duration_seconds",
    "histogram",
    "Duration of one pipeline step",
    ("pipeline", "step"),
    "argo",
    (5.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0),
)
STEP_RESULT = Metric(
    "mlops_step_result_total",
    "counter",
    "Pipeline step results by status",
    ("pipeline", "step", "status"),
    "argo",
)
STEP_RETRIES = Metric(
    "mlops_step_retries",
    "gauge",
    "Retries the last run of a step needed (0: the first attempt ended it)",
    ("pipeline", "step"),
    "argo",
)
STEP_ROWS = Metric(
    "mlops_step_rows",
    "gauge",
    "Rows a step read (direction=in) and wrote (direction=out) in its last run",
    ("pipeline", "step", "direction"),
)
QUARANTINE_SHARE = Metric(
    "mlops_quarantine_share",
    "gauge",
    "Share of the rows validate checked that went to quarantine in its last run",
    ("pipeline",),
)
# ── pipelines: per run ──────────────────────────────────────────────────────────────────────
WORKFLOW_DURATION = Metric(
    "mlops_workflow_duration_seconds",
    "gauge",
    "Duration of the pipeline run",
    ("pipeline",),
    "argo",
)
WORKFLOW_RESULT = Metric(
    "mlops_workflow_result_total",
    "counter",
    "Pipeline runs by status",
    ("pipeline", "status"),
    "argo",
)
# ── decisions (recomputed from the ledger by each decision step) ─────────────────────────────
DECISIONS = Metric(
    "mlops_decisions_total",
    "counter",
    "Decisions in the ledger by kind (gate, monitor, rollback) and outcome (promote, reject, "
    "hold, rollback, failed)",
    ("kind", "decision"),
)
DRIFT_SHARE = Metric(
    "mlops_drift_share",
    "gauge",
    "Share of the features that drifted in the latest decision that measured it",
    ("kind",),
)
DRIFT_SHARE_LIMIT = Metric(
    "mlops_drift_share_limit",
    "gauge",
    "The gate's drift limit: a share at or above it rejects the challenger",
    ("kind",),
)
LIVE_ROC_AUC = Metric(
    "mlops_live_roc_auc",
    "gauge",
    "Live ROC-AUC of the champion per judged monitor window (window=0: the latest)",
    ("window",),
)
LIVE_ROC_AUC_FLOOR = Metric(
    "mlops_live_roc_auc_floor",
    "gauge",
    "The monitor's floor: the champion's recorded ROC-AUC minus the allowed drop",
)
CANARY_VERDICT = Metric(
    "mlops_canary_verdict",
    "gauge",
    "The canary analysis's latest verdict on a model version (`mlops decisions analyze --push`): "
    "1 pass, 0 inconclusive, -1 degraded",
    ("model_version",),
)
CHAMPION_VERSION = Metric(
    "mlops_champion_version",
    "gauge",
    "Registry version the latest decision left as champion",
    ("model",),
)
TRAINING_LAST_SUCCESS = Metric(
    "mlops_training_last_success_timestamp_seconds",
    "gauge",
    "When the latest training run reached its gate decision (Unix seconds)",
)
SERVING_MODEL_CREATED = Metric(
    "mlops_serving_model_created_timestamp_seconds",
    "gauge",
    "When the model the env serves (its champion) became a candidate: the gate's promotion in "
    "the env that trained it (Unix seconds)",
)
# ── serving ─────────────────────────────────────────────────────────────────────────────────
PREDICTED_ROWS = Metric(
    "mlops_predicted_rows_total",
    "counter",
    "Rows predicted, by endpoint and model version",
    ("endpoint", "model_version"),
    "serving",
)
INFERENCE_LOG_FAILURES = Metric(
    "mlops_inference_log_write_failures_total",
    "counter",
    "Failed writes of the inference log (rows are kept and retried)",
    ("model_version",),
    "serving",
)
INFERENCE_LOG_DROPPED = Metric(
    "mlops_inference_log_dropped_rows_total",
    "counter",
    "Predictions the inference log dropped: its buffer was full while the storage failed, or "
    "the shutdown spill failed",
    ("model_version",),
    "serving",
)
INFERENCE_LOG_LAG = Metric(
    "mlops_inference_log_lag_seconds",
    "gauge",
    "Age of the oldest logged prediction not yet written to storage (0: none waiting)",
    ("model_version",),
    "serving",
)
SERVING_MODEL = Metric(
    "mlops_serving_model_info",
    "gauge",
    "The model a serving worker answers with (always 1)",
    ("model_name", "model_version"),
    "serving",
)
REQUESTS = Metric(
    "bentoml_service_request_total",
    "counter",
    "Total number of HTTP requests",
    ("endpoint", "service_name", "service_version", "http_response_code", "runner_name"),
    "bentoml",
)
REQUEST_DURATION = Metric(
    "bentoml_service_request_duration_seconds",
    "histogram",
    "API HTTP request duration in seconds",
    ("endpoint", "service_name", "service_version", "http_response_code", "runner_name"),
    "bentoml",
    (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)

CATALOGUE: tuple[Metric, ...] = (
    STEP_DURATION,
    STEP_RESULT,
    STEP_RETRIES,
    STEP_ROWS,
    QUARANTINE_SHARE,
    WORKFLOW_DURATION,
    WORKFLOW_RESULT,
    DECISIONS,
    DRIFT_SHARE,
    DRIFT_SHARE_LIMIT,
    LIVE_ROC_AUC,
    LIVE_ROC_AUC_FLOOR,
    CANARY_VERDICT,
    CHAMPION_VERSION,
    TRAINING_LAST_SUCCESS,
    SERVING_MODEL_CREATED,
    PREDICTED_ROWS,
    INFERENCE_LOG_FAILURES,
    INFERENCE_LOG_DROPPED,
    INFERENCE_LOG_LAG,
    SERVING_MODEL,
    REQUESTS,
    REQUEST_DURATION,
)
"""Every family, each once."""

PUSHGATEWAY_JOBS = {
    "steps": "mlops-steps",
    "decisions": "mlops-decisions",
    "canary": "mlops-canary",
}
"""The Pushgateway ``job`` of what a step pushes: its own figures (grouped by pipeline and
step), the decisions' summary (one group, replaced whole by each decision step), and the canary
analysis's verdict (grouped by model version, replaced by each analysis of that version)."""


def by_name(name: str) -> Metric:
    """The family a scraped series belongs to (``…_bucket``/``_sum``/``_count`` included).

    Raises:
        KeyError: naming the series, when no family of the catalogue has it.
    """
    for metric in CATALOGUE:
        if name == metric.name or (
            metric.kind == "histogram" and name in {metric.name + s for s in HISTOGRAM_SUFFIXES}
        ):
            return metric
    raise KeyError(f"{name} is not in the metric catalogue (pipelines/metrics.py)")


HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
