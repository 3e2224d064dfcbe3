"""The CI roles GitHub Actions assumes (stacks/components/ci.py), under Pulumi mocks: each trusts
one exact subject of the configured repository, and each grants what its job needs only."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipelines.errors import PipelineError
from policies.engine import Resource, evaluate, load_pack_config
from stacks.config import load_stack_config, parse_stack_config
from stacks.offline.plan import Plan, PlannedResource, plan_stack
from tests.conftest import REPO, StackPlans

ENVS = ("dev", "staging", "prod")
HOST = "token.actions.githubusercontent.com"


def of(plan: Plan, token: str, name: str) -> PlannedResource:
    return next(r for r in plan.resources if r.type == token and r.name == name)


def trust(plan: Plan, kind: str) -> dict[str, Any]:
    document = json.loads(of(plan, "aws:iam/role:Role", f"ci-{kind}").inputs["assumeRolePolicy"])
    (statement,) = document["Statement"]
    return dict(statement)


def policy(plan: Plan, kind: str) -> list[dict[str, Any]]:
    resource = of(plan, "aws:iam/rolePolicy:RolePolicy", f"ci-{kind}")
    return list(json.loads(resource.inputs["policy"])["Statement"])


@pytest.mark.parametrize("env", ENVS)
def test_each_role_trusts_one_exact_subject_of_the_repository(plans: StackPlans, env: str) -> None:
    plan, config = plans[env], load_stack_config(env)
    (provider,) = [r for r in plan.resources if r.type.endswith("OpenIdConnectProvider")]
    assert provider.inputs["url"] == f"https://{HOST}"
    assert provider.inputs["clientIdLists"] == ["sts.amazonaws.com"]
    repo = f"repo:{config.ci.github_repository}"
    expected = {
        "images": f"{repo}:ref:refs/heads/main",
        "preview": f"{repo}:pull_request",
        "deploy": f"{repo}:environment:{env}",
    }
    for kind, subject in expected.items():
        statement = trust(plan, kind)
        assert statement["Principal"]["Federated"].endswith(f":oidc-provider/{HOST}")
        assert statement["Action"] == "sts:AssumeRoleWithWebIdentity"
        assert statement["Condition"] == {
            "StringEquals": {f"{HOST}:aud": "sts.amazonaws.com", f"{HOST}:sub": subject}
        }
    # the deploy role is the one the cluster's access entry names (cluster.ciRoleArn)
    deploy = of(plan, "aws:iam/role:Role", "ci-deploy").inputs
    assert config.cluster.ci_role_arn.endswith(f":role{deploy['path']}{deploy['name']}")
    names = {of(plan, "aws:iam/role:Role", f"ci-{k}").inputs["name"] for k in ("images", "preview")}
    assert names == {f"mlops-{env}-ci-images", f"mlops-{env}-ci-preview"}


@pytest.mark.parametrize("env", ENVS)
def test_the_images_role_pushes_to_this_envs_repositories_only(plans: StackPlans, env: str) -> None:
    plan = plans[env]
    repositories = sorted(  # the serving image only in dev: the later envs get it replicated
        f"arn:aws:ecr:eu-west-1:123456789012:{r.name}"
        for r in plan.resources
        if r.type == "aws:ecr/repository:Repository"
        and (env == "dev" or r.inputs["name"] != "mlops-serving")
    )
    token, push = policy(plan, "images")
    assert token == {"Effect": "Allow", "Action": ["ecr:GetAuthorizationToken"], "Resource": ["*"]}
    assert push["Resource"] == repositories and len(repositories) == (3 if env == "dev" else 2)
    assert all(a.startswith("ecr:") and "*" not in a for a in push["Action"])
    assert "ecr:PutImage" in push["Action"] and "ecr:DeleteRepository" not in push["Action"]
    attached = [r for r in plan.resources if r.type.endswith("RolePolicyAttachment")]
    assert "ci-images" not in {r.name for r in attached}


@pytest.mark.parametrize("env", ENVS)
def test_preview_reads_and_deploy_is_broad_but_never_iam_star(plans: StackPlans, env: str) -> None:
    plan, config = plans[env], load_stack_config(env).ci
    statements = policy(plan, "preview")
    writes = [s for s in statements if set(s["Action"]) & {"s3:PutObject", "s3:DeleteObject"}]
    assert [s["Resource"] for s in writes] == [
        [f"arn:aws:s3:::{config.state_bucket}/.pulumi/locks/*"]
    ]
    assert {"Effect": "Allow", "Action": ["kms:Decrypt"], "Resource": [config.secrets_key_arn]} in (
        statements
    )
    attached = {
        r.name: r.inputs["policyArn"]
        for r in plan.resources
        if r.type == "aws:iam/rolePolicyAttachment:RolePolicyAttachment"
        and r.name.startswith("ci-")
    }
    assert attached == {
        "ci-preview": "arn:aws:iam::aws:policy/job-function/ViewOnlyAccess",
        "ci-deploy": "arn:aws:iam::aws:policy/PowerUserAccess",
    }
    (deploy,) = policy(plan, "deploy")
    assert all(a.startswith("iam:") and "*" not in a for a in deploy["Action"])


def test_an_existing_provider_is_reused_not_created(tmp_path: Path) -> None:
    document = yaml.safe_load((REPO / "stacks" / "Pulumi.staging.yaml").read_text())
    existing = f"arn:aws:iam::222222222222:oidc-provider/{HOST}"
    document["config"]["mlops-platform:ci"]["oidcProviderArn"] = existing
    path = tmp_path / "Pulumi.staging.yaml"
    path.write_text(yaml.safe_dump(document))
    plan = plan_stack("staging", config_file=path, preview=False)
    assert not [r for r in plan.resources if r.type.endswith("OpenIdConnectProvider")]
    assert {trust(plan, k)["Principal"]["Federated"] for k in ("images", "deploy")} == {existing}


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("githubRepository", "example-org/*", r"ci\.githubRepository: String should match"),
        ("deployEnvironment", "prod*", r"ci\.deployEnvironment: String should match"),
        ("imagesBranch", "release/*", r"ci\.imagesBranch: String should match"),
        ("oidcProviderArn", "arn:aws:iam::1:oidc-provider/x", r"not the ARN of GitHub's OIDC"),
        ("secretsKeyArn", "alias/pulumi-dev", r"ci\.secretsKeyArn: 'alias/pulumi-dev' is not"),
    ],
)
def test_a_wrong_ci_value_is_one_error_naming_the_key(field: str, value: str, message: str) -> None:
    document = yaml.safe_load((REPO / "stacks" / "Pulumi.dev.yaml").read_text())
    assert parse_stack_config(copy.deepcopy(document), "Pulumi.dev.yaml")[0].ci
    document["config"]["mlops-platform:ci"][field] = value
    with pytest.raises(PipelineError, match=message):
        parse_stack_config(document, "Pulumi.dev.yaml")


def _planted(plan: Plan, change: Any) -> list[str]:
    role = of(plan, "aws:iam/role:Role", "ci-deploy")
    statement = trust(plan, "deploy")
    change(statement)
    props = {
        **copy.deepcopy(role.inputs),
        "assumeRolePolicy": json.dumps({"Statement": [statement]}),
    }
    violations, _ = evaluate(
        [Resource(role.type, role.name, props, urn=role.name)], load_pack_config("prod")
    )
    return [f"{v.rule}: {v.message}" for v in violations]


def _condition(statement: dict[str, Any]) -> dict[str, Any]:
    return dict(statement["Condition"]["StringEquals"])


def test_the_trust_rule_refuses_a_wildcard_or_missing_condition(plans: StackPlans) -> None:
    plan = plans["prod"]
    assert _planted(plan, lambda s: None) == []
    wildcard = _planted(
        plan, lambda s: s["Condition"]["StringEquals"].update({f"{HOST}:sub": "repo:o/r:*"})
    )
    assert len(wildcard) == 1 and "ci-oidc-trust" in wildcard[0] and "'repo:o/r:*'" in wildcard[0]
    like = _planted(
        plan,
        lambda s: s.update(
            Condition={
                "StringEquals": {f"{HOST}:aud": "sts.amazonaws.com"},
                "StringLike": {f"{HOST}:sub": _condition(s)[f"{HOST}:sub"]},
            }
        ),
    )
    assert len(like) == 1 and "StringLike" in like[0]
    no_aud = _planted(plan, lambda s: s["Condition"]["StringEquals"].pop(f"{HOST}:aud"))
    assert len(no_aud) == 1 and f"{HOST}:aud" in no_aud[0]
    no_sub = _planted(plan, lambda s: s["Condition"]["StringEquals"].pop(f"{HOST}:sub"))
    assert len(no_sub) == 1 and "any repository" in no_sub[0]
    unscoped = _planted(
        plan, lambda s: s["Condition"]["StringEquals"].update({f"{HOST}:sub": "repo:o/r"})
    )
    assert len(unscoped) == 1 and "does not scope" in unscoped[0]
    no_condition = _planted(plan, lambda s: s.pop("Condition"))
    assert len(no_condition) == 2  # neither aud nor sub (found by the provider ARN)
