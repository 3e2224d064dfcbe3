"""RBAC of drift-triggered retraining: the service account the monitor runs as may get the one
training CronWorkflow the rendered monitor names and create workflows, in its namespace — and
nothing more; an env whose monitor does not train gets no grant. The wiring check that says so
catches a planted wider rule, a rule in another namespace and a name that does not match."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from stacks.components.cluster_services import RETRAIN_ROLE, retrain_role_rules, retrain_target
from tests.conftest import StackPlans
from tests.support.charts import concrete

ENVS = ("dev", "staging", "prod")
STACKS = Path(__file__).resolve().parents[2] / "stacks"
ROLE = "kubernetes:rbac.authorization.k8s.io/v1:Role"
BINDING = "kubernetes:rbac.authorization.k8s.io/v1:RoleBinding"
CRON = "kubernetes:argoproj.io/v1alpha1:CronWorkflow"
Objects = list[dict[str, Any]]


def objects_of(plan: Any) -> Objects:
    """The plan's Roles, RoleBindings and CronWorkflows as manifests."""
    kinds = {ROLE: "Role", BINDING: "RoleBinding", CRON: "CronWorkflow"}
    return [
        {"kind": kinds[r.type], **concrete(r.inputs)} for r in plan.resources if r.type in kinds
    ]


def grants(rules: list[dict[str, Any]]) -> set[tuple[str, str, str, tuple[str, ...]]]:
    """Each (apiGroup, resource, verb, resourceNames) a list of rules allows."""
    return {
        (group, resource, verb, tuple(sorted(rule.get("resourceNames") or ())))
        for rule in rules
        for group in rule.get("apiGroups") or []
        for resource in rule.get("resources") or []
        for verb in rule.get("verbs") or []
    }


def retrain_rbac_problems(objects: Objects) -> list[str]:
    """What is wrong with the monitor's retrain grant: it must be exactly get on the training
    CronWorkflow it names (by name) and create on workflows, in its namespace, bound to the
    account the monitor runs as; none at all when the monitor does not start runs."""
    crons = [o for o in objects if o["kind"] == "CronWorkflow"]
    target = retrain_target(crons)
    (monitor,) = [c for c in crons if c["metadata"]["name"] == "mlops-monitor"]
    namespace = monitor["metadata"]["namespace"]
    account = monitor["spec"]["workflowSpec"]["serviceAccountName"]
    problems = []
    expected: set[tuple[str, str, str, tuple[str, ...]]] = set()
    if target is not None:
        where, training = target
        if where != namespace:
            problems.append(f"the monitor starts runs in {where}, it runs in {namespace}")
        if not any(c["metadata"]["name"] == training for c in crons):
            problems.append(f"the monitor names CronWorkflow {training}, which is not rendered")
        expected = {
            ("argoproj.io", "cronworkflows", "get", (training,)),
            ("argoproj.io", "workflows", "create", ()),
        }
    subject = {"kind": "ServiceAccount", "name": account, "namespace": namespace}
    bound = {
        (b["metadata"]["namespace"], b["roleRef"]["name"])
        for b in objects
        if b["kind"] == "RoleBinding" and subject in (b.get("subjects") or [])
    }
    granted: set[tuple[str, str, str, tuple[str, ...]]] = set()
    for role in (o for o in objects if o["kind"] == "Role"):
        key = (role["metadata"]["namespace"], role["metadata"]["name"])
        if key not in bound:
            continue
        if key[0] != namespace:
            problems.append(f"Role {key[0]}/{key[1]} grants {account} outside {namespace}")
        granted |= grants(role.get("rules") or [])
    problems += [f"wider than needed: {g}" for g in sorted(granted - expected)]
    problems += [f"missing: {g}" for g in sorted(expected - granted)]
    return problems


def trains(env: str) -> bool:
    """The stack config's ``platform.trains`` (default true)."""
    config = yaml.safe_load((STACKS / f"Pulumi.{env}.yaml").read_text())["config"]
    return bool(config.get("mlops-platform:platform", {}).get("trains", True))


