"""Storage: S3 buckets for raw, curated and artifacts — encrypted, versioned, private, TLS-only."""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws

from pipelines import layout
from stacks.candidates_config import Chain
from stacks.components.candidate_grants import reader_statements
from stacks.config import StorageConfig

BUCKETS = ("raw", "curated", "artifacts")


TLS_ONLY = {
    "Sid": "DenyInsecureTransport",
    "Effect": "Deny",
    "Principal": "*",
    "Action": "s3:*",
    "Condition": {"Bool": {"aws:SecureTransport": "false"}},
}
WRITE_ONCE_FAMILIES = (layout.DECISIONS, layout.BENTOS)
"""Key families written once and never deleted (ledger records; exported Bentos and model
archives, pinned by sha256), but for the ledger's ``decisions/*/intents/`` working state."""
LEDGER_BUCKET = "curated"
"""The bucket of the workflows' ``storageUrl`` (checked by `stacks.config.StackConfig`)."""


def write_once_statements(
    bucket_arn: str, layout_root: str, break_glass: Sequence[str]
) -> list[dict[str, Any]]:
    """Deny, to every principal but the `break_glass` roles, deleting any version of a
    write-once key and any PUT of one without ``If-None-Match`` (S3 then refuses an existing
    key with 412: a create, never an overwrite; the ``s3:if-none-match`` condition key, S3
    conditional writes, 2024-11).

    IAM wildcards cannot exclude a sub-prefix, so the statements name what they do NOT cover
    (``NotResource``): every other layout family, the ledger's intents and the bucket itself.
    Any key outside those is write-once too (fail-closed for keys no family names).
    """
    root = f"{bucket_arn}/{layout_root}/"
    others = [f"{root}{f}*" for f in layout.PREFIXES if f not in WRITE_ONCE_FAMILIES]
    not_resource = [
        bucket_arn,
        *others,
        f"{root}{layout.DECISIONS}*/{layout.DECISION_INTENTS}*",
    ]
    exempt = {"ArnNotLike": {"aws:PrincipalArn": sorted(break_glass)}} if break_glass else {}
    return [
        {
            "Sid": "DenyDeletingWriteOnceKeys",
            "Effect": "Deny",
            "Principal": "*",
            "Action": ["s3:DeleteObject", "s3:DeleteObjectVersion"],
            "NotResource": not_resource,
            **({"Condition": exempt} if exempt else {}),
        },
        {
            "Sid": "DenyOverwritingWriteOnceKeys",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:PutObject",
            "NotResource": not_resource,
            "Condition": {**exempt, "Null": {"s3:if-none-match": "true"}},
        },
    ]


def bucket_policy(
    bucket_arn: str,
    kind: str,
    layout_root: str,
    break_glass: Sequence[str],
    chain: Chain | None = None,
) -> str:
    """TLS only on every bucket; on the curated bucket (the workflows' ``storageUrl``: the
    ledger and the exported archives) the write-once statements too, and the other envs' read
    grants of the promotion `chain` (`stacks.components.candidate_grants.reader_statements`)."""
    statements = [{**TLS_ONLY, "Resource": [bucket_arn, f"{bucket_arn}/*"]}]
    if kind == LEDGER_BUCKET:
        statements += write_once_statements(bucket_arn, layout_root, break_glass)
        if chain is not None:
            statements += reader_statements(bucket_arn, layout_root, chain.env, chain.readers)
    return json.dumps({"Version": "2012-10-17", "Statement": statements})


