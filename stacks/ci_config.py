"""The CI side of the stack config: which GitHub repository's workflows may assume this env's
CI roles, and where the Pulumi state they preview lives (`stacks.components.ci`)."""

from __future__ import annotations

import re

from pydantic import Field, field_validator

from stacks.config_base import ConfigModel as _Model

GITHUB_OIDC_HOST = "token.actions.githubusercontent.com"
"""GitHub Actions' OIDC issuer (without ``https://``): the prefix of its condition keys."""
_NAME = r"[A-Za-z0-9][A-Za-z0-9._-]*"
KMS_KEY_ARN = re.compile(r"^arn:aws(?:-[a-z]+)*:kms:[a-z0-9-]+:\d{12}:key/[\w-]+$")
OIDC_PROVIDER_ARN = re.compile(
    rf"^arn:aws(?:-[a-z]+)*:iam::\d{{12}}:oidc-provider/{re.escape(GITHUB_OIDC_HOST)}$"
)


class CiConfig(_Model):
    """GitHub Actions' access to this env (``mlops-platform:ci``).

    Every value is literal: a role's trust names one repository and one branch or GitHub
    environment, never a pattern, so ``*`` and ``?`` are refused here (and the policy rule
    ``ci-oidc-trust`` refuses them in the roles themselves).
    """

    github_repository: str = Field(pattern=rf"^{_NAME}/{_NAME}$")
    """``owner/name`` of the repository whose workflows may assume the roles."""
    deploy_environment: str = Field(pattern=rf"^{_NAME}$")
    """The GitHub environment the ``pulumi up`` job of this env runs in (required reviewers for
    staging and prod are set on it in the repository's settings)."""
    images_branch: str = Field(default="main", pattern=r"^[A-Za-z0-9._/-]+$")
    """The branch whose pushes build and push this env's images."""
    oidc_provider_arn: str | None = None
    """GitHub's OIDC provider already in this account (one per account and issuer); unset, the
    stack creates it."""
    state_bucket: str = Field(pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
    """The S3 bucket of the Pulumi state backend (``pulumi login s3://<stateBucket>``): the
    preview role reads it."""
    secrets_key_arn: str
    """The KMS key of the stack's secrets provider (``awskms://...``): the preview role may
    decrypt with it, nothing else."""

    @field_validator("oidc_provider_arn")
    @classmethod
    def _provider(cls, value: str | None) -> str | None:
        if value is not None and not OIDC_PROVIDER_ARN.match(value):
            raise ValueError(
                f"{value!r} is not the ARN of GitHub's OIDC provider "
                f"(arn:aws:iam::<account>:oidc-provider/{GITHUB_OIDC_HOST})"
            )
        return value

    @field_validator("secrets_key_arn")
    @classmethod
    def _kms_key(cls, value: str) -> str:
        if not KMS_KEY_ARN.match(value):
            raise ValueError(
                f"{value!r} is not a KMS key ARN (arn:aws:kms:<region>:<account>:key/<id>)"
            )
        return value
