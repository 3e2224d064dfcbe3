"""Storage: S3 buckets for raw, curated and artifacts — encrypted, versioned, private, TLS-only."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from pipelines import layout
from stacks.config import StorageConfig

BUCKETS = ("raw", "curated", "artifacts")


def tls_only_policy(bucket_arn: str) -> str:
    """A bucket policy denying every request that does not use TLS."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "DenyInsecureTransport",
                    "Effect": "Deny",
                    "Principal": "*",
                    "Action": "s3:*",
                    "Resource": [bucket_arn, f"{bucket_arn}/*"],
                    "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                }
            ],
        }
    )


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
            aws.s3.BucketServerSideEncryptionConfiguration(
                logical,
                bucket=bucket.id,
                rules=[
                    {
                        "apply_server_side_encryption_by_default": {"sse_algorithm": "aws:kms"},
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
                policy=bucket.arn.apply(tls_only_policy),
                opts=pulumi.ResourceOptions(parent=self, depends_on=[block]),
            )
            aws.s3.BucketLifecycleConfiguration(
                logical, bucket=bucket.id, rules=lifecycle_rules(kind, config), opts=child
            )
            self.bucket_names[kind] = bucket.bucket
            self.bucket_arns[kind] = bucket.arn
        self.register_outputs({"bucket_names": self.bucket_names})
