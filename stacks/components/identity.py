"""Identity: one IAM role per Kubernetes service account (IRSA), least privilege."""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from pipelines import layout
from stacks.config import DEFAULT_LAYOUT_ROOT

READ = ["s3:GetObject", "s3:GetObjectVersion"]
WRITE = ["s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"]
LIST = ["s3:ListBucket", "s3:GetBucketLocation"]


@dataclass(frozen=True)
class Grant:
    """Object access for one service account on one bucket (optionally one key prefix)."""

    bucket: str
    """Bucket kind: raw, curated or artifacts."""
    write: bool
    prefix: str = ""


@dataclass(frozen=True)
class ServiceAccount:
    """A Kubernetes service account that gets an IAM role."""

    namespace: str
    name: str
    grants: tuple[Grant, ...]


def service_accounts(
    workflows_namespace: str,
    pipeline_account: str,
    env: str,
    layout_root: str = DEFAULT_LAYOUT_ROOT,
) -> dict[str, ServiceAccount]:
    """Who may touch which bucket: pipeline (data), mlflow (artifacts), serving (read the model
    archives under ``<layoutRoot>/bentos/`` it fetches at start, write its inference log under
    ``<layoutRoot>/inference/<env>/``; keys from `pipelines.layout`)."""
    return {
        "pipeline": ServiceAccount(
            workflows_namespace,
            pipeline_account,
            (
                Grant("raw", write=True),
                Grant("curated", write=True),
                Grant("artifacts", write=True),
            ),
        ),
        "mlflow": ServiceAccount("mlflow", "mlflow", (Grant("artifacts", write=True),)),
        "serving": ServiceAccount(
            "serving",
            "serving",
            (
                Grant("artifacts", write=False),
                Grant("curated", write=False, prefix=f"{layout_root}/{layout.BENTOS}"),
                Grant(
                    "curated",
                    write=True,
                    prefix=f"{layout_root}/{layout.inference_prefix(env)}",
                ),
            ),
        ),
    }


def access_policy(grants: tuple[Grant, ...], arns: Mapping[str, str]) -> str:
    """An IAM policy document: listed actions on named buckets only — no ``*`` anywhere."""
    statements = []
    for grant in grants:
        arn = arns[grant.bucket]
        statements.append(
            {
                "Effect": "Allow",
                "Action": READ + (WRITE if grant.write else []),
                "Resource": [f"{arn}/{grant.prefix}*"],
            }
        )
        statements.append({"Effect": "Allow", "Action": LIST, "Resource": [arn]})
    return json.dumps({"Version": "2012-10-17", "Statement": statements})


def service_trust_policy(service: str) -> str:
    """A role only the AWS service `service` (e.g. ``ec2.amazonaws.com``) may assume."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}
            ],
        }
    )


def trust_policy(provider_arn: str, issuer: str, namespace: str, account: str) -> str:
    """Only this service account of this cluster may assume the role."""
    host = issuer.removeprefix("https://")
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Federated": provider_arn},
                    "Action": "sts:AssumeRoleWithWebIdentity",
                    "Condition": {
                        "StringEquals": {
                            f"{host}:sub": f"system:serviceaccount:{namespace}:{account}",
                            f"{host}:aud": "sts.amazonaws.com",
                        }
                    },
                }
            ],
        }
    )


def _trust(account: ServiceAccount, provider: list[str]) -> str:
    return trust_policy(provider[0], provider[1], account.namespace, account.name)


@dataclass(frozen=True)
class IdentityArgs:
    """Inputs of `Identity`."""

    oidc_provider_arn: pulumi.Input[str]
    oidc_issuer: pulumi.Input[str]
    bucket_arns: Mapping[str, pulumi.Output[str]]
    accounts: Mapping[str, ServiceAccount]
    tags: dict[str, str] = field(default_factory=dict)


class Identity(pulumi.ComponentResource):
    """IRSA roles; `role_arns` goes into the service accounts' ``eks.amazonaws.com/role-arn``."""

    role_arns: dict[str, pulumi.Output[str]]

    def __init__(
        self, name: str, args: IdentityArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        """Register one IRSA role with its access policy per service account."""
        super().__init__("mlops:identity:Identity", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        arns = pulumi.Output.all(**args.bucket_arns)
        self.role_arns = {}
        provider = pulumi.Output.all(args.oidc_provider_arn, args.oidc_issuer)
        for key, account in args.accounts.items():
            role = aws.iam.Role(
                f"{name}-{key}",
                assume_role_policy=provider.apply(functools.partial(_trust, account)),
                tags={**args.tags, "service-account": f"{account.namespace}/{account.name}"},
                opts=child,
            )
            aws.iam.RolePolicy(
                f"{name}-{key}",
                role=role.id,
                policy=arns.apply(functools.partial(access_policy, account.grants)),
                opts=child,
            )
            self.role_arns[key] = role.arn
        self.register_outputs({"role_arns": self.role_arns})
