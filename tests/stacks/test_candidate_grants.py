"""The cross-account grants a candidate move needs, on the three stacks' plans (Pulumi mocks).

A move into an env runs with its pipeline role and reads the other envs' curated buckets: every
other env's ledger (``decisions/<env>/``: the gate's record, rejections, the candidate record)
and, in the env just before it, the artifacts (``bentos/``, ``features/``). The keys below are
derived from `pipelines.layout` (what the code reads); each must be allowed on BOTH sides — the
source's bucket policy and key policy, and the reader's IAM policy — and nothing beyond them.
Planted instances: a grant removed, a grant widened, a stack config that disagrees with another.
"""

from __future__ import annotations

import copy
import fnmatch
import json
from collections.abc import Mapping
from typing import Any

import pytest

from pipelines import layout
from stacks.offline.plan import Plan
from tests.conftest import StackPlans
from tests.support.plans import one

ENVS = ("dev", "staging", "prod")
ACCOUNTS = {"dev": "111111111111", "staging": "222222222222", "prod": "333333333333"}
REGION = "eu-west-1"


def bucket(env: str) -> str:
    return f"mlops-platform-{env}-{ACCOUNTS[env]}-curated"


def role(env: str) -> str:
    return f"arn:aws:iam::{ACCOUNTS[env]}:role/mlops-{env}-pipeline"


SSE = "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
BUCKET_POLICY = "aws:s3/bucketPolicy:BucketPolicy"


def document(plan: Plan, token: str, name: str, key: str = "policy") -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(one(plan, token, name).inputs[key])
    return parsed


def bucket_policy(plan: Plan) -> list[dict[str, Any]]:
    policy = document(plan, "aws:s3/bucketPolicy:BucketPolicy", "storage-curated")
    return list(policy["Statement"])


def pipeline_policy(plan: Plan) -> list[dict[str, Any]]:
    return list(document(plan, "aws:iam/rolePolicy:RolePolicy", "identity-pipeline")["Statement"])


def key_policy(plan: Plan) -> list[dict[str, Any]]:
    return list(document(plan, "aws:kms/key:Key", "curated-key")["Statement"])


# ---------------------------------------------------------------- what a move reads, by the code


def reads(source: str, previous: bool) -> list[tuple[str, str, str | None]]:
    """(action, resource ARN, list prefix) of what a move reads in `source`'s curated bucket;
    the artifacts only when `source` is the env just before the target."""
    root = f"arn:aws:s3:::{bucket(source)}"
    ledger = f"v1/{layout.decisions_prefix(source)}"
    touched: list[tuple[str, str, str | None]] = [
        ("s3:ListBucket", root, ledger),
        ("s3:GetObject", f"{root}/v1/{layout.decision(source, '20261201T000000Z', 'gate')}", None),
    ]
    if previous:
        dataset = layout.dataset("1h", "ab12cd")
        touched += [
            ("s3:ListBucket", root, f"v1/{layout.candidates_prefix(source)}"),
            ("s3:GetObject", f"{root}/v1/{layout.candidate(source, '0123456789abcdef')}", None),
            ("s3:GetObject", f"{root}/v1/{layout.model_archive('market-direction', 7)}", None),
            ("s3:GetObject", f"{root}/v1/{dataset}/manifest.json", None),
            ("s3:GetObject", f"{root}/v1/{dataset}/labelled.parquet", None),
            ("s3:GetObject", f"{root}/v1/{layout.drift_calibration(dataset, 'ff00')}", None),
        ]
    return touched


def _matches(statement: dict[str, Any], action: str, arn: str, prefix: str | None) -> bool:
    if statement["Effect"] != "Allow" or action not in statement["Action"]:
        return False
    if not any(fnmatch.fnmatchcase(arn, p) for p in statement["Resource"]):
        return False
    patterns = statement.get("Condition", {}).get("StringLike", {}).get("s3:prefix")
    return patterns is None or (
        prefix is not None and any(fnmatch.fnmatchcase(prefix, p) for p in patterns)
    )


def bucket_allows(
    statements: list[dict[str, Any]], who: str, action: str, arn: str, prefix: str | None
) -> bool:
    """Whether the bucket policy lets the role `who` (of another account) do `action`."""
    account = who.split(":")[4]
    return any(
        s.get("Principal") == {"AWS": f"arn:aws:iam::{account}:root"}
        and s["Condition"]["ArnEquals"]["aws:PrincipalArn"] == who
        and _matches(s, action, arn, prefix)
        for s in statements
    )


