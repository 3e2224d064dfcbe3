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
import yaml

from pipelines import layout
from pipelines.errors import PipelineError
from stacks.config import parse_stack_config
from stacks.offline.plan import Plan
from tests.conftest import REPO, StackPlans

ENVS = ("dev", "staging", "prod")
ACCOUNTS = {"dev": "111111111111", "staging": "222222222222", "prod": "333333333333"}
REGION = "eu-west-1"


def bucket(env: str) -> str:
    return f"mlops-platform-{env}-{ACCOUNTS[env]}-curated"


def role(env: str) -> str:
    return f"arn:aws:iam::{ACCOUNTS[env]}:role/mlops-{env}-pipeline"


SSE = "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
BUCKET_POLICY = "aws:s3/bucketPolicy:BucketPolicy"


def resource(plan: Plan, token: str, name: str) -> Any:
    (found,) = [r for r in plan.resources if r.type == token and r.name == name]
    return found


def document(plan: Plan, token: str, name: str, key: str = "policy") -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(resource(plan, token, name).inputs[key])
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
        policy_resource = resource(edited, BUCKET_POLICY, "storage-curated")
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
    expected = {}
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
    role_resource = resource(plans[env], "aws:iam/role:Role", "identity-pipeline")
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
    key = resource(plan, "aws:kms/key:Key", "curated-key")
    assert key.inputs["enableKeyRotation"] is True
    sse = resource(plan, SSE, "storage-curated")
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
        default = resource(plan, SSE, f"storage-{kind}").inputs["rules"][0]
        assert "kmsMasterKeyId" not in default["applyServerSideEncryptionByDefault"]


# ---------------------------------------------------------------- the three stacks agree


def stack_file(env: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((REPO / "stacks" / f"Pulumi.{env}.yaml").read_text())
    return loaded


def disagreements(files: dict[str, dict[str, Any]]) -> list[str]:
    """Where the stack files disagree about the chain: its accounts, its stages, the region,
    each env's own account and curated bucket."""
    parsed = {env: parse_stack_config(doc, f"Pulumi.{env}.yaml") for env, doc in files.items()}
    problems = []
    for env, (config, providers) in parsed.items():
        first, (dev, dev_providers) = "dev", parsed["dev"]
        accounts = config.candidates.accounts if config.candidates else None
        if accounts != (dev.candidates.accounts if dev.candidates else None):
            problems.append(f"{env}: candidates.accounts {accounts} differs from {first}'s")
        stages = json.loads(config.workflows.settings.get("MLOPS_CANDIDATE_STAGES", "{}"))
        if stages != json.loads(dev.workflows.settings.get("MLOPS_CANDIDATE_STAGES", "{}")):
            problems.append(f"{env}: MLOPS_CANDIDATE_STAGES differs from {first}'s")
        if providers["aws:region"] != dev_providers["aws:region"]:
            problems.append(f"{env}: aws:region differs from {first}'s")
        if list(stages) != list(ENVS):
            problems.append(f"{env}: MLOPS_CANDIDATE_STAGES names {list(stages)}")
            continue
        index = ENVS.index(env)
        for other, (other_config, other_providers) in parsed.items():
            at = ENVS.index(other)
            if accounts is None or [accounts[at]] != other_providers["aws:allowedAccountIds"]:
                problems.append(f"{env}: the account of {other} is not {other}'s own")
            if stages[other] != other_config.storage.url("curated"):
                problems.append(f"{env}: the stage of {other} is not {other}'s curated bucket")
        assert index == list(stages).index(env)
    return problems


def test_the_three_stacks_agree_on_the_chain() -> None:
    assert disagreements({env: stack_file(env) for env in ENVS}) == []


def test_the_agreement_check_catches_a_disagreeing_stack() -> None:
    files = {env: stack_file(env) for env in ENVS}
    # prod names another account for itself in the chain: prod alone is still consistent when
    # its own slot is right, so change dev's slot (only the comparison across stacks sees it)
    files["prod"] = copy.deepcopy(files["prod"])
    files["prod"]["config"]["mlops-platform:candidates"]["accounts"][0] = "444444444444"
    assert disagreements(files) == [
        "prod: candidates.accounts ['444444444444', '222222222222', '333333333333'] differs "
        "from dev's",
        "prod: the account of dev is not dev's own",
    ]


def planted(env: str, edit: Any) -> dict[str, Any]:
    document = copy.deepcopy(stack_file(env))
    edit(document["config"])
    return document


def _stages(config: dict[str, Any], stages: dict[str, str]) -> None:
    config["mlops-platform:workflows"]["settings"]["MLOPS_CANDIDATE_STAGES"] = json.dumps(stages)


CHAIN = {e: f"s3://{bucket(e)}/v1" for e in ENVS}
BAD = [
    (
        lambda c: c["mlops-platform:candidates"].update(accounts=["111111111111", "222222222222"]),
        r"candidates\.accounts: lists 2 accounts, but .*MLOPS_CANDIDATE_STAGES names 3 envs",
    ),
    (
        lambda c: c["mlops-platform:candidates"].update(accounts=["1111", "2", "3"]),
        r"candidates\.accounts: '1111' is not a 12-digit AWS account id",
    ),
    (
        lambda c: c["mlops-platform:candidates"].update(
            accounts=["111111111111", "111111111111", "333333333333"]
        ),
        r"candidates\.accounts: .*lists an account twice",
    ),
    (
        lambda c: c.pop("mlops-platform:candidates"),
        r"candidates: .*MLOPS_CANDIDATE_STAGES is set, so candidates\.accounts must",
    ),
    (
        lambda c: _stages(c, {**CHAIN, "staging": "s3://someone-elses-bucket/v1"}),
        r"workflows\.settings\.MLOPS_CANDIDATE_STAGES: staging is s3://someone-elses-bucket/v1, "
        r"not this stack's curated bucket",
    ),
    (
        lambda c: _stages(c, {**CHAIN, "dev": "https://example.net/dev"}),
        r"workflows\.settings\.MLOPS_CANDIDATE_STAGES: dev is https://example.net/dev, not s3://<bucket>/<layoutRoot>",
    ),
    (
        lambda c: c.update({"aws:allowedAccountIds": ["999999999999"]}),
        r"candidates\.accounts: staging is 222222222222, but aws:allowedAccountIds is",
    ),
]


@pytest.mark.parametrize(("edit", "message"), BAD, ids=[m[:40] for _, m in BAD])
def test_a_wrong_chain_value_is_one_error_naming_the_key(edit: Any, message: str) -> None:
    with pytest.raises(PipelineError, match=r"Pulumi\.staging\.yaml: mlops-platform:" + message):
        parse_stack_config(planted("staging", edit), "Pulumi.staging.yaml")
