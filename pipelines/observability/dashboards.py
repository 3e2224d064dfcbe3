"""The Grafana dashboards (pipelines, serving, models), built with grafana-foundation-sdk.

Each panel is described once here (`PANELS`) with queries over the catalogue's names
(`pipelines.metrics`) and the SLI recording rules (`pipelines.observability.rules`); the typed
builders turn them into dashboard JSON, shipped as ConfigMaps that Grafana's sidecar loads
(label ``grafana_dashboard: "1"``). The same JSON serves the cluster and a local Grafana
pointed at a Prometheus that scrapes the local textfile and ``mlops serve``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pipelines import metrics as m
from pipelines.observability import rules

DATASOURCE_UID = "prometheus"
"""The kube-prometheus-stack's Prometheus datasource uid."""
DASHBOARD_LABEL = ("grafana_dashboard", "1")
"""The label Grafana's dashboard sidecar watches ConfigMaps for (the chart's default)."""


@dataclass(frozen=True)
class PanelSpec:
    """One panel: what it shows and how."""

    title: str
    queries: tuple[tuple[str, str], ...]
    """(PromQL, legend) pairs."""
    unit: str = "short"
    kind: str = "timeseries"
    """``timeseries`` or ``stat``."""


def _by(labels: str, expr: str) -> str:
    return f"sum by ({labels}) ({expr})"


def _quantile(q: float, labels: str, expr: str) -> str:
    return f"histogram_quantile({q}, {_by(labels, expr)})"


AVAILABILITY_BUDGET = round(1 - rules.AVAILABILITY_OBJECTIVE, 6)


STEP_BUCKETS = m.STEP_DURATION.series("_bucket")
LATENCY_BUCKETS = m.REQUEST_DURATION.series("_bucket")

PANELS: dict[str, tuple[PanelSpec, ...]] = {
    "pipelines": (
        PanelSpec(
            "Runs by status (1 d)",
            (
                (
                    _by("pipeline, status", f"increase({m.WORKFLOW_RESULT.name}[1d])"),
                    "{{pipeline}} {{status}}",
                ),
            ),
        ),
        PanelSpec(
            "Step results (1 d)",
            (
                (
                    _by("pipeline, step, status", f"increase({m.STEP_RESULT.name}[1d])"),
                    "{{pipeline}}/{{step}} {{status}}",
                ),
            ),
        ),
        PanelSpec(
            "Step duration p90 (1 d)",
            (
                (
                    _quantile(0.9, "le, pipeline, step", f"rate({STEP_BUCKETS}[1d])"),
                    "{{pipeline}}/{{step}}",
                ),
            ),
            unit="s",
        ),
        PanelSpec(
            "Run duration",
            ((f"max by (pipeline) ({m.WORKFLOW_DURATION.name})", "{{pipeline}}"),),
            unit="s",
        ),
        PanelSpec(
            "Retries of the last run, per step",
            ((f"max by (pipeline, step) ({m.STEP_RETRIES.name})", "{{pipeline}}/{{step}}"),),
        ),
        PanelSpec(
            "Rows in / out per step",
            (
                (
                    f"max by (pipeline, step, direction) ({m.STEP_ROWS.name})",
                    "{{pipeline}}/{{step}} {{direction}}",
                ),
            ),
        ),
        PanelSpec(
            "Quarantine share",
            ((f"max by (pipeline) ({m.QUARANTINE_SHARE.name})", "{{pipeline}}"),),
            unit="percentunit",
        ),
    ),
    "serving": (
        PanelSpec(
            "Requests by endpoint and status",
            (
                (
                    _by("endpoint, http_response_code", f"rate({m.REQUESTS.name}[5m])"),
                    "{{endpoint}} {{http_response_code}}",
                ),
            ),
            unit="reqps",
        ),
        PanelSpec(
            "5xx ratio of /predict* (SLO budget: 0.5%)",
            (
                ("mlops:serving_errors:ratio_rate5m", "5 min"),
                ("mlops:serving_errors:ratio_rate1h", "1 h"),
            ),
            unit="percentunit",
        ),
        PanelSpec(
            f"Latency p50 / p99 (SLO: p99 under {rules.LATENCY_SECONDS} s)",
            tuple(
                (
                    _quantile(q, "le, endpoint", f"rate({LATENCY_BUCKETS}[5m])"),
                    f"p{int(q * 100)} {{{{endpoint}}}}",
                )
                for q in (0.5, 0.99)
            ),
            unit="s",
        ),
        PanelSpec(
            "Error budget burn rate (1 h)",
            (
                (
                    f"mlops:serving_errors:ratio_rate1h / {AVAILABILITY_BUDGET}",
                    "availability",
                ),
                (
                    f"mlops:serving_slow:ratio_rate1h / {round(1 - rules.LATENCY_OBJECTIVE, 6)}",
                    "latency",
                ),
            ),
        ),
        PanelSpec(
            "Rows scored by model version",
            (
                (
                    _by("model_version, endpoint", f"rate({m.PREDICTED_ROWS.name}[5m])"),
                    "v{{model_version}} {{endpoint}}",
                ),
            ),
            unit="rowsps",
        ),
        PanelSpec(
            "Inference log lag",
            ((f"max by (model_version) ({m.INFERENCE_LOG_LAG.name})", "v{{model_version}}"),),
            unit="s",
        ),
        PanelSpec(
            "Inference log: dropped rows and failed writes (1 h)",
            (
                (
                    _by("model_version", f"increase({m.INFERENCE_LOG_DROPPED.name}[1h])"),
                    "dropped v{{model_version}}",
                ),
                (
                    _by("model_version", f"increase({m.INFERENCE_LOG_FAILURES.name}[1h])"),
                    "failed writes v{{model_version}}",
                ),
            ),
        ),
        PanelSpec(
            "Served model",
            (
                (
                    f"max by (model_name, model_version) ({m.SERVING_MODEL.name})",
                    "{{model_name}} v{{model_version}}",
                ),
            ),
            kind="stat",
        ),
    ),
    "models": (
        PanelSpec(
            "Champion version",
            ((f"max by (model) ({m.CHAMPION_VERSION.name})", "{{model}}"),),
            kind="stat",
        ),
        PanelSpec(
            "Hours since the last training run reached its gate",
            ((f"(time() - max({m.TRAINING_LAST_SUCCESS.name})) / 3600", "hours"),),
            unit="h",
            kind="stat",
        ),
        PanelSpec(
            "Decisions by outcome (1 d)",
            (
                (
                    _by("kind, decision", f"increase({m.DECISIONS.name}[1d])"),
                    "{{kind}} {{decision}}",
                ),
            ),
        ),
        PanelSpec(
            "Decisions in the ledger",
            ((_by("kind, decision", m.DECISIONS.name), "{{kind}} {{decision}}"),),
            kind="stat",
        ),
        PanelSpec(
            "Drift share against the gate's limit",
            (
                (f"max by (kind) ({m.DRIFT_SHARE.name})", "drift share ({{kind}})"),
                (f"max by (kind) ({m.DRIFT_SHARE_LIMIT.name})", "limit ({{kind}})"),
            ),
            unit="percentunit",
        ),
        PanelSpec(
            "Live ROC-AUC per monitor window against the floor",
            (
                (f"max by (window) ({m.LIVE_ROC_AUC.name})", "window {{window}} (0 = latest)"),
                (f"max({m.LIVE_ROC_AUC_FLOOR.name})", "floor"),
            ),
        ),
    ),
}
"""Every panel of every dashboard."""

