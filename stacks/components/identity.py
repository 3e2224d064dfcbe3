"""Identity: one IAM role per Kubernetes service account (IRSA), least privilege."""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws

from pipelines import layout
from stacks.config import DEFAULT_LAYOUT_ROOT

READ = ["s3:GetObject", "s3:GetObjectVersion"]
WRITE = ["s3:PutObject", "s3:AbortMultipartUpload"]
DELETE = ["s3:DeleteObject"]
LIST = ["s3:ListBucket", "s3:GetBucketLocation"]
ARGO_LOG_PREFIX = "argo/"
"""Where Argo's executor (in every workflow pod, as the pod's service account) archives step
logs in the artifacts bucket (`stacks.components.cluster_services`, ``archiveLogs``)."""


@dataclass(frozen=True)
class Grant:
    """Object access for one service account on one bucket (optionally one key prefix)."""

    bucket: str
    """Bucket kind: raw, curated or artifacts."""
    write: bool
    prefix: str = ""
    delete: bool = False
    """``s3:DeleteObject`` too (never ``DeleteObjectVersion``: no role erases history)."""
    read: bool = True


@dataclass(frozen=True)
class Access:
    """What the pipeline does to one key family (checked against the code in
    tests/stacks/test_ledger_protection.py)."""

    write: bool = False
    delete: bool = False


PIPELINE_ACCESS: dict[str, Access] = {
    layout.RAW: Access(write=True),  # fetch stores zips and checksums; nothing deletes them
    layout.QUARANTINE: Access(write=True, delete=True),  # validate drops a day's stale rejects
    layout.CURATED: Access(write=True, delete=True),  # validate drops a refused day's bars
    layout.FEATURES: Access(write=True),
    layout.RUNS: Access(write=True),
    layout.BENTOS: Access(write=True),  # write-once: the bucket policy refuses an overwrite
    layout.INFERENCE: Access(),  # the monitor reads what serving logged
    layout.REPORTS: Access(write=True),
    layout.DECISIONS: Access(write=True),  # records: write-once, never deleted
    f"{layout.DECISIONS}*/{layout.DECISION_INTENTS}": Access(write=True, delete=True),
}
"""Per key family of `pipelines.layout` (``*`` spans the env folder): the pipeline's access.
Every family is listed, so a new one is a decision, not a wildcard."""


def pipeline_grants(layout_root: str, raw_bucket: bool) -> tuple[Grant, ...]:
    """The pipeline role's grants: per key family, what `PIPELINE_ACCESS` says, in the bucket
    the family lives in (``raw/`` and ``quarantine/`` in the raw bucket when `raw_bucket`);
    in the artifacts bucket only Argo's log archive (MLflow artifacts go through the MLflow
    server, ``--artifacts-destination``: the server's role writes them, not the pipeline's)."""
    grants = [
        Grant(
            "raw" if raw_bucket and family.startswith(layout.RAW_PREFIXES) else "curated",
            write=access.write,
            prefix=f"{layout_root}/{family}",
            delete=access.delete,
        )
        for family, access in PIPELINE_ACCESS.items()
    ]
    grants.append(Grant("artifacts", write=True, prefix=ARGO_LOG_PREFIX, read=False))
    return tuple(grants)


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
    raw_bucket: bool = True,
) -> dict[str, ServiceAccount]:
    """Who may touch which bucket: pipeline (per key family, `pipeline_grants`), mlflow
    (artifacts), serving (read the model archives under ``<layoutRoot>/bentos/`` it fetches at
    start, write its inference log under ``<layoutRoot>/inference/<env>/``; keys from
    `pipelines.layout`). `raw_bucket`: the raw families live in the raw bucket (the workflows'
    ``rawStorageUrl`` is set)."""
    return {
        "pipeline": ServiceAccount(
            workflows_namespace, pipeline_account, pipeline_grants(layout_root, raw_bucket)
        ),
        # MLflow deletes artifacts of deleted runs (``mlflow gc``)
        "mlflow": ServiceAccount(
            "mlflow", "mlflow", (Grant("artifacts", write=True, delete=True),)
        ),
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


def grant_actions(grant: Grant) -> list[str]:
    """The object actions of `grant`."""
    return (
        (READ if grant.read else [])
        + (WRITE if grant.write else [])
        + (DELETE if grant.delete else [])
    )


def access_policy(
    grants: tuple[Grant, ...], arns: Mapping[str, str], more: Sequence[dict[str, Any]] = ()
) -> str:
    """An IAM policy document: listed actions on named buckets only (no action wildcard; a
    ``*`` only inside a key prefix of a named bucket), then the statements `more` (the
    pipeline's reads in the other envs' accounts, `stacks.components.candidate_grants`)."""
    statements: list[dict[str, Any]] = []
    for grant in grants:
        arn = arns[grant.bucket]
        statements.append(
            {
                "Effect": "Allow",
                "Action": grant_actions(grant),
                "Resource": [f"{arn}/{grant.prefix}*"],
            }
        )
    for bucket in dict.fromkeys(grant.bucket for grant in grants):
        statements.append({"Effect": "Allow", "Action": LIST, "Resource": [arns[bucket]]})
    statements += more
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


def web_identity_trust(provider_arn: str, string_equals: Mapping[str, str]) -> str:
    """A role only tokens of this OIDC provider whose claims equal `string_equals` may assume."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Federated": provider_arn},
                    "Action": "sts:AssumeRoleWithWebIdentity",
                    "Condition": {"StringEquals": dict(string_equals)},
                }
            ],
        }
    )


def trust_policy(provider_arn: str, issuer: str, namespace: str, account: str) -> str:
    """Only this service account of this cluster may assume the role."""
    host = issuer.removeprefix("https://")
    return web_identity_trust(
        provider_arn,
        {
            f"{host}:sub": f"system:serviceaccount:{namespace}:{account}",
            f"{host}:aud": "sts.amazonaws.com",
        },
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
    role_names: Mapping[str, str] = field(default_factory=dict)
    """Service account key → a fixed role name (others are auto-named): the pipeline's, which
    the other envs' bucket and key policies name (`stacks.candidates_config`)."""
    more_statements: Mapping[str, Sequence[dict[str, Any]]] = field(default_factory=dict)
    """Service account key → IAM statements beyond its bucket grants."""


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
                name=args.role_names.get(key),
                assume_role_policy=provider.apply(functools.partial(_trust, account)),
                tags={**args.tags, "service-account": f"{account.namespace}/{account.name}"},
                opts=child,
            )
            aws.iam.RolePolicy(
                f"{name}-{key}",
                role=role.id,
                policy=arns.apply(
                    functools.partial(
                        access_policy, account.grants, more=args.more_statements.get(key, ())
                    )
                ),
                opts=child,
            )
            self.role_arns[key] = role.arn
        self.register_outputs({"role_arns": self.role_arns})
