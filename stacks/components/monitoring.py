"""Monitoring on the cluster: kube-prometheus-stack (Prometheus, Alertmanager, Grafana, the
operator, kube-state-metrics), the Pushgateway the pipeline pods push to, and the generated
alert rules and dashboards of ``platform/monitoring/`` (`mlops monitoring render`).

Pod Security: the ``monitoring`` namespace enforces ``restricted`` like every other namespace.
node-exporter needs the host's network, PID namespace and filesystem, which no restricted pod
may have, so it is off (``nodeExporter.enabled: false``); node and container figures come from
the kubelet and its cAdvisor endpoint, which the chart's kubelet ServiceMonitor scrapes (EKS
exposes them through the API server), and the nodes' own OS metrics from CloudWatch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import yaml

from pipelines.observability.alertmanager import RECEIVER_SECRET, alertmanager_config
from stacks.components.serving import (
    SERVING_NAMESPACE,
    SERVING_POD_LABELS,
    SERVING_PORT,
    serving_ingress_policy,
)
from stacks.config import PlatformConfig

MONITORING_NAMESPACE = "monitoring"
PROMETHEUS_COMMUNITY = "https://prometheus-community.github.io/helm-charts"
GENERATED = Path(__file__).resolve().parents[2] / "platform" / "monitoring"
"""The generated PrometheusRule and dashboard ConfigMaps (staleness-tested)."""
PUSHGATEWAY_URL = f"http://prometheus-pushgateway.{MONITORING_NAMESPACE}.svc:9091"
"""Where the pipeline pods push (``MLOPS_METRICS_PUSHGATEWAY`` in each env's settings)."""
PIPELINE_NAMESPACE = "mlops"
PROMETHEUS_URL = f"http://kube-prometheus-stack-prometheus.{MONITORING_NAMESPACE}.svc:9090"
"""The Prometheus the chart installs (Service ``<release>-prometheus``, port
``prometheus.service.port``): what the serving canary's analysis queries
(platform/base/serving/analysistemplate.yaml)."""
ROLLOUTS_POD_TEMPLATE_LABEL = "rollouts-pod-template-hash"
"""The pod label Argo Rollouts gives each serving pod (its ReplicaSet's template hash): the
serving PodMonitor copies it onto every series it scrapes, so the recording rules can tell a
canary's pods from the stable ones (`pipelines.observability.rules.POD_TEMPLATE_LABEL`)."""
RESTRICTED_CONTAINER = {
    "runAsNonRoot": True,
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}
RESTRICTED_POD = {
    "runAsNonRoot": True,
    "runAsUser": 65534,
    "runAsGroup": 65534,
    "fsGroup": 65534,
    "seccompProfile": {"type": "RuntimeDefault"},
}


def kube_prometheus_stack_values(env: str) -> dict[str, Any]:
    """Values of the kube-prometheus-stack chart (``kubePrometheusStackChartVersion``)."""
    every_namespace = {
        "ruleSelectorNilUsesHelmValues": False,
        "serviceMonitorSelectorNilUsesHelmValues": False,
        "podMonitorSelectorNilUsesHelmValues": False,
    }
    return {
        "nodeExporter": {"enabled": False},  # host access: not in a restricted namespace
        "windowsMonitoring": {"enabled": False},
        "defaultRules": {"rules": {"node": False}},  # their series came from node-exporter
        "prometheus": {
            "prometheusSpec": {
                **every_namespace,
                "retention": "15d",
                "externalLabels": {"env": env},
                "securityContext": RESTRICTED_POD,
            }
        },
        "alertmanager": {
            "config": alertmanager_config(),
            "alertmanagerSpec": {"secrets": [RECEIVER_SECRET], "securityContext": RESTRICTED_POD},
        },
        "grafana": {
            # the admin password: Secret grafana-admin (keys admin-user, admin-password), made
            # by the operators; never the chart's default
            "admin": {"existingSecret": "grafana-admin"},
            "sidecar": {"dashboards": {"enabled": True, "label": "grafana_dashboard"}},
        },
        "prometheusOperator": {"securityContext": RESTRICTED_POD},
    }


def pushgateway_values() -> dict[str, Any]:
    """Values of the prometheus-pushgateway chart (``pushgatewayChartVersion``)."""
    return {
        # Prometheus keeps the pushed job/pipeline/step labels instead of its own
        "serviceMonitor": {"enabled": True, "honorLabels": True},
        "securityContext": RESTRICTED_POD,
        "containerSecurityContext": RESTRICTED_CONTAINER,
        # pushes survive a restart of the gateway
        "persistentVolume": {"enabled": True, "size": "1Gi"},
    }


def generated_manifests() -> list[dict[str, Any]]:
    """The PrometheusRule and dashboard ConfigMaps of ``platform/monitoring/``."""
    return [yaml.safe_load(p.read_text()) for p in sorted(GENERATED.rglob("*.yaml"))]


@dataclass(frozen=True)
class MonitoringArgs:
    """Inputs of `Monitoring`."""

    config: PlatformConfig
    env: str
    provider: k8s.Provider
    labels: dict[str, str]


class Monitoring(pulumi.ComponentResource):
    """kube-prometheus-stack, the Pushgateway, the rules and dashboards, and the policies that
    let Prometheus reach the serving pods and the pipeline pods reach the Pushgateway."""

    def __init__(
        self, name: str, args: MonitoringArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        """Register the monitoring stack through `args.provider`."""
        super().__init__("mlops:cluster:Monitoring", name, None, opts)
        labels = args.labels
        namespace = k8s.core.v1.Namespace(
            f"{name}-ns",
            metadata={
                "name": MONITORING_NAMESPACE,
                "labels": {**labels, "pod-security.kubernetes.io/enforce": "restricted"},
            },
            opts=pulumi.ResourceOptions(parent=self, provider=args.provider),
        )
        in_ns = pulumi.ResourceOptions(parent=self, provider=args.provider, depends_on=[namespace])
        stack = k8s.helm.v4.Chart(
            f"{name}-kube-prometheus-stack",
            name="kube-prometheus-stack",
            chart="kube-prometheus-stack",
            version=args.config.kube_prometheus_stack_chart_version,
            namespace=MONITORING_NAMESPACE,
            repository_opts={"repo": PROMETHEUS_COMMUNITY},
            values=kube_prometheus_stack_values(args.env),
            opts=in_ns,
        )
        k8s.helm.v4.Chart(
            f"{name}-pushgateway",
            name="prometheus-pushgateway",
            chart="prometheus-pushgateway",
            version=args.config.pushgateway_chart_version,
            namespace=MONITORING_NAMESPACE,
            repository_opts={"repo": PROMETHEUS_COMMUNITY},
            values=pushgateway_values(),
            opts=pulumi.ResourceOptions.merge(in_ns, pulumi.ResourceOptions(depends_on=[stack])),
        )
        after_crds = pulumi.ResourceOptions.merge(
            in_ns, pulumi.ResourceOptions(depends_on=[namespace, stack])
        )
        for manifest in generated_manifests():
            meta = manifest["metadata"]
            if manifest["kind"] == "ConfigMap":
                k8s.core.v1.ConfigMap(
                    f"{name}-{meta['name']}", metadata=meta, data=manifest["data"], opts=in_ns
                )
            else:
                k8s.apiextensions.CustomResource(
                    f"{name}-{meta['name']}-rules",
                    api_version=manifest["apiVersion"],
                    kind=manifest["kind"],
                    metadata=meta,
                    spec=manifest["spec"],
                    opts=after_crds,
                )
        k8s.apiextensions.CustomResource(
            f"{name}-serving-monitor",
            api_version="monitoring.coreos.com/v1",
            kind="PodMonitor",
            metadata={"name": "market-direction", "namespace": SERVING_NAMESPACE, "labels": labels},
            spec={
                "selector": {"matchLabels": dict(SERVING_POD_LABELS)},
                "podMetricsEndpoints": [{"portNumber": SERVING_PORT, "path": "/metrics"}],
                "podTargetLabels": [ROLLOUTS_POD_TEMPLATE_LABEL],
            },
            opts=after_crds,
        )
        serving_ingress_policy(
            name,
            "prometheus",
            [_namespace_peer(MONITORING_NAMESPACE, "prometheus")],
            labels,
            pulumi.ResourceOptions(parent=self, provider=args.provider),
        )
        k8s.networking.v1.NetworkPolicy(
            f"{name}-pushgateway-ingress",
            metadata={
                "name": "pushgateway-from-pipelines-and-prometheus",
                "namespace": MONITORING_NAMESPACE,
                "labels": labels,
            },
            spec={
                "podSelector": {
                    "matchLabels": {"app.kubernetes.io/name": "prometheus-pushgateway"}
                },
                "policyTypes": ["Ingress"],
                "ingress": [
                    {
                        "from": [
                            {"namespaceSelector": _named(PIPELINE_NAMESPACE)},
                            _namespace_peer(MONITORING_NAMESPACE, "prometheus"),
                        ],
                        "ports": [{"protocol": "TCP", "port": 9091}],
                    }
                ],
            },
            opts=in_ns,
        )
        self.register_outputs({"pushgateway_url": PUSHGATEWAY_URL})


def _named(namespace: str) -> dict[str, Any]:
    return {"matchLabels": {"kubernetes.io/metadata.name": namespace}}


def _namespace_peer(namespace: str, app: str) -> dict[str, Any]:
    return {
        "namespaceSelector": _named(namespace),
        "podSelector": {"matchLabels": {"app.kubernetes.io/name": app}},
    }
