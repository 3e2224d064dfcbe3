"""The cluster side of the stack config: the Argo charts, argo-server's login, the MLflow server
image and the GitOps root application."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from stacks.config_base import ConfigModel as _Model


def mlflow_client_version() -> str:
    """The MLflow version the pipelines run (uv.lock): the server must be the same."""
    from importlib.metadata import version

    return version("mlflow")


class PlatformConfig(_Model):
    """What runs on the cluster: charts, MLflow and the GitOps root application."""

    argocd_chart_version: str = "10.1.1"
    argo_workflows_chart_version: str = "1.0.18"
    kube_prometheus_stack_chart_version: str = "88.5.3"
    """prometheus-community/kube-prometheus-stack (Prometheus 3.x, Alertmanager, Grafana)."""
    pushgateway_chart_version: str = "3.8.0"
    """prometheus-community/prometheus-pushgateway (where pipeline pods push their metrics)."""
    argo_rollouts_chart_version: str = "2.41.0"
    """argoproj/argo-helm argo-rollouts (Argo Rollouts v1.9.0: the serving canary)."""
    mlflow_image: str | None = None
    """Override of the MLflow server image. Default: this stack's ``mlops-<env>-mlflow``
    repository tagged with the client's MLflow version (images/mlflow builds it)."""
    trains: bool = True
    """Whether this env trains its own models (dev). ``false`` (staging, prod): it serves the
    candidates promoted from the stage before it (`pipelines.candidates`); its training
    CronWorkflow is rendered suspended and every step reads ``MLOPS_TRAINS=false``."""
    gitops_repo_url: str
    gitops_revision: str = "main"
    gitops_repo_auth: Literal["token", "ssh-key", "none"] = "token"
    """How ArgoCD reads the GitOps repository: an HTTPS token or an SSH deploy key (the Pulumi
    secret ``gitopsRepoCredential``), or nothing (a public HTTPS repository). The stack creates
    ArgoCD's repository Secret from it."""

    @field_validator("mlflow_image")
    @classmethod
    def _server_matches_client(cls, value: str | None) -> str | None:
        if value is None:
            return value
        client = mlflow_client_version()
        tag = value.rsplit("/", 1)[-1].partition(":")[2]
        if not re.fullmatch(rf"v?{re.escape(client)}(-full)?", tag):
            raise ValueError(
                f"{value} is not MLflow {client} (the client in uv.lock): a server older than "
                "its clients breaks the registry API; leave it unset to use images/mlflow"
            )
        if value.startswith("ghcr.io/mlflow/mlflow:") and not tag.endswith("-full"):
            raise ValueError(
                f"{value} has neither the PostgreSQL driver nor boto3 (RDS backend, S3 "
                "artifacts); leave it unset to use images/mlflow"
            )
        return value

    class ArgoSso(_Model):
        """argo-server OIDC single sign-on (chart values ``server.sso.*``); the OIDC client's id
        and secret are the keys client-id/client-secret of Secret argo/<clientSecretName>."""

        issuer: str
        redirect_url: str  # <argo-server URL>/oauth2/callback
        client_secret_name: str = "argo-server-sso"
        scopes: list[str] = Field(default_factory=list)

    argo_server_auth_modes: list[Literal["client", "server", "sso"]] = Field(
        ["client"], min_length=1
    )
    """argo-server ``--auth-mode``s: ``client`` (callers send a Kubernetes bearer token),
    ``server`` (every caller acts as the server's service account), ``sso`` (needs ``argoSso``)."""
    argo_sso: PlatformConfig.ArgoSso | None = None

    @model_validator(mode="after")
    def _auth_fits_the_url(self) -> PlatformConfig:
        ssh = self.gitops_repo_url.startswith(("ssh://", "git@"))
        if (self.gitops_repo_auth == "ssh-key") != ssh:
            raise ValueError(
                f"gitopsRepoAuth {self.gitops_repo_auth} does not fit gitopsRepoUrl "
                f"{self.gitops_repo_url}: an SSH deploy key needs an ssh:// or git@ URL, a token "
                "(or none) an https:// URL"
            )
        return self

    @model_validator(mode="after")
    def _sso_is_configured(self) -> PlatformConfig:
        if "sso" in self.argo_server_auth_modes and self.argo_sso is None:
            raise ValueError("argoServerAuthModes has sso but no argoSso: argo-server would exit")
        return self