def iam_allows(statements: list[dict[str, Any]], action: str, arn: str, prefix: str | None) -> bool:
    return any(_matches(s, action, arn, prefix) for s in statements)


def missing(plans: Mapping[str, Plan], target: str) -> list[str]:
    """Each read of a move into `target` (or, in dev, of its ``candidates list``/``reject``,
    which read every ledger too) that the source's bucket policy or the target's IAM policy
    does not allow."""
    index = ENVS.index(target)
    problems = []
    for source in ENVS:
        if source == target:
            continue
        granted = bucket_policy(plans[source])
        held = pipeline_policy(plans[target])
        for action, arn, prefix in reads(source, ENVS.index(source) == index - 1):
            if not bucket_allows(granted, role(target), action, arn, prefix):
                problems.append(
                    f"{source}'s bucket policy: {target} cannot {action} {arn} {prefix}"
                )
            if not iam_allows(held, action, arn, prefix):
                problems.append(f"{target}'s role: cannot {action} {arn} {prefix}")
    return problems


@pytest.mark.parametrize("target", ENVS)
def test_a_move_can_read_everything_it_reads_in_the_other_accounts(
    plans: StackPlans, target: str
) -> None:
    assert missing(plans, target) == []


def test_the_read_check_catches_a_removed_or_misplaced_grant(plans: StackPlans) -> None:
    def with_dev_policy(edit: Any) -> list[str]:
        edited = copy.deepcopy(plans["dev"])
        policy_resource = one(edited, BUCKET_POLICY, "storage-curated")
        policy = json.loads(policy_resource.inputs["policy"])
        policy["Statement"] = edit(policy["Statement"])
        policy_resource.inputs["policy"] = json.dumps(policy)
        return missing({**{e: plans[e] for e in ENVS}, "dev": edited}, "staging")

    dropped = with_dev_policy(lambda ss: [s for s in ss if s.get("Sid") != "CandidateReadStaging"])
    assert dropped and all("dev's bucket policy" in p and "GetObject" in p for p in dropped)

    def to_prod(statements: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for s in statements:
            if s.get("Sid", "").endswith("Staging"):
                s["Condition"]["ArnEquals"]["aws:PrincipalArn"] = role("prod")
        return statements

    assert len(with_dev_policy(to_prod)) == len(reads("dev", True))


# ---------------------------------------------------------------- the exact statements


def expected_grants(source: str) -> list[dict[str, Any]]:
    """What `source`'s curated bucket policy grants the other envs, spelled out."""
    arn = f"arn:aws:s3:::{bucket(source)}"
    statements = []
    for reader in ENVS:
        if reader == source:
            continue
        prefixes = [f"v1/decisions/{source}/"]
        if ENVS.index(reader) == ENVS.index(source) + 1:
            prefixes += ["v1/bentos/", "v1/features/"]
        who = {"ArnEquals": {"aws:PrincipalArn": role(reader)}}
        principal = {"AWS": f"arn:aws:iam::{ACCOUNTS[reader]}:root"}
        name = reader.title()
        statements += [
            {
                "Sid": f"CandidateRead{name}",
                "Effect": "Allow",
                "Principal": principal,
                "Action": ["s3:GetObject"],
                "Resource": [f"{arn}/{p}*" for p in prefixes],
                "Condition": who,
            },
            {
                "Sid": f"CandidateList{name}",
                "Effect": "Allow",
                "Principal": principal,
                "Action": ["s3:ListBucket"],
                "Resource": [arn],
                "Condition": {**who, "StringLike": {"s3:prefix": [f"{p}*" for p in prefixes]}},
            },
        ]
    return statements


@pytest.mark.parametrize("env", ENVS)
def test_the_curated_bucket_grants_exactly_the_reads_of_the_other_envs(
    plans: StackPlans, env: str
) -> None:
    grants = [s for s in bucket_policy(plans[env]) if s["Effect"] == "Allow"]
    assert grants == expected_grants(env)


def test_artifacts_flow_forward_only(plans: StackPlans) -> None:
    """prod (the last stage) lets nobody read its artifacts, only its ledger; dev (the first)
    reads nobody's artifacts, only the ledgers."""
    prod_out = [
        r for s in bucket_policy(plans["prod"]) if s["Effect"] == "Allow" for r in s["Resource"]
    ]
    assert prod_out and all(r.endswith(("/v1/decisions/prod/*", "-curated")) for r in prod_out)
    dev_in = [
        r
        for s in pipeline_policy(plans["dev"])
        if s.get("Sid", "").startswith("CandidateRead")
        for r in s["Resource"]
    ]
    assert sorted(dev_in) == [
        f"arn:aws:s3:::{bucket('prod')}/v1/decisions/prod/*",
        f"arn:aws:s3:::{bucket('staging')}/v1/decisions/staging/*",
    ]


@pytest.mark.parametrize("env", ENVS)
def test_the_pipeline_role_reads_exactly_those_prefixes_of_the_other_buckets(
    plans: StackPlans, env: str
) -> None:
    granted = {
        s["Sid"]: s
        for s in pipeline_policy(plans[env])
        if s.get("Sid", "").startswith(("CandidateRead", "CandidateList"))
    }
    expected: dict[str, dict[str, Any]] = {}
    for source in ENVS:
        if source == env:
            continue
        arn = f"arn:aws:s3:::{bucket(source)}"
        prefixes = [f"v1/decisions/{source}/"]
        if ENVS.index(source) == ENVS.index(env) - 1:
            prefixes += ["v1/bentos/", "v1/features/"]
        expected[f"CandidateRead{source.title()}"] = {
            "Sid": f"CandidateRead{source.title()}",
            "Effect": "Allow",
            "Action": ["s3:GetObject"],
            "Resource": [f"{arn}/{p}*" for p in prefixes],
        }
        expected[f"CandidateList{source.title()}"] = {
            "Sid": f"CandidateList{source.title()}",
            "Effect": "Allow",
            "Action": ["s3:ListBucket"],
            "Resource": [arn],
            "Condition": {"StringLike": {"s3:prefix": [f"{p}*" for p in prefixes]}},
        }
    assert granted == expected


@pytest.mark.parametrize("env", ENVS)
def test_the_pipeline_role_is_named_and_decrypts_other_keys_only_through_s3(
    plans: StackPlans, env: str
) -> None:
    role_resource = one(plans[env], "aws:iam/role:Role", "identity-pipeline")
    assert role_resource.inputs["name"] == f"mlops-{env}-pipeline"
    decrypts = [s for s in pipeline_policy(plans[env]) if "kms:Decrypt" in s["Action"]]
    others = [e for e in ENVS if e != env]
    assert [s["Resource"] for s in decrypts] == [
        [f"arn:aws:kms:{REGION}:{ACCOUNTS[o]}:key/*"] for o in others
    ]
    for statement, other in zip(decrypts, others, strict=True):
        assert statement["Action"] == ["kms:Decrypt"]
        assert statement["Condition"] == {
            "StringEquals": {"kms:ViaService": f"s3.{REGION}.amazonaws.com"},
            "StringLike": {
                "kms:EncryptionContext:aws:s3:arn": [
                    f"arn:aws:s3:::{bucket(other)}",
                    f"arn:aws:s3:::{bucket(other)}/*",
                ]
            },
        }


@pytest.mark.parametrize("env", ENVS)
def test_the_curated_key_is_rotated_and_admits_the_other_roles_only_to_decrypt_through_s3(
    plans: StackPlans, env: str
) -> None:
    plan = plans[env]
    key = one(plan, "aws:kms/key:Key", "curated-key")
    assert key.inputs["enableKeyRotation"] is True
    sse = one(plan, SSE, "storage-curated")
    (rule,) = sse.inputs["rules"]
    assert rule["bucketKeyEnabled"] is True
    assert rule["applyServerSideEncryptionByDefault"]["kmsMasterKeyId"].endswith(":curated-key")
    statements = key_policy(plan)
    admin, account, *readers = statements
    assert admin["Principal"] == {"AWS": f"arn:aws:iam::{ACCOUNTS[env]}:root"}
    assert admin["Action"] == "kms:*"
    assert account["Condition"]["StringEquals"] == {
        "kms:CallerAccount": ACCOUNTS[env],
        "kms:ViaService": f"s3.{REGION}.amazonaws.com",
    }
    assert [(r["Principal"], r["Action"], r["Condition"]) for r in readers] == [
        (
            {"AWS": f"arn:aws:iam::{ACCOUNTS[other]}:root"},
            "kms:Decrypt",
            {
                "StringEquals": {"kms:ViaService": f"s3.{REGION}.amazonaws.com"},
                "ArnEquals": {"aws:PrincipalArn": role(other)},
            },
        )
        for other in ENVS
        if other != env
    ]
    # the other buckets keep the account's aws/s3 key: nothing reads them from elsewhere
    for kind in ("raw", "artifacts"):
        default = one(plan, SSE, f"storage-{kind}").inputs["rules"][0]
        assert "kmsMasterKeyId" not in default["applyServerSideEncryptionByDefault"]
