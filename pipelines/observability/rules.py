"""The alert and recording rules, from the metric catalogue and the SLOs of docs/slo.md.

Every expression names metrics through `pipelines.metrics`; every alert carries a ``severity``
(``critical`` pages, ``warning`` goes to chat, ``info`` to a ticket: `alertmanager`) and a
``runbook_url`` annotation naming its section of docs/runbook.md. `Windows` holds every
duration, so the integration test renders the same rules with seconds instead of hours.

The expressions keep to PromQL that Prometheus 2.42 (Debian's promtool, which checks them) and
3.x (the chart's) read alike: no 3.x-only functions, and the latency SLO's bucket is ``0.5``,
a bound 2.x and 3.x spell the same (3.x normalises ``le="1.0"`` to ``"1"``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipelines import metrics as m

RUNBOOK = "docs/runbook.md"
SEVERITIES = ("critical", "warning", "info")

AVAILABILITY_OBJECTIVE = 0.995
"""Serving availability SLO: 99.5% of /predict* requests answered without a 5xx (30 days)."""
LATENCY_SECONDS = 0.5
"""Serving latency SLO threshold (a bucket bound of BentoML's request histogram)."""
LATENCY_OBJECTIVE = 0.99
"""Serving latency SLO: 99% of /predict* requests answered within `LATENCY_SECONDS`."""
ANSWERED = 'http_response_code!~"5.."'
"""The latency SLI's requests: those not answered 5xx. A 5xx spends the availability budget; a
slow answer of any other code spends the latency one — each request spends at most one budget,
and a failure (a fast 503 when BentoML sheds load, or a slow 500) never pages twice. As Google's
SRE book puts it, the latency of failed requests is tracked apart from that of successful ones
(docs/slo.md)."""
PREDICT_ENDPOINTS = "/predict|/predict_batch|/predict_klines"
"""The endpoints the serving SLOs cover: not health checks or metadata, and not the runner's
``/predict_proba`` that BentoML counts in the same families (one request would count twice)."""
ERROR_RATIO_LIMIT = 0.01
"""The 5xx ratio the plain error alert fires over."""
TRAINING_MAX_AGE_HOURS = 26
"""A training run a day, plus two hours of grace."""
SERVING_MODEL_MAX_AGE_HOURS = 8 * 24
"""In an env that does not train, the serving model's age (since it became a candidate) that
alerts: a week of candidates held back by soak, approval or rejections, plus a day."""
POD_TEMPLATE_LABEL = "rollouts_pod_template_hash"
"""The serving series' label naming the pod template a pod runs: Argo Rollouts labels each pod
``rollouts-pod-template-hash`` (the canary's differs from the stable pods'), and the serving
PodMonitor copies that pod label onto the series (``podTargetLabels``;
stacks/components/monitoring.py), spelled as Prometheus' label names must be."""
STEP_FAILURES = 3
"""Failed attempts of one step, inside `Windows.step_failures`, that alert."""


@dataclass(frozen=True)
class Windows:
    """Every duration in the rules (the defaults are production's)."""

    rate: str = "5m"
    """Range of the plain ratios (5xx, latency, dropped rows)."""
    errors_for: str = "5m"
    latency_for: str = "10m"
    step_failures: str = "1d"
    auc_for: str = "1h"
    """How long the latest judged window stays under the floor before it alerts (the monitor
    runs hourly: one more run confirms it)."""
    drift_for: str = "0m"
    stale_for: str = "15m"
    champion_changed: str = "1h"
    burn: tuple[tuple[str, str, float, str, str], ...] = (
        ("1h", "5m", 14.4, "2m", "critical"),
        ("6h", "30m", 6.0, "15m", "critical"),
        ("1d", "2h", 3.0, "1h", "warning"),
        ("3d", "6h", 1.0, "3h", "info"),
    )
    """(long window, short window, burn-rate factor, for, severity): the SRE workbook's
    multi-window, multi-burn-rate alerts for a 30-day budget."""


@dataclass(frozen=True)
class Alert:
    """One alerting rule."""

    name: str
    expr: str
    duration: str
    severity: str
    summary: str
    anchor: str
    """The heading of its section in docs/runbook.md, as a GitHub anchor."""

    def rule(self) -> dict[str, Any]:
        """The rule as Prometheus reads it."""
        return {
            "alert": self.name,
            "expr": self.expr,
            "for": self.duration,
            "labels": {"severity": self.severity, "team": "mlops"},
            "annotations": {"summary": self.summary, "runbook_url": f"{RUNBOOK}#{self.anchor}"},
        }


def _ratio_name(kind: str, window: str) -> str:
    return f"mlops:serving_{kind}:ratio_rate{window}"


def template_ratio_name(kind: str, window: str) -> str:
    """The recorded ratio (``errors`` or ``slow``) per pod template, over `window`."""
    return f"mlops:serving_{kind}_per_template:ratio_rate{window}"


def _predict(extra: str = "") -> str:
    return "{" + f'endpoint=~"{PREDICT_ENDPOINTS}"' + (f",{extra}" if extra else "") + "}"


def recording_rules(windows: Windows) -> list[dict[str, Any]]:
    """The SLIs per window: the share of /predict* requests that failed (5xx), and the share
    of those not failed that were slow."""
    requests, duration = m.REQUESTS.name, m.REQUEST_DURATION
    spans = sorted({windows.rate, *(w for b in windows.burn for w in b[:2])})
    rules = []
    for span in spans:
        failed = _predict('http_response_code=~"5.."')
        errors = (
            f"sum(rate({requests}{failed}[{span}])) / sum(rate({requests}{_predict()}[{span}]))"
        )
        fast = duration.series("_bucket") + _predict(f'{ANSWERED},le="{LATENCY_SECONDS}"')
        slow = (
            f"1 - sum(rate({fast}[{span}]))"
            f" / sum(rate({duration.series('_count')}{_predict(ANSWERED)}[{span}]))"
        )
        rules += [
            {"record": _ratio_name("errors", span), "expr": errors},
            {"record": _ratio_name("slow", span), "expr": slow},
        ]
    return rules + template_rules(windows.rate)


def template_rules(span: str) -> list[dict[str, Any]]:
    """The two SLIs per pod template (`POD_TEMPLATE_LABEL`) over `span`: what a canary's own
    pods answer, which the service-wide ratios dilute with the stable pods' traffic (a canary
    failing 10% of its quarter of the requests is 2.5% overall). The serving canary's analysis
    reads them for the canary's template (platform/base/serving/analysistemplate.yaml); the SLO
    alerts stay service-wide.

    A template that answered requests and no 5xx has a 0 error ratio, not none: BentoML creates
    a status code's series at its first request, so a healthy canary has no 5xx series at all,
    and an absent ratio would leave its analysis inconclusive. No request at all stays no ratio.
    """
    requests, duration = m.REQUESTS.name, m.REQUEST_DURATION
    by = f"sum by ({POD_TEMPLATE_LABEL})"
    served = f"{by} (rate({requests}{_predict()}[{span}]))"
    five_xx = _predict('http_response_code=~"5.."')
    failed = f"{by} (rate({requests}{five_xx}[{span}]))"
    fast = duration.series("_bucket") + _predict(f'{ANSWERED},le="{LATENCY_SECONDS}"')
    answered = f"{by} (rate({duration.series('_count')}{_predict(ANSWERED)}[{span}]))"
    return [
        {
            "record": template_ratio_name("errors", span),
            "expr": f"({failed} or 0 * {served}) / {served}",
        },
        {
            "record": template_ratio_name("slow", span),
            # a histogram's buckets appear with its count: the fast bucket is there when any is
            "expr": f"1 - {by} (rate({fast}[{span}])) / {answered}",
        },
    ]


def burn_alerts(windows: Windows) -> list[Alert]:
    """Multi-window burn-rate alerts of the two serving SLOs."""
    found = []
    for kind, objective, title in (
        ("errors", AVAILABILITY_OBJECTIVE, "Availability"),
        ("slow", LATENCY_OBJECTIVE, "Latency"),
    ):
        budget = round(1 - objective, 6)
        for long, short, factor, duration, severity in windows.burn:
            limit = round(factor * budget, 6)
            found.append(
                Alert(
                    name=f"MlopsServing{title}BudgetBurn{long.title()}",
                    expr=(
                        f"{_ratio_name(kind, long)} > {limit}"
                        f" and {_ratio_name(kind, short)} > {limit}"
                    ),
                    duration=duration,
                    severity=severity,
                    summary=(
                        f"Serving {title.lower()} error budget burning {factor}x too fast "
                        f"over {long} and {short}"
                    ),
                    anchor="serving-error-budget-burn",
                )
            )
    return found


def alerts(windows: Windows) -> list[Alert]:
    """Every alert, from the metric catalogue (issue 16's list, then the burn-rate ones)."""
    w = windows
    p99 = (
        f"histogram_quantile(0.99, sum by (le) (rate("
        f"{m.REQUEST_DURATION.series('_bucket')}{_predict(ANSWERED)}[{w.rate}])))"
    )
    failed = m.STEP_RESULT.name + '{status=~"Failed|Error"}'
    listed = [
        Alert(
            "MlopsTrainingStale",
            f"time() - max({m.TRAINING_LAST_SUCCESS.name}) > {TRAINING_MAX_AGE_HOURS * 3600}",
            w.stale_for,
            "warning",
            f"No training run has reached its gate in {TRAINING_MAX_AGE_HOURS} h",
            "mlopstrainingstale",
        ),
        Alert(
            "MlopsServingModelStale",
            # only where no training is recorded (an env that serves candidates: MLOPS_TRAINS)
            f"time() - max({m.SERVING_MODEL_CREATED.name}) > {SERVING_MODEL_MAX_AGE_HOURS * 3600}"
            f" unless on() max({m.TRAINING_LAST_SUCCESS.name})",
            w.stale_for,
            "warning",
            f"The serving model became a candidate over {SERVING_MODEL_MAX_AGE_HOURS} h ago and "
            "this env does not train",
            "mlopsservingmodelstale",
        ),
        Alert(
            "MlopsStepFailing",
            f"sum by (pipeline, step) (increase({failed}[{w.step_failures}])) >= {STEP_FAILURES}",
            "0m",
            "warning",
            f"Step {{{{ $labels.pipeline }}}}/{{{{ $labels.step }}}} failed {STEP_FAILURES} "
            f"times or more in {w.step_failures}",
            "mlopsstepfailing",
        ),
        Alert(
            "MlopsDriftOverLimit",
            f"max by (kind) ({m.DRIFT_SHARE.name}) >= max by (kind) ({m.DRIFT_SHARE_LIMIT.name})",
            w.drift_for,
            "warning",
            "Drift share of the latest {{ $labels.kind }} at or over the gate's limit",
            "mlopsdriftoverlimit",
        ),
        Alert(
            "MlopsLiveAucBelowFloor",
            f'max({m.LIVE_ROC_AUC.name}{{window="0"}}) < max({m.LIVE_ROC_AUC_FLOOR.name})',
            w.auc_for,
            "critical",
            "Live ROC-AUC of the champion under the monitor's floor in the latest window",
            "mlopsliveaucbelowfloor",
        ),
        Alert(
            "MlopsServingErrors",
            f"{_ratio_name('errors', w.rate)} > {ERROR_RATIO_LIMIT}",
            w.errors_for,
            "critical",
            f"More than {ERROR_RATIO_LIMIT:.0%} of /predict requests answered 5xx",
            "mlopsservingerrors",
        ),
        Alert(
            "MlopsServingLatencyP99",
            f"{p99} > {LATENCY_SECONDS}",
            w.latency_for,
            "warning",
            f"p99 latency of /predict over the SLO's {LATENCY_SECONDS} s",
            "mlopsservinglatencyp99",
        ),
        Alert(
            "MlopsInferenceLogDropping",
            f"sum by (model_version) (increase({m.INFERENCE_LOG_DROPPED.name}[{w.rate}])) > 0",
            "0m",
            "warning",
            "The inference log dropped predictions of version {{ $labels.model_version }}",
            "mlopsinferencelogdropping",
        ),
        Alert(
            "MlopsChampionChanged",
            f"changes({m.CHAMPION_VERSION.name}[{w.champion_changed}]) > 0",
            "0m",
            "info",
            "The champion of {{ $labels.model }} changed (promotion or rollback)",
            "mlopschampionchanged",
        ),
    ]
    return listed + burn_alerts(windows)


def rule_groups(windows: Windows | None = None) -> dict[str, Any]:
    """The rule file (``groups:``), as ``promtool`` and a PrometheusRule's spec take it."""
    chosen = windows or Windows()
    # One group: its rules run in order, so each evaluation's alerts read the SLIs recorded at
    # that same evaluation (two groups run independently, and an alert could read a stale one).
    rules = recording_rules(chosen) + [a.rule() for a in alerts(chosen)]
    return {"groups": [{"name": "mlops", "rules": rules}]}


def prometheus_rule(namespace: str = "monitoring") -> dict[str, Any]:
    """The PrometheusRule the stack applies (the chart's Prometheus selects every rule)."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "mlops",
            "namespace": namespace,
            "labels": {"app.kubernetes.io/part-of": "mlops-platform"},
        },
        "spec": rule_groups(),
    }
