"""CI: the IAM roles GitHub Actions assumes through OIDC, one per job kind, each trusting one
subject of one repository (no static keys anywhere).

- ``images`` (pushes to the images branch): push to this env's ECR repositories, nothing else;
- ``preview`` (pull requests): AWS's ``ViewOnlyAccess`` plus reading the Pulumi state and
  decrypting with the stack's secrets key, and the state lock, so ``pulumi preview`` runs;
- ``deploy`` (jobs in the env's GitHub environment, behind its required reviewers): what
  ``pulumi up`` needs, which is broad — ``PowerUserAccess`` and the IAM actions the stack's
  roles need, listed (no ``iam:*``). It is the role ``cluster.ciRoleArn`` names (cluster-admin
  through its EKS access entry), so its name comes from that ARN.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from stacks.ci_config import GITHUB_OIDC_HOST, CiConfig
from stacks.components.identity import web_identity_trust

ECR_PUSH = [
    "ecr:BatchCheckLayerAvailability",
    "ecr:BatchGetImage",
    "ecr:CompleteLayerUpload",
    "ecr:DescribeImageScanFindings",
    "ecr:DescribeImages",
    "ecr:GetDownloadUrlForLayer",
    "ecr:InitiateLayerUpload",
    "ecr:PutImage",
    "ecr:UploadLayerPart",
]
DEPLOY_IAM = [
    "iam:AttachRolePolicy",
    "iam:CreateOpenIDConnectProvider",
    "iam:CreatePolicy",
    "iam:CreatePolicyVersion",
    "iam:CreateRole",
    "iam:CreateServiceLinkedRole",
    "iam:DeleteOpenIDConnectProvider",
    "iam:DeletePolicy",
    "iam:DeletePolicyVersion",
    "iam:DeleteRole",
    "iam:DeleteRolePolicy",
    "iam:DetachRolePolicy",
    "iam:GetOpenIDConnectProvider",
    "iam:GetPolicy",
    "iam:GetPolicyVersion",
    "iam:GetRole",
    "iam:GetRolePolicy",
    "iam:ListAttachedRolePolicies",
    "iam:ListInstanceProfilesForRole",
    "iam:ListPolicyVersions",
    "iam:ListRolePolicies",
    "iam:PassRole",
    "iam:PutRolePolicy",
    "iam:TagOpenIDConnectProvider",
    "iam:TagPolicy",
    "iam:TagRole",
    "iam:UntagRole",
    "iam:UpdateAssumeRolePolicy",
    "iam:UpdateOpenIDConnectProviderThumbprint",
]
"""The IAM actions ``pulumi up`` needs for the stack's roles, policies and OIDC providers."""
MANAGED = {
    "preview": "arn:aws:iam::aws:policy/job-function/ViewOnlyAccess",
    "deploy": "arn:aws:iam::aws:policy/PowerUserAccess",
}


def subjects(config: CiConfig) -> dict[str, str]:
    """The OIDC ``sub`` each role trusts, exactly (GitHub's claim formats)."""
    repo = f"repo:{config.github_repository}"
    return {
        "images": f"{repo}:ref:refs/heads/{config.images_branch}",
        "preview": f"{repo}:pull_request",
        "deploy": f"{repo}:environment:{config.deploy_environment}",
    }


def github_trust_policy(provider_arn: str, subject: str) -> str:
    """Only a GitHub Actions token for `subject` with audience ``sts.amazonaws.com``."""
    return web_identity_trust(
        provider_arn,
        {f"{GITHUB_OIDC_HOST}:aud": "sts.amazonaws.com", f"{GITHUB_OIDC_HOST}:sub": subject},
    )


