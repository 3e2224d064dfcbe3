"""Progressive delivery on the cluster: the Argo Rollouts controller (Helm, argo-helm's
argo-rollouts chart, pinned) and what the serving canary's analysis Job needs in the pipeline
namespace.

The serving Rollout and its AnalysisTemplate are GitOps content (platform/base/serving: ArgoCD
syncs them into ``serving``). Their analysis Job runs the pipeline image as the pipeline service
account (IRSA: it reads the inference log and the registry), which lives in the pipeline
namespace, so the controller creates analysis Jobs there (``ARGO_ROLLOUTS_ANALYSIS_JOB_NAMESPACE``,
argo-rollouts' metricproviders/metricproviders.go) and the Job reads its settings from the
ConfigMap made here from the monitor CronWorkflow's own environment: one source for both.

Pod Security: ``argo-rollouts`` enforces ``restricted`` like every other namespace; the chart's
defaults are restricted already; the values spell them out so a chart upgrade cannot loosen them
unnoticed. Traffic routers are not used
(replica-weighted canary, platform/base/serving/rollout.yaml), so the chart's provider RBAC
(Istio, SMI, ALB, Gateway API… objects cluster-wide) and the dashboard are off.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from stacks.config import PlatformConfig

ARGO_HELM = "https://argoproj.github.io/argo-helm"
ROLLOUTS_NAMESPACE = "argo-rollouts"
JOB_NAMESPACE_ENV = "ARGO_ROLLOUTS_ANALYSIS_JOB_NAMESPACE"
ANALYSIS_ENV_CONFIGMAP = "canary-analysis-env"
"""The settings of the analysis Job (platform/base/serving/analysistemplate.yaml ``envFrom``)."""
MONITOR_PIPELINE = "monitor"
GITOPS_SETTINGS = "MLOPS_GITOPS_"
RESTRICTED_POD = {"runAsNonRoot": True}
"""The pod level (seccomp is set per container, `RESTRICTED_CONTAINER`)."""
RESTRICTED_CONTAINER = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def rollouts_values(job_namespace: str) -> dict[str, Any]:
    """Values of the argo-rollouts chart (``PlatformConfig.argo_rollouts_chart_version``):
    analysis Jobs go to `job_namespace` (the pipeline namespace)."""
    return {
        # plain templates (no hook): helm.v4.Chart installs them; kept on uninstall
        "installCRDs": True,
        "keepCRDs": True,
        "controller": {
            "replicas": 2,  # leader election: one works, one waits
            "extraEnv": [{"name": JOB_NAMESPACE_ENV, "value": job_namespace}],
            "metrics": {"enabled": True, "serviceMonitor": {"enabled": True}},
            "resources": {
                "requests": {"cpu": "50m", "memory": "128Mi"},
                "limits": {"cpu": "500m", "memory": "512Mi"},
            },
        },
        "podSecurityContext": RESTRICTED_POD,
        "containerSecurityContext": RESTRICTED_CONTAINER,
        "providerRBAC": {"enabled": False},
        "dashboard": {"enabled": False},
    }


def analysis_env(cron_workflows: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """The settings every step of the monitor CronWorkflow runs with (the ``env`` its step
    containers share: storage, registry, env, thresholds), which the canary analysis needs too.
    A setting only one step has (the GitOps push credential's file) is left out, and so is every
    GitOps setting: the analysis commits nothing.

    Raises:
        ValueError: there is not exactly one monitor CronWorkflow.
    """
    monitors = [
        c
        for c in cron_workflows
        if c["metadata"].get("labels", {}).get("mlops/pipeline") == MONITOR_PIPELINE
    ]
    if len(monitors) != 1:
        raise ValueError(f"expected one {MONITOR_PIPELINE} CronWorkflow, got {len(monitors)}")
    steps = [
        {e["name"]: e["value"] for e in t["container"].get("env") or [] if "value" in e}
        for t in monitors[0]["spec"]["workflowSpec"]["templates"]
        if "container" in t
    ]
    shared = dict(steps[0]) if steps else {}
    for step in steps[1:]:
        shared = {k: v for k, v in shared.items() if step.get(k) == v}
    return {k: v for k, v in shared.items() if not k.startswith(GITOPS_SETTINGS)}


@dataclass(frozen=True)
class RolloutsArgs:
    """Inputs of `Rollouts`."""

    config: PlatformConfig
    provider: k8s.Provider
    labels: dict[str, str]
    job_namespace: str
    """The pipeline namespace (``workflows.namespace``), where its service account lives."""
    cron_workflows: Sequence[Mapping[str, Any]]
    """The rendered CronWorkflows (the monitor's environment becomes the analysis Job's)."""


class Rollouts(pulumi.ComponentResource):
    """The Argo Rollouts controller and the analysis Job's settings."""

    def __init__(
        self, name: str, args: RolloutsArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        """Register the controller and the ConfigMap through `args.provider`."""
        super().__init__("mlops:cluster:Rollouts", name, None, opts)
        namespace = k8s.core.v1.Namespace(
            f"{name}-ns",
            metadata={
                "name": ROLLOUTS_NAMESPACE,
                "labels": {**args.labels, "pod-security.kubernetes.io/enforce": "restricted"},
            },
            opts=pulumi.ResourceOptions(parent=self, provider=args.provider),
        )
        k8s.helm.v4.Chart(
            f"{name}-argo-rollouts",
            name="argo-rollouts",
            chart="argo-rollouts",
            version=args.config.argo_rollouts_chart_version,
            namespace=ROLLOUTS_NAMESPACE,
            repository_opts={"repo": ARGO_HELM},
            values=rollouts_values(args.job_namespace),
            opts=pulumi.ResourceOptions(
                parent=self, provider=args.provider, depends_on=[namespace]
            ),
        )
        k8s.core.v1.ConfigMap(
            f"{name}-analysis-env",
            metadata={
                "name": ANALYSIS_ENV_CONFIGMAP,
                "namespace": args.job_namespace,
                "labels": args.labels,
            },
            data=analysis_env(args.cron_workflows),
            opts=pulumi.ResourceOptions(parent=self, provider=args.provider),
        )
        self.register_outputs({"rollouts_namespace": ROLLOUTS_NAMESPACE})
