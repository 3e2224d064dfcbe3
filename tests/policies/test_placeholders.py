"""The no-placeholders rule: warnings when exploring the shipped stacks offline, mandatory under
Pulumi, silent on a filled-in stack, and precise (resource, input path, value, config key) on a
placeholder planted in one."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from policies.engine import UNKNOWN, Resource, assess, evaluate, load_pack_config
from policies.rules import RULES
from policies.rules.placeholders import (
    OFFLINE_NOTE,
    PLACEHOLDERS,
    find,
    no_placeholders,
    stack_placeholders,
)
from stacks.offline.plan import Plan, plan_stack
from tests.conftest import REPO, StackPlans, run_cli

ENVS = ("dev", "staging", "prod")
RULE = "no-placeholders"
ONLY = [r for r in RULES if r.name == RULE]
KEY = re.compile(r"; set (mlops-platform:\S+) in the stack config")


def captured(plan: Plan) -> list[Resource]:
    return [
        Resource(r.type, r.name, r.inputs, urn=r.name)
        for r in plan.resources
        if not r.type.startswith("mlops:")
    ]


def unindexed(key: str) -> str:
    return re.sub(r"\[\d+\]$", "", key)


# ------------------------------------------------------------------ the shipped example stacks


@pytest.mark.parametrize("env", ENVS)
@pytest.mark.parametrize("preview", [True, False])
def test_the_shipped_stacks_plan_offline_with_the_placeholders_as_warnings(
    plans: StackPlans, env: str, preview: bool
) -> None:
    policy = plans.of(env, preview).policy
    assert policy["mode"] == "explore"
    assert policy["mandatory"] == 0, policy["violations"]  # `mlops infra plan` exits 0
    assert RULE not in {v["rule"] for v in policy["violations"]}
    warnings = policy["warnings"]
    assert warnings and {w["rule"] for w in warnings} == {RULE}
    assert all(w["level"] == "advisory" and w["pulumi_level"] == "mandatory" for w in warnings)
    assert policy["notes"] == [f"{RULE}: {OFFLINE_NOTE}"]
    assert "placeholders are warnings offline; `pulumi up` refuses them" in policy["notes"][0]


@pytest.mark.parametrize("env", ENVS)
def test_the_same_findings_are_mandatory_in_pulumi_mode(plans: StackPlans, env: str) -> None:
    plan = plans[env]
    everything = {(w["resource"], w["message"]) for w in plan.policy["warnings"]}
    # the plan's resources carry secret inputs masked (a Secret's stringData): the findings in
    # them are left out of the comparison, and checked present in the plan itself
    explored = {(r, m) for r, m in everything if ": stringData." not in m}
    assert any("Secret 'cluster-services-gitops-repo': stringData.url" in m for _, m in everything)
    verdict = assess(captured(plan), load_pack_config(env), mode="pulumi")
    assert verdict.warnings == [] and verdict.notes == {}
    found = [v for v in verdict.violations if v.rule == RULE]
    assert {(v.resource, v.message) for v in found} == explored
    assert all(v.level == "mandatory" and v.pulumi_level is None for v in found)
    # and the plan itself, in pulumi mode, counts them as mandatory (`pulumi up` would refuse)
    strict = plan_stack(env, preview=False, policy_mode="pulumi").policy
    assert strict["mode"] == "pulumi" and strict["warnings"] == []
    assert strict["mandatory"] == len(everything)


@pytest.mark.parametrize("env", ENVS)
def test_every_warning_names_the_resource_the_input_the_value_and_a_key_to_set(
    plans: StackPlans, env: str
) -> None:
    policy = plans[env].policy
    # (a provider's own key, e.g. aws:allowedAccountIds, reaches no resource's inputs)
    to_replace = {
        unindexed(p["key"])
        for p in policy["placeholders"]
        if p["key"].startswith("mlops-platform:")
    }
    named = set()
    for warning in policy["warnings"]:
        message = warning["message"]
        assert f"'{warning['resource']}': " in message and " holds '" in message
        match = KEY.search(message)
        assert match, f"no stack config key named: {message}"
        named.add(match.group(1))
    # every key the rule names holds a placeholder in the stack config, and every placeholder
    # of the stack config reaches some resource (CONFIG_KEYS mirrors how stacks/ uses them)
    assert named == to_replace


@pytest.mark.parametrize("env", ENVS)
def test_the_plan_lists_every_placeholder_of_the_stack_config(plans: StackPlans, env: str) -> None:
    rows = plans[env].document()["policy"]["placeholders"]
    text = (REPO / "stacks" / f"Pulumi.{env}.yaml").read_text()
    for row in rows:
        assert set(row) == {"key", "value", "placeholder", "what"}
        assert row["key"].startswith(("mlops-platform:", "aws:")) and row["value"] in text
    keys = {row["key"] for row in rows}
    assert {
        "mlops-platform:storage.bucketPrefix",
        "mlops-platform:platform.gitopsRepoUrl",
        "mlops-platform:workflows.image",
        "mlops-platform:workflows.settings.MLOPS_GITOPS_REMOTE",
        "aws:allowedAccountIds[0]",  # the provider refuses any other account
    } <= keys
    if env != "prod":  # prod's API endpoint is private: no CIDR to replace
        assert "mlops-platform:cluster.publicAccessCidrs[0]" in keys
    # every placeholder-looking value of the file is listed (none hides in an unlisted key)
    for _, pattern in PLACEHOLDERS:
        for match in pattern.finditer(text):
            assert any(match.group(0) in row["value"] for row in rows), match.group(0)


# ------------------------------------------------------------------ a filled-in stack, planted


REAL_ACCOUNTS = {"1": "480913276154", "2": "480913276254", "3": "480913276354"}
"""One real-looking account per example account: each env is its own account."""
FILLED: tuple[tuple[re.Pattern[str], Any], ...] = (
    (re.compile(r"(?<!\d)(\d)\1{11}(?!\d)"), lambda m: REAL_ACCOUNTS[m.group(1)]),
    (re.compile(r"example-org"), "acme-ml"),
    (re.compile(r"203\.0\.113\.0/24"), "85.214.10.0/24"),
    (re.compile(r"key/REPLACE_ME"), "key/5b1d3a52-8c1e-4d55-9a8e-2f0c6b7e9d10"),
)


def _fill(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _fill(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v) for v in value]
    if isinstance(value, str):
        for pattern, real in FILLED:
            value = pattern.sub(real, value)
    return value


def filled_config(env: str) -> dict[str, Any]:
    document = yaml.safe_load((REPO / "stacks" / f"Pulumi.{env}.yaml").read_text())
    return {"config": _fill(document["config"])}


def write(tmp_path: Path, env: str, document: dict[str, Any]) -> Path:
    path = tmp_path / f"Pulumi.{env}.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_a_filled_in_stack_has_no_placeholder(tmp_path: Path, env: str) -> None:
    path = write(tmp_path, env, filled_config(env))
    plan = plan_stack(env, config_file=path, preview=False)
    assert plan.policy["warnings"] == [] and plan.policy["notes"] == []
    assert plan.policy["placeholders"] == []
    strict = plan_stack(env, config_file=path, preview=False, policy_mode="pulumi").policy
    assert strict["mandatory"] == 0, strict["violations"]  # `pulumi up` would accept it


PLANTS = [
    (
        ("mlops-platform:platform", "gitopsRepoUrl"),
        "https://github.com/example-org/mlops-platform.git",
        "cluster-services-root-app",
        "spec.source.repoURL",
        "mlops-platform:platform.gitopsRepoUrl",
    ),
    (
        ("mlops-platform:cluster", "ciRoleArn"),
        "arn:aws:iam::111111111111:role/mlops-ci",
        "cluster-eks",
        "accessEntries.ci.principalArn",
        "mlops-platform:cluster.ciRoleArn",
    ),
    (
        ("mlops-platform:workflows", "settings", "MLOPS_GITOPS_REMOTE"),
        "git@github.com:REPLACE_ME/gitops.git",
        "cluster-services-cron-mlops-training",
        "spec.workflowSpec.templates[name=shards].container.env[name=MLOPS_GITOPS_REMOTE].value",
        "mlops-platform:workflows.settings.MLOPS_GITOPS_REMOTE",
    ),
]


@pytest.mark.parametrize(
    ("where", "value", "resource", "path", "key"), PLANTS, ids=[p[4] for p in PLANTS]
)
def test_one_planted_placeholder_is_flagged_with_its_key_and_path(
    tmp_path: Path, where: tuple[str, ...], value: str, resource: str, path: str, key: str
) -> None:
    document = filled_config("prod")
    target = document["config"]
    for part in where[:-1]:
        target = target[part]
    target[where[-1]] = value
    config_file = write(tmp_path, "prod", document)

    plan = plan_stack("prod", config_file=config_file, preview=False)
    assert plan.policy["mandatory"] == 0  # offline: a warning, the plan succeeds
    assert [p["key"] for p in plan.policy["placeholders"]] == [key]
    flagged = [w for w in plan.policy["warnings"] if w["resource"] == resource]
    assert len(flagged) == 1, plan.policy["warnings"]
    message = flagged[0]["message"]
    assert f"'{resource}': {path}" in message and f"holds {value!r}" in message
    assert f"set {key} in the stack config" in message
    assert {KEY.search(w["message"]).group(1) for w in plan.policy["warnings"]} == {key}  # type: ignore[union-attr]

    strict = plan_stack("prod", config_file=config_file, preview=False, policy_mode="pulumi")
    assert strict.policy["mandatory"] == len(plan.policy["warnings"])
    assert {v["rule"] for v in strict.policy["violations"]} == {RULE}


# ------------------------------------------------------------------ the rule on its own


@pytest.mark.parametrize(
    "text",
    [
        "111111111111",
        "arn:aws:iam::999999999999:role/x",
        "https://api.example.com/v1",
        "mlops.example",
        "https://gitlab.com/your-org/gitops.git",
        "203.0.113.7",
        "198.51.100.0/24",
        "2001:db8::/32",
        "REPLACE_ME",
        "change-me",
        "<your-account-id>",
    ],
)
def test_what_counts_as_a_placeholder(text: str) -> None:
    assert find(text), text


@pytest.mark.parametrize(
    "text",
    [
        "123456789012",  # the mocks' account (and AWS's documentation one): see the module
        "arn:aws:iam::480913276154:role/mlops-ci",
        "10.20.0.0/16",
        "http://mlflow.mlflow.svc.cluster.local:5000",
        "cc-1042",
        "an example of a description",
        "https://github.com/acme-ml/examples.git",
        "1111111111111",  # thirteen digits: not an account ID
    ],
)
def test_what_does_not(text: str) -> None:
    assert find(text) == [], text


def test_unknown_values_are_skipped_and_known_ones_still_checked() -> None:
    resource = Resource(
        "aws:s3/bucket:Bucket",
        "b",
        {"bucket": UNKNOWN, "tags": {"owner": "REPLACE_ME", "env": UNKNOWN}, "list": [UNKNOWN]},
        urn="b",
    )
    for mode in ("explore", "pulumi"):
        verdict = assess([resource], {}, mode=mode)  # type: ignore[arg-type]
        found = verdict.warnings if mode == "explore" else verdict.violations
        assert [v.rule for v in found if v.rule == RULE] == [RULE]
        assert "tags.owner holds 'REPLACE_ME'" in found[0].message


def test_the_rule_runs_on_pulumi_policys_own_unknown_checking_proxy() -> None:
    from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, unknown_checking_proxy

    props = unknown_checking_proxy(
        {
            "spec": {
                "containers": [
                    {"name": "main", "image": UNKNOWN_STRING_VALUE},
                    {"name": "side", "image": "111111111111.dkr.ecr.eu-west-1.amazonaws.com/x:1"},
                ]
            }
        }
    )
    messages: list[str] = []

    class Args:
        resource_type = "kubernetes:apps/v1:Deployment"
        name = "d"

        def __init__(self) -> None:
            self.props = props

        def get_config(self) -> dict[str, Any]:
            return {}

    no_placeholders(Args(), lambda message, urn=None: messages.append(message))
    assert len(messages) == 1
    assert "spec.containers[name=side].image holds '111111111111.dkr.ecr" in messages[0]


def test_allowed_values_are_not_flagged() -> None:
    resource = Resource("eks:index:Cluster", "c", {"publicAccessCidrs": ["203.0.113.0/24"]})
    assert assess([resource], {}, ONLY, mode="pulumi").violations != []
    config = {RULE: {"allowed": ["203.0.113.0/24"]}}
    assert assess([resource], config, ONLY, mode="pulumi").violations == []


def test_the_pack_config_still_decides_and_explore_never_raises_a_level() -> None:
    resource = Resource("eks:index:Cluster", "c", {"publicAccessCidrs": ["203.0.113.0/24"]})
    for mode in ("explore", "pulumi"):
        disabled = assess([resource], {RULE: "disabled"}, ONLY, mode)  # type: ignore[arg-type]
        assert disabled.violations == disabled.warnings == []
        advisory = assess([resource], {RULE: "advisory"}, ONLY, mode)  # type: ignore[arg-type]
        assert [(v.level, v.pulumi_level) for v in advisory.violations] == [("advisory", None)]
    # evaluate() keeps its (violations, skipped) answer: explore leaves the warnings out
    assert evaluate([resource], {}, ONLY) == ([], 0)
    assert [v.level for v in evaluate([resource], {}, ONLY, mode="pulumi")[0]] == ["mandatory"]
    with pytest.raises(ValueError, match="unknown policy mode"):
        assess([resource], {}, ONLY, mode="strict")  # type: ignore[arg-type]


def test_stack_placeholders_name_pulumi_config_paths() -> None:
    config = {
        "aws:region": "eu-west-1",
        "mlops-platform:cluster": {"publicAccessCidrs": ["10.0.0.0/8", "192.0.2.0/24"]},
        "mlops-platform:workflows": {"settings": {"MLOPS_GITOPS_REMOTE": "git@x:example-org/r"}},
    }
    assert [(r["key"], r["placeholder"]) for r in stack_placeholders(config)] == [
        ("mlops-platform:cluster.publicAccessCidrs[1]", "192.0.2.0/24"),
        ("mlops-platform:workflows.settings.MLOPS_GITOPS_REMOTE", "example-org"),
    ]


def test_pulumi_enforces_the_rule_as_mandatory() -> None:
    from pulumi_policy import EnforcementLevel

    from policies.pack import build_policies

    (policy,) = [p for p in build_policies() if p.name == RULE]
    assert policy.enforcement_level == EnforcementLevel.MANDATORY
    assert policy.config_schema is not None


@pytest.mark.integration
def test_mlops_infra_plan_succeeds_on_the_shipped_stack_and_says_why() -> None:
    done = run_cli(["infra", "plan", "--stack", "dev"])
    assert done.returncode == 0, done.stderr[-2000:]
    text = " ".join(done.stdout.split())
    assert "placeholders are warnings offline; `pulumi up` refuses them" in text
    assert "mlops-platform:storage.bucketPrefix = mlops-platform-dev-111111111111" in text
    assert "mandatory policy violation" not in done.stderr