@pytest.mark.parametrize("env", ENVS)
def test_the_monitor_may_start_exactly_a_training_workflow(plans: StackPlans, env: str) -> None:
    objects = objects_of(plans[env])
    assert retrain_rbac_problems(objects) == []
    if not trains(env):  # serves candidates (staging, prod): no grant at all
        assert [o for o in objects if o["kind"] in ("Role", "RoleBinding")] == []
        return
    (role,) = [o for o in objects if o["kind"] == "Role"]
    assert role["metadata"] == {**role["metadata"], "name": RETRAIN_ROLE, "namespace": "mlops"}
    assert role["rules"] == [
        {
            "apiGroups": ["argoproj.io"],
            "resources": ["cronworkflows"],
            "resourceNames": ["mlops-training"],
            "verbs": ["get"],
        },
        {"apiGroups": ["argoproj.io"], "resources": ["workflows"], "verbs": ["create"]},
    ]
    (binding,) = [o for o in objects if o["kind"] == "RoleBinding"]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": RETRAIN_ROLE,
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "mlops-pipeline", "namespace": "mlops"}
    ]


def plant(objects: Objects, kind: str, change: Any) -> Objects:
    planted = copy.deepcopy(objects)
    for o in planted:
        if o["kind"] == kind:
            change(o)
    return planted


def monitor_env(objects: Objects, name: str, value: str) -> Objects:
    """`objects` with `name`=`value` in every container env of the monitor CronWorkflow."""
    planted = copy.deepcopy(objects)
    for o in planted:
        if o["kind"] == "CronWorkflow" and o["metadata"]["name"] == "mlops-monitor":
            for template in o["spec"]["workflowSpec"]["templates"]:
                env = (template.get("container") or {}).get("env")
                if env is not None:
                    env[:] = [e for e in env if e["name"] != name] + [
                        {"name": name, "value": value}
                    ]
    return planted


def test_the_wiring_check_catches_a_wider_or_misplaced_grant(plans: StackPlans) -> None:
    objects = objects_of(plans["dev"])
    listing = plant(objects, "Role", lambda r: r["rules"][1]["verbs"].append("list"))
    assert retrain_rbac_problems(listing) == [
        "wider than needed: ('argoproj.io', 'workflows', 'list', ())"
    ]
    any_cron = plant(objects, "Role", lambda r: r["rules"][0].pop("resourceNames"))
    assert retrain_rbac_problems(any_cron) == [
        "wider than needed: ('argoproj.io', 'cronworkflows', 'get', ())",
        "missing: ('argoproj.io', 'cronworkflows', 'get', ('mlops-training',))",
    ]
    wildcard = plant(
        objects,
        "Role",
        lambda r: r["rules"].append({"apiGroups": [""], "resources": ["secrets"], "verbs": ["*"]}),
    )
    assert retrain_rbac_problems(wildcard) == ["wider than needed: ('', 'secrets', '*', ())"]

    def elsewhere(o: dict[str, Any]) -> None:
        o["metadata"]["namespace"] = "argo"

    moved = plant(plant(objects, "Role", elsewhere), "RoleBinding", elsewhere)
    problems = retrain_rbac_problems(moved)
    assert problems[0] == f"Role argo/{RETRAIN_ROLE} grants mlops-pipeline outside mlops"
    renamed = monitor_env(objects, "MLOPS_RETRAIN_CRON_WORKFLOW", "mlops-train")
    assert "the monitor names CronWorkflow mlops-train, which is not rendered" in (
        retrain_rbac_problems(renamed)
    )


def test_a_monitor_that_does_not_train_gets_no_grant(plans: StackPlans) -> None:
    objects = objects_of(plans["dev"])
    crons = [o for o in objects if o["kind"] == "CronWorkflow"]
    assert retrain_target(crons) == ("mlops", "mlops-training")
    not_training = monitor_env(objects, "MLOPS_TRAINS", "false")
    assert retrain_target([o for o in not_training if o["kind"] == "CronWorkflow"]) is None
    # the stack then creates no Role (retrain_target is what it asks); one left over is wider
    assert retrain_rbac_problems(not_training) == [
        "wider than needed: ('argoproj.io', 'cronworkflows', 'get', ('mlops-training',))",
        "wider than needed: ('argoproj.io', 'workflows', 'create', ())",
    ]
    assert retrain_role_rules("mlops-training")[0]["resourceNames"] == ["mlops-training"]