def images_policy(repository_arns: list[str]) -> str:
    """Push (and read back the scan of) this env's repositories; the token call has no
    resource-level permission, so it is the one ``*``."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Action": ["ecr:GetAuthorizationToken"], "Resource": ["*"]},
                {"Effect": "Allow", "Action": ECR_PUSH, "Resource": sorted(repository_arns)},
            ],
        }
    )


def preview_policy(state_bucket: str, secrets_key_arn: str) -> str:
    """Read the state, take and release its lock, decrypt the stack's secrets."""
    bucket = f"arn:aws:s3:::{state_bucket}"
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": [bucket]},
                {"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": [f"{bucket}/*"]},
                {
                    "Effect": "Allow",
                    "Action": ["s3:PutObject", "s3:DeleteObject"],
                    "Resource": [f"{bucket}/.pulumi/locks/*"],
                },
                {"Effect": "Allow", "Action": ["kms:Decrypt"], "Resource": [secrets_key_arn]},
            ],
        }
    )


def deploy_policy() -> str:
    """The IAM half of what ``pulumi up`` needs (the rest is ``PowerUserAccess``)."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": DEPLOY_IAM, "Resource": ["*"]}],
        }
    )


def role_name_and_path(role_arn: str) -> tuple[str, str]:
    """The name and path of the role `role_arn` (``.../role/a/b/name`` → ``name``, ``/a/b/``)."""
    rest = role_arn.split(":role/", 1)[1]
    path, _, name = rest.rpartition("/")
    return name, f"/{path}/" if path else "/"


@dataclass(frozen=True)
class CiArgs:
    """Inputs of `Ci`."""

    config: CiConfig
    env: str
    deploy_role_arn: str
    """``cluster.ciRoleArn``: the deploy role is created under that name."""
    repository_arns: Mapping[str, pulumi.Output[str]]
    tags: dict[str, str]


class Ci(pulumi.ComponentResource):
    """GitHub's OIDC provider (unless the account has it) and the three CI roles."""

    role_arns: dict[str, pulumi.Output[str]]

    def __init__(self, name: str, args: CiArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        """Register the provider, and each role with its trust and its policy."""
        super().__init__("mlops:ci:Ci", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        provider_arn: pulumi.Input[str]
        if args.config.oidc_provider_arn is not None:
            provider_arn = args.config.oidc_provider_arn
        else:
            provider_arn = aws.iam.OpenIdConnectProvider(
                f"{name}-github",
                url=f"https://{GITHUB_OIDC_HOST}",
                client_id_lists=["sts.amazonaws.com"],
                tags=args.tags,
                opts=child,
            ).arn
        policies: dict[str, pulumi.Input[str]] = {
            "images": pulumi.Output.all(*args.repository_arns.values()).apply(images_policy),
            "preview": preview_policy(args.config.state_bucket, args.config.secrets_key_arn),
            "deploy": deploy_policy(),
        }
        deploy_name, deploy_path = role_name_and_path(args.deploy_role_arn)
        names = {
            "images": (f"mlops-{args.env}-ci-images", "/"),
            "preview": (f"mlops-{args.env}-ci-preview", "/"),
            "deploy": (deploy_name, deploy_path),
        }
        self.role_arns = {}
        for kind, subject in subjects(args.config).items():
            role = aws.iam.Role(
                f"{name}-{kind}",
                name=names[kind][0],
                path=names[kind][1],
                assume_role_policy=pulumi.Output.from_input(provider_arn).apply(
                    functools.partial(_trust, subject)
                ),
                max_session_duration=3600 * (2 if kind == "deploy" else 1),
                tags={**args.tags, "ci-job": kind},
                opts=child,
            )
            aws.iam.RolePolicy(f"{name}-{kind}", role=role.id, policy=policies[kind], opts=child)
            if kind in MANAGED:
                aws.iam.RolePolicyAttachment(
                    f"{name}-{kind}", role=role.name, policy_arn=MANAGED[kind], opts=child
                )
            self.role_arns[kind] = role.arn
        self.register_outputs({"role_arns": self.role_arns})


def _trust(subject: str, provider_arn: str) -> str:
    return github_trust_policy(provider_arn, subject)