TITLES = {"pipelines": "MLOps: pipelines", "serving": "MLOps: serving", "models": "MLOps: models"}


def dashboard(name: str) -> dict[str, Any]:
    """The dashboard JSON model of `name` (a key of `PANELS`)."""
    from grafana_foundation_sdk.builders import dashboard as gd
    from grafana_foundation_sdk.builders import prometheus, stat, timeseries
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.models.dashboard import DataSourceRef

    source = DataSourceRef(type_val="prometheus", uid=DATASOURCE_UID)
    board = (
        gd.Dashboard(TITLES[name])
        .uid(f"mlops-{name}")
        .tags(["mlops"])
        .refresh("1m")
        .time("now-24h", "now")
        .timezone("utc")
    )
    for spec in PANELS[name]:
        panel: Any = stat.Panel() if spec.kind == "stat" else timeseries.Panel()
        panel = panel.title(spec.title).datasource(source).unit(spec.unit).height(8).span(12)
        for index, (expr, legend) in enumerate(spec.queries):
            panel = panel.with_target(
                prometheus.Dataquery().expr(expr).legend_format(legend).ref_id(chr(65 + index))
            )
        board = board.with_panel(panel)
    built: dict[str, Any] = json.loads(json.dumps(board.build(), cls=JSONEncoder, sort_keys=True))
    cleaned: dict[str, Any] = _without_nulls(built)
    return cleaned


def _without_nulls(node: Any) -> Any:
    """The JSON without null members (the builders leave unset options as null)."""
    if isinstance(node, dict):
        return {k: _without_nulls(v) for k, v in node.items() if v is not None}
    if isinstance(node, list):
        return [_without_nulls(v) for v in node]
    return node


def config_map(name: str, namespace: str = "monitoring") -> dict[str, Any]:
    """The ConfigMap that provisions dashboard `name` through Grafana's sidecar."""
    key, value = DASHBOARD_LABEL
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": f"mlops-dashboard-{name}",
            "namespace": namespace,
            "labels": {key: value, "app.kubernetes.io/part-of": "mlops-platform"},
        },
        "data": {f"mlops-{name}.json": json.dumps(dashboard(name), indent=2, sort_keys=True)},
    }


def queries(board: dict[str, Any]) -> list[str]:
    """Every PromQL expression of a dashboard's panels."""
    return [t["expr"] for panel in board.get("panels", []) for t in panel.get("targets", [])]