def lifecycle_rules(kind: str, config: StorageConfig) -> list[dict[str, Any]]:
    """The lifecycle rules of bucket `kind`: expire old versions, abort stale uploads and, in
    the raw bucket, move archive zips (``<layoutRoot>/raw/``, `pipelines.layout.RAW`) to a
    cheaper class after ``rawTransitionDays``."""
    rules: list[dict[str, Any]] = [
        {
            "id": "expire-noncurrent",
            "status": "Enabled",
            "filter": {},
            "noncurrent_version_expiration": {"noncurrent_days": config.noncurrent_expiration_days},
        },
        {
            "id": "abort-incomplete-uploads",
            "status": "Enabled",
            "filter": {},
            "abort_incomplete_multipart_upload": {"days_after_initiation": 7},
        },
    ]
    if kind == "raw":
        rules.append(
            {
                "id": "raw-to-infrequent-access",
                "status": "Enabled",
                "filter": {"prefix": f"{config.layout_root}/{layout.RAW}"},
                "transitions": [
                    {
                        "days": config.raw_transition_days,
                        "storage_class": config.raw_transition_storage_class,
                    }
                ],
            }
        )
    return rules


@dataclass(frozen=True)
class StorageArgs:
    """Inputs of `Storage`."""

    config: StorageConfig
    tags: dict[str, str]
    break_glass: tuple[str, ...] = field(default_factory=tuple)
    """Roles exempt from the write-once statements (break-glass repairs): the operators'
    ``cluster.adminRoleArns``. Not CI: it changes the policy only through a reviewed stack
    change, and ``pulumi destroy`` removes the policy before emptying a ``forceDestroy``
    bucket (the policy depends on the bucket)."""
    chain: Chain | None = None
    """The promotion chain (`stacks.config.StackConfig.chain`): the other envs' pipeline roles
    read the curated bucket's ledger (and the next env its artifacts)."""
    curated_key_arn: pulumi.Input[str] | None = None
    """The curated bucket's customer-managed key (`candidate_grants.CuratedKey`); without it,
    the account's ``aws/s3`` key (which no other account can use)."""


class Storage(pulumi.ComponentResource):
    """The three buckets of the storage layout, each with its guard rails as separate resources."""

    bucket_names: dict[str, pulumi.Output[str]]
    bucket_arns: dict[str, pulumi.Output[str]]

    def __init__(
        self, name: str, args: StorageArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        """Register the three buckets and their guard-rail resources as children."""
        super().__init__("mlops:storage:Storage", name, None, opts)
        config, tags = args.config, args.tags
        self.bucket_names, self.bucket_arns = {}, {}
        for kind in BUCKETS:
            child = pulumi.ResourceOptions(parent=self)
            logical = f"{name}-{kind}"
            bucket = aws.s3.Bucket(
                logical,
                bucket=config.bucket(kind),
                force_destroy=config.force_destroy,
                tags={**tags, "data": kind},
                opts=child,
            )
            key = args.curated_key_arn if kind == LEDGER_BUCKET else None
            aws.s3.BucketServerSideEncryptionConfiguration(
                logical,
                bucket=bucket.id,
                rules=[
                    {
                        "apply_server_side_encryption_by_default": {
                            "sse_algorithm": "aws:kms",
                            **({"kms_master_key_id": key} if key is not None else {}),
                        },
                        "bucket_key_enabled": True,
                    }
                ],
                opts=child,
            )
            aws.s3.BucketVersioning(
                logical,
                bucket=bucket.id,
                versioning_configuration={"status": "Enabled"},
                opts=child,
            )
            block = aws.s3.BucketPublicAccessBlock(
                logical,
                bucket=bucket.id,
                block_public_acls=True,
                block_public_policy=True,
                ignore_public_acls=True,
                restrict_public_buckets=True,
                opts=child,
            )
            aws.s3.BucketPolicy(
                logical,
                bucket=bucket.id,
                policy=bucket.arn.apply(
                    functools.partial(
                        bucket_policy,
                        kind=kind,
                        layout_root=config.layout_root,
                        break_glass=args.break_glass,
                        chain=args.chain,
                    )
                ),
                opts=pulumi.ResourceOptions(parent=self, depends_on=[block]),
            )
            aws.s3.BucketLifecycleConfiguration(
                logical, bucket=bucket.id, rules=lifecycle_rules(kind, config), opts=child
            )
            self.bucket_names[kind] = bucket.bucket
            self.bucket_arns[kind] = bucket.arn
        self.register_outputs({"bucket_names": self.bucket_names})
