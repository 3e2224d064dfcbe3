"""ArgoCD's repository Secret: the stack registers the GitOps repository the root Application
syncs, with the credential from a Pulumi secret — or a fill-in marker the no-placeholders
policy names until that secret is set."""

from __future__ import annotations

from typing import Any

import pytest

from stacks.components.gitops_repo import CREDENTIAL_NOTE, MISSING, REPOSITORY_LABEL, SECRET_NAME
from stacks.config import PROJECT
from stacks.offline.harness import run_program
from stacks.offline.plan import load_config_file
from stacks.platform_config import PlatformConfig
from tests.conftest import REPO

STACKS = REPO / "stacks"
CREDENTIAL = "ghp_" + "a" * 36


def repository_secret(resources: list[Any]) -> Any:
    (secret,) = [
        r
        for r in resources
        if r.type == "kubernetes:core/v1:Secret" and r.inputs["metadata"]["name"] == SECRET_NAME
    ]
    return secret


def run_dev(credential: str | None) -> list[Any]:
    """The dev stack under mocks (unmasked inputs), with the Pulumi secret set or not."""
    config = load_config_file(STACKS / "Pulumi.dev.yaml")
    key = f"{PROJECT}:gitopsRepoCredential"
    extra = {key: credential} if credential is not None else {}
    result = run_program(
        STACKS, project=PROJECT, stack="dev", config={**config, **extra}, secret_keys=list(extra)
    )
    return list(result.resources)


def test_argocd_can_read_the_repository_its_root_application_syncs() -> None:
    resources = run_dev(None)
    secret = repository_secret(resources)
    (app,) = [r for r in resources if r.type.endswith(":Application")]
    meta = secret.inputs["metadata"]
    assert meta["namespace"] == app.inputs["metadata"]["namespace"] == "argocd"
    assert REPOSITORY_LABEL.items() <= meta["labels"].items()  # what ArgoCD looks for
    assert secret.inputs["stringData"]["url"] == app.inputs["spec"]["source"]["repoURL"]
    assert secret.urn in app.dependencies  # registered before the Application first syncs
    # the shipped examples hold no credential: the annotation names the command that sets it
    assert meta["annotations"][CREDENTIAL_NOTE] == MISSING
    assert "password" not in secret.inputs["stringData"]


def test_the_credential_comes_from_the_pulumi_secret_and_stays_secret() -> None:
    secret = repository_secret(run_dev(CREDENTIAL))
    assert secret.inputs["stringData"]["password"] == CREDENTIAL
    assert secret.inputs["stringData"]["username"] == "x-access-token"
    assert CREDENTIAL not in repr(secret.masked_inputs)  # a secret in the state and the plan
    assert secret.inputs["metadata"]["annotations"][CREDENTIAL_NOTE] == (
        "Pulumi secret gitopsRepoCredential"
    )


@pytest.mark.parametrize(
    ("url", "auth"),
    [
        ("https://git.internal/mlops.git", "ssh-key"),
        ("git@git.internal:mlops.git", "token"),
        ("ssh://git@git.internal/mlops.git", "none"),
    ],
)
def test_an_auth_that_does_not_fit_the_url_is_one_error_naming_the_keys(
    url: str, auth: str
) -> None:
    with pytest.raises(ValueError, match=f"gitopsRepoAuth {auth} does not fit gitopsRepoUrl"):
        PlatformConfig.model_validate({"gitopsRepoUrl": url, "gitopsRepoAuth": auth})
    fitting = "ssh-key" if auth != "ssh-key" else "token"
    assert PlatformConfig.model_validate({"gitopsRepoUrl": url, "gitopsRepoAuth": fitting})
