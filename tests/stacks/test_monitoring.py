"""The monitoring stack: what the plan deploys, and that it deploys the generated files."""

from __future__ import annotations

import re
from typing import Any

import pytest

from pipelines.observability.render import documents
from pipelines.observability.rules import POD_TEMPLATE_LABEL
from stacks.components.monitoring import (
    MONITORING_NAMESPACE,
    PUSHGATEWAY_URL,
    ROLLOUTS_POD_TEMPLATE_LABEL,
    kube_prometheus_stack_values,
)
from stacks.config import load_stack_config
from tests.conftest import StackPlans
from tests.support.charts import concrete, planned_charts

ENVS = ("dev", "staging", "prod")


def manifests(plans: StackPlans, env: str, token: str) -> list[dict[str, Any]]:
    return [dict(concrete(r.inputs)) for r in plans[env].resources if r.type == token]


@pytest.mark.parametrize("env", ENVS)
def test_the_stack_applies_the_generated_rules_and_dashboards(plans: StackPlans, env: str) -> None:
    rules = manifests(plans, env, "kubernetes:monitoring.coreos.com/v1:PrometheusRule")
    generated_names = {name.split("/")[-1].removesuffix(".yaml") for name in documents()}
    assert [r["metadata"]["name"] for r in rules] == ["mlops"]
    maps = {
        m["metadata"]["name"]
        for m in manifests(plans, env, "kubernetes:core/v1:ConfigMap")
        if m["metadata"].get("labels", {}).get("grafana_dashboard") == "1"
    }
    assert maps == {f"mlops-dashboard-{n.removeprefix('mlops-')}" for n in generated_names} - {
        "mlops-dashboard-prometheus-rule"
    }


@pytest.mark.parametrize("env", ENVS)
def test_monitoring_runs_restricted_without_node_exporter(plans: StackPlans, env: str) -> None:
    namespaces = {
        n["metadata"]["name"]: n["metadata"]["labels"]
        for n in manifests(plans, env, "kubernetes:core/v1:Namespace")
    }
    assert namespaces[MONITORING_NAMESPACE]["pod-security.kubernetes.io/enforce"] == "restricted"
    values = planned_charts(plans[env])["kube-prometheus-stack"].values
    assert values["nodeExporter"]["enabled"] is False  # it needs host access
    assert values["alertmanager"]["alertmanagerSpec"]["secrets"] == ["alertmanager-receivers"]
    assert "adminPassword" not in values["grafana"]  # never the chart's default password


@pytest.mark.parametrize("env", ENVS)
def test_the_pipeline_pods_push_to_the_stacks_pushgateway(env: str) -> None:
    settings = load_stack_config(env).workflows.settings
    assert settings["MLOPS_METRICS_PUSHGATEWAY"] == PUSHGATEWAY_URL


def test_no_receiver_credential_is_in_the_chart_values() -> None:
    text = repr(kube_prometheus_stack_values("dev"))
    for receiver in kube_prometheus_stack_values("dev")["alertmanager"]["config"]["receivers"]:
        for key in ("pagerduty_configs", "slack_configs", "webhook_configs"):
            for config in receiver.get(key, []):
                assert not {"routing_key", "api_url", "service_key"} & set(config), config
    assert "hooks.slack.com" not in text


def template_label_problems(monitors: list[dict[str, Any]]) -> list[str]:
    """The serving PodMonitor copies the pods' template hash onto their series under the label
    the per-template recording rules group by (prometheus-operator spells a pod label as a
    label name by replacing every character outside [a-zA-Z0-9_] with ``_``)."""
    (serving,) = [p for p in monitors if p["metadata"]["name"] == "market-direction"]
    copied = serving["spec"].get("podTargetLabels") or []
    names = {re.sub(r"[^a-zA-Z0-9_]", "_", label) for label in copied}
    if ROLLOUTS_POD_TEMPLATE_LABEL not in copied or POD_TEMPLATE_LABEL not in names:
        return [f"podTargetLabels {copied} give no {POD_TEMPLATE_LABEL}: canaries look stable"]
    return []


@pytest.mark.parametrize("env", ENVS)
def test_the_serving_series_carry_the_pod_template(plans: StackPlans, env: str) -> None:
    monitors = manifests(plans, env, "kubernetes:monitoring.coreos.com/v1:PodMonitor")
    assert template_label_problems(monitors) == []
    for monitor in monitors:
        monitor["spec"].pop("podTargetLabels", None)
    assert "canaries look stable" in template_label_problems(monitors)[0]
