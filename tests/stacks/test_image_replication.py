"""The serving image reaches staging and prod by ECR replication from dev, on the three stacks'
plans (Pulumi mocks): dev replicates its ``mlops-serving`` — only it — to every later account
(a replicated image is not replicated again, so not through staging); each later account's
registry policy admits only dev's ``ecr:ReplicateImage``, into its own ``mlops-serving`` (created
by its stack: no ``ecr:CreateRepository``); each pipeline role may ``DescribeImages`` its own
serving repository only, the one ``MLOPS_SERVING_REPOSITORY`` names (the stack's own account and
region: checked against ``mlops infra ci-targets``). Planted: a setting naming another
repository."""

from __future__ import annotations

import json
from typing import Any

import pytest

from stacks.ci_targets import ci_targets
from stacks.components.image_replication import digest_statements
from stacks.config import load_stack_config
from stacks.offline.plan import Plan
from tests.conftest import StackPlans

ENVS = ("dev", "staging", "prod")
ACCOUNTS = {"dev": "111111111111", "staging": "222222222222", "prod": "333333333333"}
REGION = "eu-west-1"
REPLICATION = "aws:ecr/replicationConfiguration:ReplicationConfiguration"
REGISTRY_POLICY = "aws:ecr/registryPolicy:RegistryPolicy"


def of_type(plan: Plan, token: str) -> list[Any]:
    return [r for r in plan.resources if r.type == token]


def serving_arn(env: str) -> str:
    return f"arn:aws:ecr:{REGION}:{ACCOUNTS[env]}:repository/mlops-serving"


def test_dev_replicates_the_serving_repository_only_to_every_later_account(
    plans: StackPlans,
) -> None:
    (replication,) = of_type(plans["dev"], REPLICATION)
    assert replication.inputs["replicationConfiguration"] == {
        "rules": [
            {
                "destinations": [
                    {"region": REGION, "registryId": ACCOUNTS["staging"]},
                    {"region": REGION, "registryId": ACCOUNTS["prod"]},
                ],
                "repositoryFilters": [{"filter": "mlops-serving", "filterType": "PREFIX_MATCH"}],
            }
        ]
    }
    assert of_type(plans["dev"], REGISTRY_POLICY) == []  # nobody replicates into dev


@pytest.mark.parametrize("env", ["staging", "prod"])
def test_a_later_account_admits_only_devs_replication_into_its_serving_repository(
    plans: StackPlans, env: str
) -> None:
    assert of_type(plans[env], REPLICATION) == []  # no relay: dev replicates to each directly
    (policy,) = of_type(plans[env], REGISTRY_POLICY)
    assert json.loads(policy.inputs["policy"]) == {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "ReplicateServingImageFromOrigin",
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{ACCOUNTS['dev']}:root"},
                "Action": ["ecr:ReplicateImage"],
                "Resource": [serving_arn(env)],
            }
        ],
    }
    names = {r.inputs["name"] for r in of_type(plans[env], "aws:ecr/repository:Repository")}
    assert "mlops-serving" in names  # the repository replication writes into exists


@pytest.mark.parametrize("env", ENVS)
def test_each_pipeline_role_reads_image_digests_of_its_own_serving_repository(
    plans: StackPlans, env: str
) -> None:
    (role,) = [
        r
        for r in plans[env].resources
        if r.type == "aws:iam/rolePolicy:RolePolicy" and r.name == "identity-pipeline"
    ]
    statements = json.loads(role.inputs["policy"])["Statement"]
    ecr = [s for s in statements if any(str(a).startswith("ecr:") for a in s["Action"])]
    assert ecr == [
        {
            "Sid": "ServingImageDigests",
            "Effect": "Allow",
            "Action": ["ecr:DescribeImages"],
            "Resource": [serving_arn(env)],
        }
    ]
    setting = load_stack_config(env).workflows.settings["MLOPS_SERVING_REPOSITORY"]
    targets = ci_targets(env)
    assert setting == f"{targets['registry']}/mlops-serving"  # the stack's account and region
    assert targets["builds_serving"] is (env == "dev")  # the images job pushes it in dev only


def test_a_serving_repository_setting_that_is_not_one_is_refused() -> None:
    with pytest.raises(ValueError, match=r"is not <account>\.dkr\.ecr\.<region>"):
        digest_statements(f"{ACCOUNTS['dev']}.dkr.ecr.{REGION}.amazonaws.com/mlops-dev-serving")
    assert digest_statements(None) == []
