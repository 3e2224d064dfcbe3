"""The promotion chain's stack config (``mlops-platform:candidates``): the three stack files
agree about it (the same accounts and chain, each env's account and curated bucket its own), and
a wrong value in one file is one error naming the key. The grants built from it:
test_candidate_grants.py."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
import yaml

from pipelines.errors import PipelineError
from stacks.config import parse_stack_config
from tests.conftest import REPO

ENVS = ("dev", "staging", "prod")
ACCOUNTS = {"dev": "111111111111", "staging": "222222222222", "prod": "333333333333"}


def bucket(env: str) -> str:
    return f"mlops-platform-{env}-{ACCOUNTS[env]}-curated"


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
