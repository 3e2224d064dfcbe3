"""ArgoCD's repository Secret: how ArgoCD reads the GitOps repository the root Application
syncs (ArgoCD's declarative setup: a Secret labelled ``argocd.argoproj.io/secret-type:
repository`` in its namespace).

The credential is the Pulumi secret ``gitopsRepoCredential`` (``pulumi config set --secret
gitopsRepoCredential < deploy_key``): encrypted in the stack file and in the state, never in
plain config. Until it is set, ArgoCD reads the repository anonymously (a private one then
shows "authentication required" on the Application), the Secret's annotation says so, and
``pulumi preview`` prints a warning naming the command that sets it (docs/deploy.md §6).
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from stacks.platform_config import PlatformConfig

SECRET_NAME = "gitops-repo"
REPOSITORY_LABEL = {"argocd.argoproj.io/secret-type": "repository"}
CREDENTIAL_KEY = "gitopsRepoCredential"
CREDENTIAL_NOTE = "mlops.platform/credential"
MISSING = f"not set: pulumi config set --secret {CREDENTIAL_KEY}"


def repository_data(config: PlatformConfig, credential: Any | None) -> dict[str, Any]:
    """The Secret's ``stringData``: the repository and, unless public, its credential."""
    data: dict[str, Any] = {"type": "git", "url": config.gitops_repo_url}
    if config.gitops_repo_auth == "ssh-key":
        data["sshPrivateKey"] = credential
    elif config.gitops_repo_auth == "token":
        data["username"] = "x-access-token"  # GitHub's; GitLab and others accept any name
        data["password"] = credential
    return {k: v for k, v in data.items() if v is not None}


def gitops_repository_secret(
    name: str, config: PlatformConfig, labels: dict[str, str], opts: pulumi.ResourceOptions
) -> k8s.core.v1.Secret:
    """The repository Secret in ``argocd``, credential from the Pulumi secret config."""
    credential = (
        pulumi.Config().get_secret(CREDENTIAL_KEY) if config.gitops_repo_auth != "none" else None
    )
    if credential is None and config.gitops_repo_auth != "none":
        pulumi.log.warn(
            f"ArgoCD has no credential for {config.gitops_repo_url} "
            f"(gitopsRepoAuth {config.gitops_repo_auth}): run {MISSING.removeprefix('not set: ')}"
        )
    note = (
        "none: a public repository"
        if config.gitops_repo_auth == "none"
        else f"Pulumi secret {CREDENTIAL_KEY}"
        if credential is not None
        else MISSING
    )
    return k8s.core.v1.Secret(
        f"{name}-gitops-repo",
        metadata={
            "name": SECRET_NAME,
            "namespace": "argocd",
            "labels": {**labels, **REPOSITORY_LABEL},
            "annotations": {CREDENTIAL_NOTE: note},
        },
        string_data=repository_data(config, credential),
        opts=opts,
    )
