"""Cross-account grants for moving a candidate between the envs' accounts.

A move into an env runs with that env's pipeline role and reads the other envs' curated buckets
(what exactly: `stacks.candidates_config`). Cross-account access needs both sides:

- the bucket's own account: a bucket policy statement per reader (`reader_statements`) and the
  curated bucket's customer-managed KMS key (`CuratedKey`, `key_policy`) admitting the reader's
  pipeline role to ``kms:Decrypt`` through S3 only — the account's ``aws/s3`` key cannot be
  used from another account;
- the reader's account: its pipeline role's IAM policy (`source_statements`).

Every grant names the reader's pipeline role exactly: the principal is the reader's account
root and an ``ArnEquals aws:PrincipalArn`` condition names the role (``mlops-<env>-pipeline``,
a deterministic name). A policy naming the role itself as principal would need the role to exist
first (S3 and KMS refuse an unknown principal: an order of ``pulumi up`` across stacks) and
would silently stop matching once the role is recreated; the condition needs neither.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from stacks.candidates_config import Peer, curated_key_alias, read_prefixes

READ = "s3:GetObject"
LIST = "s3:ListBucket"
ACCOUNT_USE = [
    "kms:Encrypt",
    "kms:Decrypt",
    "kms:ReEncrypt*",
    "kms:GenerateDataKey*",
    "kms:DescribeKey",
]
"""What principals of the key's own account may do with it, through S3 only (what the
account's ``aws/s3`` key allowed them before)."""


def _sid(kind: str, env: str) -> str:
    return f"Candidate{kind}{env.title().replace('-', '')}"


def root(account_id: str) -> str:
    """The root principal of `account_id` (the account, narrowed by a condition)."""
    return f"arn:aws:iam::{account_id}:root"


def via_s3(region: str) -> str:
    """The ``kms:ViaService`` value of S3 in `region`."""
    return f"s3.{region}.amazonaws.com"


def reader_statements(
    bucket_arn: str, layout_root: str, env: str, readers: Sequence[Peer]
) -> list[dict[str, Any]]:
    """Bucket policy statements of `env`'s curated bucket: each reader's pipeline role may get
    and list exactly the prefixes a move reads here (`read_prefixes`), nothing else."""
    statements: list[dict[str, Any]] = []
    for reader in readers:
        prefixes = read_prefixes(layout_root, env, reader.artifacts)
        principal = {"AWS": root(reader.account_id)}
        role = {"ArnEquals": {"aws:PrincipalArn": reader.role_arn}}
        statements += [
            {
                "Sid": _sid("Read", reader.env),
                "Effect": "Allow",
                "Principal": principal,
                "Action": [READ],
                "Resource": [f"{bucket_arn}/{p}*" for p in prefixes],
                "Condition": role,
            },
            {
                "Sid": _sid("List", reader.env),
                "Effect": "Allow",
                "Principal": principal,
                "Action": [LIST],
                "Resource": [bucket_arn],
                "Condition": {**role, "StringLike": {"s3:prefix": [f"{p}*" for p in prefixes]}},
            },
        ]
    return statements


def key_policy(account_id: str, region: str, readers: Sequence[Peer]) -> str:
    """The curated key's policy: the account root administers it; the account's principals use
    it through S3 (as with ``aws/s3``); each reader's pipeline role may only decrypt, through
    S3 in `region`."""
    statements: list[dict[str, Any]] = [
        {
            "Sid": "AccountAdministers",
            "Effect": "Allow",
            "Principal": {"AWS": root(account_id)},
            "Action": "kms:*",
            "Resource": "*",
        },
        {
            "Sid": "AccountUsesThroughS3",
            "Effect": "Allow",
            "Principal": {"AWS": "*"},
            "Action": ACCOUNT_USE,
            "Resource": "*",
            "Condition": {
                "StringEquals": {"kms:CallerAccount": account_id, "kms:ViaService": via_s3(region)}
            },
        },
    ]
    for reader in readers:
        statements.append(
            {
                "Sid": _sid("Decrypt", reader.env),
                "Effect": "Allow",
                "Principal": {"AWS": root(reader.account_id)},
                "Action": "kms:Decrypt",
                "Resource": "*",
                "Condition": {
                    "StringEquals": {"kms:ViaService": via_s3(region)},
                    "ArnEquals": {"aws:PrincipalArn": reader.role_arn},
                },
            }
        )
    return json.dumps({"Version": "2012-10-17", "Statement": statements})


def source_statements(sources: Sequence[Peer], region: str) -> list[dict[str, Any]]:
    """IAM statements of this env's pipeline role: read what a move reads in each source's
    curated bucket, and decrypt with that account's keys only through S3 for that bucket."""
    statements: list[dict[str, Any]] = []
    for source in sources:
        bucket = f"arn:aws:s3:::{source.bucket}"
        prefixes = source.source_prefixes()
        statements += [
            {
                "Sid": _sid("Read", source.env),
                "Effect": "Allow",
                "Action": [READ],
                "Resource": [f"{bucket}/{p}*" for p in prefixes],
            },
            {
                "Sid": _sid("List", source.env),
                "Effect": "Allow",
                "Action": [LIST],
                "Resource": [bucket],
                "Condition": {"StringLike": {"s3:prefix": [f"{p}*" for p in prefixes]}},
            },
            {
                "Sid": _sid("Decrypt", source.env),
                "Effect": "Allow",
                "Action": ["kms:Decrypt"],
                "Resource": [f"arn:aws:kms:{region}:{source.account_id}:key/*"],
                "Condition": {
                    "StringEquals": {"kms:ViaService": via_s3(region)},
                    # with S3 Bucket Keys the context is the bucket's ARN, else the object's
                    "StringLike": {"kms:EncryptionContext:aws:s3:arn": [bucket, f"{bucket}/*"]},
                },
            },
        ]
    return statements


@dataclass(frozen=True)
class CuratedKeyArgs:
    """Inputs of `CuratedKey`."""

    env: str
    account_id: str
    region: str
    readers: tuple[Peer, ...]
    tags: dict[str, str]


class CuratedKey(pulumi.ComponentResource):
    """The curated bucket's customer-managed KMS key (rotated yearly) and its alias."""

    arn: pulumi.Output[str]

    def __init__(
        self, name: str, args: CuratedKeyArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        """Register the key, with its policy (`key_policy`), and its alias."""
        super().__init__("mlops:storage:CuratedKey", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        key = aws.kms.Key(
            name,
            description=f"mlops {args.env}: the curated bucket (read by the other envs' moves)",
            enable_key_rotation=True,
            deletion_window_in_days=30,
            policy=key_policy(args.account_id, args.region, args.readers),
            tags=args.tags,
            opts=child,
        )
        aws.kms.Alias(name, name=curated_key_alias(args.env), target_key_id=key.key_id, opts=child)
        self.arn = key.arn
        self.register_outputs({"arn": self.arn})
