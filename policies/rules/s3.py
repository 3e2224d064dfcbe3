"""S3: encryption, public access block, versioning, TLS-only bucket policies and what a bucket
policy may grant another account (read only, to named roles).

Each guard has a resource rule (the guard resource is configured right) and a stack rule (every
bucket has such a guard resource, or the equivalent inline setting).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from policies.rules.base import Report, as_list, get, rule, statements, who

BUCKET_TYPES = {"aws:s3/bucket:Bucket", "aws:s3/bucketV2:BucketV2"}
PUBLIC_ACCESS_FLAGS = (
    "blockPublicAcls",
    "blockPublicPolicy",
    "ignorePublicAcls",
    "restrictPublicBuckets",
)


def _buckets_with(resources: Iterable[Any], token: str, ok: Callable[[Any], bool]) -> set[str]:
    """Names of buckets that some `token` resource configures in an acceptable way."""
    names = set()
    for r in resources:
        if r.resource_type.startswith(token) and ok(r.props):
            names.add(str(get(r.props, "bucket")))
    return names


def _check_buckets(
    args: Any,
    report: Report,
    token: str,
    ok: Callable[[Any], bool],
    what: str,
    inline: Callable[[Any], bool] | None = None,
) -> None:
    """Report every bucket that no acceptable `token` resource (nor `inline`) covers."""
    covered = _buckets_with(args.resources, token, ok)
    for r in args.resources:
        if r.resource_type in BUCKET_TYPES:
            name = str(get(r.props, "bucket", default=r.name))
            if name not in covered and not (inline and inline(r.props)):
                report(f"{r.resource_type} {r.name!r} (bucket {name}) has no {what}", r.urn)


# ---------------------------------------------------------------------------- encryption


def _sse_ok(props: Any) -> bool:
    rules = as_list(get(props, "rules"))
    return bool(rules) and all(
        get(entry, "applyServerSideEncryptionByDefault", "sseAlgorithm")
        in ("aws:kms", "AES256", "aws:kms:dsse")
        for entry in rules
    )


@rule("s3-encryption", "S3 buckets encrypted at rest (KMS or AES256)", "mandatory")
def s3_encryption_config(args: Any, report: Report) -> None:
    """A bucket encryption configuration must set KMS or AES256 on every rule."""
    if args.resource_type.startswith(
        "aws:s3/bucketServerSideEncryptionConfiguration"
    ) and not _sse_ok(args.props):
        report(
            f"{who(args)}: rules[].applyServerSideEncryptionByDefault.sseAlgorithm "
            "must be aws:kms or AES256"
        )


def _inline_sse(props: Any) -> bool:
    return bool(get(props, "serverSideEncryptionConfiguration"))


@rule(
    "s3-bucket-has-encryption",
    "Every bucket has an encryption configuration",
    "mandatory",
    kind="stack",
)
def s3_bucket_has_encryption(args: Any, report: Report) -> None:
    """Every bucket has a server-side encryption configuration (separate or inline)."""
    _check_buckets(
        args,
        report,
        "aws:s3/bucketServerSideEncryptionConfiguration",
        _sse_ok,
        "server-side encryption configuration",
        inline=_inline_sse,
    )


# ---------------------------------------------------------------------------- public access


def _pab_ok(props: Any) -> bool:
    return all(get(props, flag) is True for flag in PUBLIC_ACCESS_FLAGS)


@rule("s3-public-access-block", "All four public-access-block flags on", "mandatory")
def s3_public_access_block(args: Any, report: Report) -> None:
    """All four public-access-block flags on."""
    if args.resource_type == "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock":
        off = [flag for flag in PUBLIC_ACCESS_FLAGS if get(args.props, flag) is not True]
        if off:
            report(f"{who(args)}: {', '.join(off)} must be true")


@rule(
    "s3-bucket-has-public-access-block",
    "Every bucket has a complete public access block",
    "mandatory",
    kind="stack",
)
def s3_bucket_has_public_access_block(args: Any, report: Report) -> None:
    """Every bucket has a public access block with all four flags on."""
    _check_buckets(
        args,
        report,
        "aws:s3/bucketPublicAccessBlock",
        _pab_ok,
        "public access block with all four flags",
    )


# ---------------------------------------------------------------------------- versioning


def _versioning_ok(props: Any) -> bool:
    return bool(get(props, "versioningConfiguration", "status") == "Enabled")


@rule("s3-versioning", "Bucket versioning enabled", "mandatory")
def s3_versioning(args: Any, report: Report) -> None:
    """Versioning enabled."""
    if args.resource_type.startswith("aws:s3/bucketVersioning") and not _versioning_ok(args.props):
        report(f"{who(args)}: versioningConfiguration.status must be Enabled")


def _inline_versioning(props: Any) -> bool:
    return get(props, "versioning", "enabled") is True


@rule(
    "s3-bucket-has-versioning",
    "Every bucket has versioning enabled",
    "mandatory",
    kind="stack",
)
def s3_bucket_has_versioning(args: Any, report: Report) -> None:
    """Every bucket has versioning enabled (separately or inline)."""
    _check_buckets(
        args,
        report,
        "aws:s3/bucketVersioning",
        _versioning_ok,
        "versioning enabled",
        inline=_inline_versioning,
    )


# ---------------------------------------------------------------------------- TLS only


def _tls_only(props: Any) -> bool:
    for statement in statements(get(props, "policy")):
        condition = get(statement, "Condition", "Bool", "aws:SecureTransport")
        if statement.get("Effect") == "Deny" and str(condition).lower() == "false":
            return True
    return False


@rule("s3-tls-only", "Bucket policies deny non-TLS requests", "mandatory")
def s3_tls_only(args: Any, report: Report) -> None:
    """A bucket policy must deny requests without TLS."""
    if args.resource_type == "aws:s3/bucketPolicy:BucketPolicy" and not _tls_only(args.props):
        report(f"{who(args)}: policy has no Deny on aws:SecureTransport = false")


@rule(
    "s3-bucket-has-tls-policy",
    "Every bucket has a TLS-only policy",
    "mandatory",
    kind="stack",
)
def s3_bucket_has_tls_policy(args: Any, report: Report) -> None:
    """Every bucket has a policy that denies requests without TLS."""
    _check_buckets(args, report, "aws:s3/bucketPolicy", _tls_only, "TLS-only bucket policy")


# ---------------------------------------------------------------------------- other accounts

ROOT_ARN = re.compile(r"^arn:aws(?:-[a-z]+)*:iam::(\d{12}):root$")
ROLE_ARN = re.compile(r"^arn:aws(?:-[a-z]+)*:iam::(\d{12}):role/[\w+=,.@/-]+\*?$")
"""A role ARN; an ``ArnLike`` value may end its name with ``*`` (a name prefix)."""
READ_ACTION = re.compile(r"^s3:(?:Get|List)[A-Za-z]+$")
"""A named S3 read action (``s3:GetObject``, ``s3:ListBucket``…; no wildcard)."""


def _grant_problems(statement: Mapping[str, Any]) -> list[str]:
    """What is wrong with one Allow statement of a bucket policy (empty if nothing)."""
    principal = statement.get("Principal")
    named = as_list(get(principal, "AWS")) if isinstance(principal, Mapping) else []
    if principal == "*" or "*" in named:
        return ["grants every principal ('*')"]
    if not named:
        return []  # a service principal, not an account
    problems = []
    if "NotAction" in statement or "NotPrincipal" in statement:
        problems.append("uses NotAction/NotPrincipal")
    writes = [a for a in as_list(statement.get("Action")) if not READ_ACTION.match(str(a))]
    if writes:
        problems.append(f"allows {writes}: only named s3:Get…/s3:List… actions")
    accounts = set()
    for arn in named:
        match = ROOT_ARN.match(str(arn)) or ROLE_ARN.match(str(arn))
        if match is None or "*" in str(arn):
            problems.append(f"principal {arn!r} is neither an account root nor a role ARN")
        else:
            accounts.add(match.group(1))
    conditions = statement.get("Condition") or {}
    roles = [
        str(value)
        for operator in ("ArnEquals", "ArnLike")
        for value in as_list(get(conditions, operator, "aws:PrincipalArn"))
    ]
    unnamed = [r for r in roles if not (m := ROLE_ARN.match(r)) or m.group(1) not in accounts]
    if not roles or unnamed:
        problems.append(
            "no ArnEquals/ArnLike aws:PrincipalArn condition naming roles of the principal's "
            f"account{f' (not roles there: {unnamed})' if unnamed else ''}: an account root "
            "alone admits every principal of that account"
        )
    return problems


@rule(
    "s3-cross-account-read-only",
    "A bucket policy grants other accounts only named reads, to roles named by aws:PrincipalArn",
    "mandatory",
)
def s3_cross_account_read_only(args: Any, report: Report) -> None:
    """Every Allow statement of a bucket policy with an AWS principal (another account: the
    stacks grant their own roles through IAM) allows only ``s3:Get…``/``s3:List…`` actions, and
    names the roles with an ``ArnEquals``/``ArnLike`` ``aws:PrincipalArn`` condition."""
    if args.resource_type != "aws:s3/bucketPolicy:BucketPolicy":
        return
    for statement in statements(get(args.props, "policy")):
        if statement.get("Effect") == "Allow":
            sid = statement.get("Sid", "(no Sid)")
            for problem in _grant_problems(statement):
                report(f"{who(args)}: statement {sid} {problem} (policy)")
