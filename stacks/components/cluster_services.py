"""What runs on the cluster: namespaces, IRSA service accounts, ArgoCD and Argo Workflows (Helm),
the MLflow server (RDS backend, S3 artifacts), the ArgoCD root Application (GitOps) and the
pipelines' CronWorkflows."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s
import pulumi_random as random

from stacks.components.gitops_repo import gitops_repository_secret
from stacks.components.identity import ARGO_LOG_PREFIX, ServiceAccount
from stacks.components.mlflow import MLFLOW_PORT, MlflowArgs, mlflow_server
from stacks.components.serving import SERVING_NAMESPACE, serving_load_balancer_policy
from stacks.config import PlatformConfig

ARGO_HELM = "https://argoproj.github.io/argo-helm"
RETRAIN_ROLE = "mlops-pipeline-retrain"
"""The Role that lets the monitor start a training run (`pipelines.decisions.retrain`)."""
NAMESPACES = ("argocd", "argo", "mlflow", "mlops", "serving")


@dataclass(frozen=True)
class ClusterServicesArgs:
    """Inputs of `ClusterServices`."""

    config: PlatformConfig
    env: str
    provider: k8s.Provider
    service_accounts: Mapping[str, ServiceAccount]
    role_arns: Mapping[str, pulumi.Output[str]]
    artifacts_bucket: pulumi.Input[str]
    mlflow_image: pulumi.Input[str]
    """The MLflow server image (``PlatformConfig.mlflow_image`` or the stack's own)."""
    mlflow_backend_uri: pulumi.Output[str]
    cron_workflows: Sequence[dict[str, Any]]
    """Rendered CronWorkflow manifests (pipelines.orchestration.argo.render)."""
    labels: dict[str, str]
    load_balancer_cidrs: Sequence[str] = ()
    """The public subnets' CIDRs: where the serving ALB's interfaces live (the only source the
    serving pods admit, `stacks.components.serving`)."""


def argocd_values(env: str) -> dict[str, Any]:
    """Values of the argo-cd chart (``PlatformConfig.argocd_chart_version``)."""
    return {
        "global": {"domain": f"argocd.{env}.internal"},
        # free-form, copied into argocd-cmd-params-cm; false (TLS on argocd-server) is the default
        "configs": {"params": {"server.insecure": False}},
        "controller": {"metrics": {"enabled": True}},
        "server": {"metrics": {"enabled": True}},
        # Secret argocd-redis (key `auth`) is made by a pre-install hook Job, and helm.v4.Chart
        # never runs hooks: redis, the server, repo-server and controller would never start.
        # ClusterServices creates the Secret instead.
        "redisSecretInit": {"enabled": False},
    }


def argo_workflows_values(
    config: PlatformConfig,
    pipeline: ServiceAccount,
    artifacts_bucket: pulumi.Input[str],
    region: pulumi.Input[str],
) -> dict[str, Any]:
    """Values of the argo-workflows chart (``config.argo_workflows_chart_version``).

    `pipeline` is the service account the CronWorkflows run as (with its IRSA role): the chart
    binds its workflow Role (workflowtaskresults create/patch, what the executor needs) to it.
    """
    restricted_pod = {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
    server: dict[str, Any] = {
        "authModes": list(config.argo_server_auth_modes),
        "podSecurityContext": restricted_pod,
    }
    if config.argo_sso is not None:
        sso = config.argo_sso
        server["sso"] = {
            "enabled": True,
            "issuer": sso.issuer,
            "redirectUrl": sso.redirect_url,
            "clientId": {"name": sso.client_secret_name, "key": "client-id"},
            "clientSecret": {"name": sso.client_secret_name, "key": "client-secret"},
            "scopes": list(sso.scopes),
        }
    return {
        # The default (full: true) installs the CRDs from a pre-install/pre-upgrade hook Job
        # (it downloads them from GitHub), and helm.v4.Chart never runs hook resources: no CRD
        # would exist and every CronWorkflow would fail. full: false renders the minimal CRDs
        # as ordinary manifests; keep: true leaves them (and the workflows) on uninstall.
        "crds": {"install": True, "full": False, "keep": True},
        "controller": {
            "workflowNamespaces": [pipeline.namespace],
            "metricsConfig": {"enabled": True},
            "telemetryConfig": {"enabled": True},
            # the template metrics (step results, durations, retries) reach Prometheus
            "serviceMonitor": {"enabled": True},
            "podSecurityContext": restricted_pod,
        },
        "server": server,
        # the init and wait containers of every workflow pod (Pod Security "restricted");
        # argoexec's image has no USER, so runAsNonRoot needs an explicit non-root runAsUser
        "executor": {
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 8737,
                "allowPrivilegeEscalation": False,
                "capabilities": {"drop": ["ALL"]},
                "seccompProfile": {"type": "RuntimeDefault"},
            }
        },
        "workflow": {
            # ClusterServices creates it, with its IRSA role annotation
            "serviceAccount": {"create": False, "name": pipeline.name},
            "rbac": {"create": True},
        },
        # IRSA: the workflow pods' role writes artifacts and logs; no static keys anywhere
        "useStaticCredentials": False,
        "artifactRepository": {
            "archiveLogs": True,
            "s3": {
                "bucket": artifacts_bucket,
                "endpoint": "s3.amazonaws.com",
                "region": region,
                "keyFormat": ARGO_LOG_PREFIX + "{{workflow.name}}/{{pod.name}}",
                "useSDKCreds": True,
            },
        },
    }


def retrain_target(cron_workflows: Sequence[dict[str, Any]]) -> tuple[str, str] | None:
    """(namespace, training CronWorkflow) a rendered monitor CronWorkflow starts runs from
    through the Kubernetes API (``MLOPS_RETRAIN_BACKEND=argo`` in its containers' env), or None
    when none does or its env does not train (``MLOPS_TRAINS`` false): no grant then."""
    from pydantic import TypeAdapter

    for manifest in cron_workflows:
        for template in manifest["spec"]["workflowSpec"].get("templates", []):
            container = template.get("container") or {}
            env = {e["name"]: e.get("value") for e in container.get("env", [])}
            if env.get("MLOPS_RETRAIN_BACKEND") != "argo":
                continue
            if not TypeAdapter(bool).validate_python(env.get("MLOPS_TRAINS", "true")):
                return None
            return env["MLOPS_RETRAIN_NAMESPACE"], env["MLOPS_RETRAIN_CRON_WORKFLOW"]
    return None


def retrain_role_rules(cron_workflow: str) -> list[dict[str, Any]]:
    """What the monitor needs to start a training run (`pipelines.decisions.retrain_backends`,
    ``ArgoBackend``), and nothing more: ``get`` on the one training CronWorkflow (by name),
    ``create`` on workflows (a create cannot be limited by name: the server generates it)."""
    return [
        {
            "apiGroups": ["argoproj.io"],
            "resources": ["cronworkflows"],
            "resourceNames": [cron_workflow],
            "verbs": ["get"],
        },
        {"apiGroups": ["argoproj.io"], "resources": ["workflows"], "verbs": ["create"]},
    ]


def root_application_spec(config: PlatformConfig, env: str) -> dict[str, Any]:
    """Spec of the ArgoCD root Application: the env's overlay, synced into ``serving``.

    No ``source.directory``: that forces plain-directory mode, and platform/envs/<env> holds a
    kustomization.yaml that ArgoCD must build (it detects kustomize when no type is given).
    """
    return {
        "project": "default",
        "source": {
            "repoURL": config.gitops_repo_url,
            "targetRevision": config.gitops_revision,
            "path": f"platform/envs/{env}",
        },
        "destination": {"server": "https://kubernetes.default.svc", "namespace": "serving"},
        "syncPolicy": {
            "automated": {"prune": True, "selfHeal": True},
            "syncOptions": ["CreateNamespace=false", "ServerSideApply=true"],
        },
    }


class ClusterServices(pulumi.ComponentResource):
    """Cluster-side platform, all through the cluster's Kubernetes provider."""

    mlflow_url: str
    argocd_server: str

    def __init__(
        self, name: str, args: ClusterServicesArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        """Register everything that runs on the cluster through `args.provider`."""
        # Formerly "mlops:addons:Addons" (class Addons); no stack was ever deployed, so the
        # rename carries no pulumi.Alias (see stacks/program.py).
        super().__init__("mlops:cluster:ClusterServices", name, None, opts)
        k8s_opts = pulumi.ResourceOptions(parent=self, provider=args.provider)
        labels = args.labels
        namespaces = {
            ns: k8s.core.v1.Namespace(
                f"{name}-ns-{ns}",
                metadata={
                    "name": ns,
                    "labels": {**labels, "pod-security.kubernetes.io/enforce": "restricted"},
                },
                opts=k8s_opts,
            )
            for ns in NAMESPACES
        }

        def in_ns(ns: str, *extra: pulumi.Resource) -> pulumi.ResourceOptions:
            return pulumi.ResourceOptions(
                parent=self, provider=args.provider, depends_on=[namespaces[ns], *extra]
            )

        for key, account in args.service_accounts.items():
            k8s.core.v1.ServiceAccount(
                f"{name}-sa-{key}",
                metadata={
                    "name": account.name,
                    "namespace": account.namespace,
                    "labels": labels,
                    "annotations": {"eks.amazonaws.com/role-arn": args.role_arns[key]},
                },
                opts=in_ns(account.namespace),
            )

        target = retrain_target(args.cron_workflows)
        if target is not None:
            namespace, training = target
            pipeline = args.service_accounts["pipeline"]
            retrain_role = k8s.rbac.v1.Role(
                f"{name}-retrain-role",
                metadata={"name": RETRAIN_ROLE, "namespace": namespace, "labels": labels},
                rules=retrain_role_rules(training),
                opts=in_ns(namespace),
            )
            k8s.rbac.v1.RoleBinding(
                f"{name}-retrain-binding",
                metadata={"name": RETRAIN_ROLE, "namespace": namespace, "labels": labels},
                role_ref={
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "Role",
                    "name": RETRAIN_ROLE,
                },
                subjects=[
                    {"kind": "ServiceAccount", "name": pipeline.name, "namespace": namespace}
                ],
                opts=in_ns(namespace, retrain_role),
            )

        # Secret argocd-redis replaces the chart's redis-secret-init hook Job (see argocd_values)
        redis_password = random.RandomPassword(
            f"{name}-argocd-redis",
            length=32,
            special=False,
            opts=pulumi.ResourceOptions(parent=self),
        )
        redis_secret = k8s.core.v1.Secret(
            f"{name}-argocd-redis",
            metadata={"name": "argocd-redis", "namespace": "argocd", "labels": labels},
            string_data={"auth": pulumi.Output.secret(redis_password.result)},
            opts=in_ns("argocd"),
        )
        # Release names: helm.v4.Chart would use the Pulumi name ("cluster-services-argocd"),
        # which renames every object (argocd-server would be cluster-services-argocd-server).
        argocd = k8s.helm.v4.Chart(
            f"{name}-argocd",
            name="argocd",
            chart="argo-cd",
            version=args.config.argocd_chart_version,
            namespace="argocd",
            repository_opts={"repo": ARGO_HELM},
            values=argocd_values(args.env),
            opts=in_ns("argocd", redis_secret),
        )
        workflows = k8s.helm.v4.Chart(
            f"{name}-argo-workflows",
            name="argo-workflows",
            chart="argo-workflows",
            version=args.config.argo_workflows_chart_version,
            namespace="argo",
            repository_opts={"repo": ARGO_HELM},
            values=argo_workflows_values(
                args.config,
                args.service_accounts["pipeline"],
                args.artifacts_bucket,
                aws.get_region_output().region,
            ),
            opts=in_ns("argo"),
        )

        backend = k8s.core.v1.Secret(
            f"{name}-mlflow-backend",
            metadata={"name": "mlflow-backend", "namespace": "mlflow", "labels": labels},
            string_data={"backend-store-uri": args.mlflow_backend_uri},
            opts=in_ns("mlflow"),
        )
        mlflow_server(
            name,
            MlflowArgs(
                args.mlflow_image,
                args.artifacts_bucket,
                args.labels,
                clients_namespace=args.service_accounts["pipeline"].namespace,
            ),
            in_ns("mlflow", backend),
        )
        serving_load_balancer_policy(
            name, args.load_balancer_cidrs, labels, in_ns(SERVING_NAMESPACE)
        )
        self.mlflow_url = f"http://mlflow.mlflow.svc.cluster.local:{MLFLOW_PORT}"
        self.argocd_server = "https://argocd-server.argocd.svc.cluster.local"

        repository = gitops_repository_secret(name, args.config, labels, in_ns("argocd"))
        k8s.apiextensions.CustomResource(
            f"{name}-root-app",
            api_version="argoproj.io/v1alpha1",
            kind="Application",
            metadata={
                "name": f"mlops-{args.env}",
                "namespace": "argocd",
                "labels": labels,
                "finalizers": ["resources-finalizer.argocd.argoproj.io"],
            },
            spec=root_application_spec(args.config, args.env),
            opts=in_ns("argocd", argocd, repository),
        )
        for manifest in args.cron_workflows:
            meta = manifest["metadata"]
            k8s.apiextensions.CustomResource(
                f"{name}-cron-{meta['name']}",
                api_version=manifest["apiVersion"],
                kind=manifest["kind"],
                metadata=meta,
                spec=manifest["spec"],
                opts=in_ns(meta["namespace"], workflows),
            )
        self.register_outputs({"mlflow_url": self.mlflow_url})
