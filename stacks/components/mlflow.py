"""The MLflow tracking server and registry on the cluster: the schema migration of its version
as a Job (the server refuses an out-of-date schema), then the server (RDS backend store from the
``mlflow-backend`` Secret, S3 artifacts through IRSA), its Service, and the NetworkPolicies that
admit only the pipeline's pods.

The backend store URI holds the database password: it reaches both containers only as the
environment variable ``MLFLOW_BACKEND_STORE_URI`` from the Secret, never in ``command``/``args``
(a ``$(VAR)`` there is expanded by the kubelet into the process's argv, which ``ps`` shows)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

MLFLOW_PORT = 5000
MLFLOW_UID = 10001
"""images/mlflow's user."""
POD_SECURITY = {
    "runAsNonRoot": True,
    "runAsUser": MLFLOW_UID,
    "fsGroup": MLFLOW_UID,
    "seccompProfile": {"type": "RuntimeDefault"},
}


@dataclass(frozen=True)
class MlflowArgs:
    """Inputs of `mlflow_server`."""

    image: pulumi.Input[str]
    artifacts_bucket: pulumi.Input[str]
    labels: dict[str, str]
    clients_namespace: str
    """The namespace of the only pods that may call the server: the pipeline's (CronWorkflows)."""


def restricted_container_security() -> dict[str, Any]:
    """Pod Security "restricted" for one container."""
    return {
        "runAsNonRoot": True,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


BACKEND_URI_ENV = "MLFLOW_BACKEND_STORE_URI"
"""Read by ``mlflow server`` (the envvar of its ``--backend-store-uri``) and `UPGRADE_COMMAND`."""
UPGRADE_COMMAND = [
    "python",
    "-c",
    "import os, sys; from mlflow.db import upgrade; "
    f"url = os.environ.get({BACKEND_URI_ENV!r}) or sys.exit("
    f"'{BACKEND_URI_ENV} is not set: the mlflow-backend Secret is missing'); "
    "upgrade.main([url], prog_name='mlflow db upgrade')",
]
"""``mlflow db upgrade URL``, the very click command run in-process with the URL read from the
environment: as a process, ``mlflow db upgrade`` takes the URL (and its password) in argv."""
ARGO_WORKFLOW_POD_LABEL = "workflows.argoproj.io/workflow"
"""The label Argo's controller sets on every pod of a workflow."""


def _env() -> list[dict[str, Any]]:
    """The server's and the migration's environment: the backend store URI from its Secret."""
    return [
        {
            "name": BACKEND_URI_ENV,
            "valueFrom": {"secretKeyRef": {"name": "mlflow-backend", "key": "backend-store-uri"}},
        },
        {"name": "MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "value": "false"},
        {"name": "MLFLOW_DISABLE_TELEMETRY", "value": "true"},
        {"name": "HOME", "value": "/tmp"},
    ]


def _schema_upgrade(
    name: str, args: MlflowArgs, labels: dict[str, str], opts: pulumi.ResourceOptions
) -> k8s.batch.v1.Job:
    """``mlflow db upgrade`` with the server's image, before the server rolls out.

    Auto-named, so a new image replaces it (create the new Job, wait for it, then delete the
    old); Pulumi waits for the Job to complete, and the Deployment depends on it, so a server
    of a new version never starts on the previous schema. Take an RDS snapshot before an
    upgrade (docs/deploy.md §5).
    """
    return k8s.batch.v1.Job(
        f"{name}-mlflow-db-upgrade",
        metadata={"namespace": "mlflow", "labels": labels},
        spec={
            "backoffLimit": 2,
            "activeDeadlineSeconds": 900,
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "serviceAccountName": "mlflow",
                    "restartPolicy": "Never",
                    "securityContext": POD_SECURITY,
                    "containers": [
                        {
                            "name": "db-upgrade",
                            "image": args.image,
                            "command": UPGRADE_COMMAND,
                            "env": _env(),
                            "resources": {
                                "requests": {"cpu": "100m", "memory": "256Mi"},
                                "limits": {"cpu": "500m", "memory": "512Mi"},
                            },
                            "securityContext": restricted_container_security(),
                            "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
                        }
                    ],
                    "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}}],
                },
            },
        },
        opts=opts,
    )


def mlflow_server(name: str, args: MlflowArgs, opts: pulumi.ResourceOptions) -> None:
    """The schema migration Job of this MLflow version, then the server and its Service."""
    labels = {**args.labels, "app.kubernetes.io/name": "mlflow"}
    selector = {"app.kubernetes.io/name": "mlflow"}
    artifacts = pulumi.Output.from_input(args.artifacts_bucket).apply(lambda b: f"s3://{b}/mlflow")
    command = pulumi.Output.all(artifacts).apply(
        lambda v: [
            "mlflow",
            "server",
            "--host",
            "0.0.0.0",
            "--port",
            str(MLFLOW_PORT),
            "--workers",
            "2",
            # --backend-store-uri: from MLFLOW_BACKEND_STORE_URI (the Secret), never in argv
            "--artifacts-destination",
            v[0],
            "--allowed-hosts",
            f"mlflow.mlflow.svc.cluster.local:{MLFLOW_PORT},mlflow.mlflow:{MLFLOW_PORT},"
            f"mlflow:{MLFLOW_PORT},localhost:*,127.0.0.1:*",
        ]
    )
    probe = {"httpGet": {"path": "/health", "port": MLFLOW_PORT}, "periodSeconds": 10}
    upgrade = _schema_upgrade(name, args, labels, opts)
    k8s.apps.v1.Deployment(
        f"{name}-mlflow",
        metadata={"name": "mlflow", "namespace": "mlflow", "labels": labels},
        spec={
            "replicas": 2,
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {"labels": {**labels, **selector}},
                "spec": {
                    "serviceAccountName": "mlflow",
                    "securityContext": POD_SECURITY,
                    "containers": [
                        {
                            "name": "mlflow",
                            "image": args.image,
                            "command": command,
                            "ports": [{"containerPort": MLFLOW_PORT, "name": "http"}],
                            "env": _env(),
                            "resources": {
                                "requests": {"cpu": "250m", "memory": "512Mi"},
                                "limits": {"cpu": "1", "memory": "1Gi"},
                            },
                            "readinessProbe": probe,
                            "livenessProbe": {**probe, "initialDelaySeconds": 30},
                            "securityContext": restricted_container_security(),
                            "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
                        }
                    ],
                    "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}}],
                },
            },
        },
        opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[upgrade])),
    )
    k8s.core.v1.Service(
        f"{name}-mlflow",
        metadata={"name": "mlflow", "namespace": "mlflow", "labels": labels},
        spec={
            "selector": selector,
            "ports": [{"name": "http", "port": MLFLOW_PORT, "targetPort": MLFLOW_PORT}],
        },
        opts=opts,
    )
    network_policies(name, args, labels, selector, opts)


def network_policies(
    name: str,
    args: MlflowArgs,
    labels: dict[str, str],
    selector: dict[str, str],
    opts: pulumi.ResourceOptions,
) -> None:
    """Default-deny ingress in ``mlflow``; the server admits, on its port only, the pods of Argo
    workflows in `MlflowArgs.clients_namespace` (the pipeline steps: the only callers — serving
    loads its model from its image and never calls MLflow). Enforced by the VPC CNI's
    network-policy agent (`stacks.components.cluster`); ``kubectl port-forward`` still works
    (it enters the pod's network namespace, which no NetworkPolicy filters)."""
    k8s.networking.v1.NetworkPolicy(
        f"{name}-mlflow-default-deny",
        metadata={"name": "default-deny-ingress", "namespace": "mlflow", "labels": labels},
        spec={"podSelector": {}, "policyTypes": ["Ingress"]},
        opts=opts,
    )
    k8s.networking.v1.NetworkPolicy(
        f"{name}-mlflow-clients",
        metadata={"name": "mlflow-from-pipeline", "namespace": "mlflow", "labels": labels},
        spec={
            "podSelector": {"matchLabels": selector},
            "policyTypes": ["Ingress"],
            "ingress": [
                {
                    "from": [
                        {
                            "namespaceSelector": {
                                "matchLabels": {
                                    "kubernetes.io/metadata.name": args.clients_namespace
                                }
                            },
                            "podSelector": {
                                "matchExpressions": [
                                    {"key": ARGO_WORKFLOW_POD_LABEL, "operator": "Exists"}
                                ]
                            },
                        }
                    ],
                    "ports": [{"protocol": "TCP", "port": MLFLOW_PORT}],
                }
            ],
        },
        opts=opts,
    )
