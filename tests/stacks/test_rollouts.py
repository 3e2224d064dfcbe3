"""The Argo Rollouts controller the stacks install (stacks/components/rollouts.py), rendered
offline from the vendored chart with the planned values: restricted pods, analysis Jobs sent to
the pipeline namespace where the pipeline service account and the Job's settings are, the RBAC
to run them, and the CRDs it installs accept the serving Rollout and AnalysisTemplate."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from stacks.components.monitoring import PUSHGATEWAY_URL
from stacks.components.rollouts import ANALYSIS_ENV_CONFIGMAP, JOB_NAMESPACE_ENV
from stacks.config import load_stack_config
from tests.conftest import StackPlans
from tests.gitops.test_overlays import rendered as overlay
from tests.stacks.test_charts import of_type
from tests.support.charts import hook_resources, planned_charts, render_planned
from tests.support.crd import validate_custom_resource
from tests.support.pss import enforced_namespaces, object_violations

pytestmark = pytest.mark.integration  # helm and kustomize run as processes
ENVS = ("dev", "staging", "prod")
Objects = list[dict[str, Any]]


def controller(objects: Objects) -> dict[str, Any]:
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    return deployment


def job_namespace_problems(objects: Objects, namespace: str) -> list[str]:
    """The controller creates analysis Jobs in `namespace`, and may."""
    (container,) = controller(objects)["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container.get("env") or []}
    problems = []
    if env.get(JOB_NAMESPACE_ENV) != namespace:
        problems.append(f"{JOB_NAMESPACE_ENV} is {env.get(JOB_NAMESPACE_ENV)!r}, not {namespace}")
    may = any(
        "batch" in rule.get("apiGroups", [])
        and "jobs" in rule.get("resources", [])
        and {"create", "delete", "watch"} <= set(rule.get("verbs", []))
        for o in objects
        if o["kind"] == "ClusterRole"
        for rule in o.get("rules") or []
    )
    if not may:
        problems.append("no ClusterRole lets the controller create Jobs")
    return problems


@pytest.fixture(scope="module")
def charts(plans: StackPlans) -> dict[str, Objects]:
    return {env: render_planned(planned_charts(plans[env])["argo-rollouts"]) for env in ENVS}


@pytest.mark.parametrize("env", ENVS)
def test_the_controller_pods_pass_restricted_and_nothing_is_a_hook(
    plans: StackPlans, charts: dict[str, Objects], env: str
) -> None:
    objects = charts[env]
    assert hook_resources(objects) == []
    assert [line for o in objects for line in object_violations(o)] == []
    namespaces = [m for m in of_type(plans[env], "kubernetes:core/v1:Namespace")]
    labelled = [{"kind": "Namespace", **m} for m in namespaces]
    assert "argo-rollouts" in enforced_namespaces(labelled)
    assert controller(objects)["metadata"]["namespace"] == "argo-rollouts"


def test_pod_security_catches_the_chart_without_the_stack_s_settings(plans: StackPlans) -> None:
    chart = planned_charts(plans["dev"])["argo-rollouts"]
    values = copy.deepcopy(chart.values)
    # helm merges maps with the chart's defaults: null deletes a key
    values["containerSecurityContext"] = {"allowPrivilegeEscalation": True, "seccompProfile": None}
    lines = [line for o in render_planned(chart, values=values) for line in object_violations(o)]
    assert any("allowPrivilegeEscalation" in line for line in lines), lines
    assert any("seccompProfile" in line for line in lines), lines


@pytest.mark.parametrize("env", ENVS)
def test_analysis_jobs_run_where_the_pipeline_account_and_settings_are(
    plans: StackPlans, charts: dict[str, Objects], env: str
) -> None:
    workflows = load_stack_config(env).workflows
    assert job_namespace_problems(charts[env], workflows.namespace) == []
    accounts = {
        (a["metadata"]["namespace"], a["metadata"]["name"])
        for a in of_type(plans[env], "kubernetes:core/v1:ServiceAccount")
    }
    assert (workflows.namespace, workflows.service_account) in accounts
    (settings,) = [
        c
        for c in of_type(plans[env], "kubernetes:core/v1:ConfigMap")
        if c["metadata"]["name"] == ANALYSIS_ENV_CONFIGMAP
    ]
    assert settings["metadata"]["namespace"] == workflows.namespace
    data = settings["data"]
    assert data["MLOPS_ENV"] == env
    assert data["MLOPS_STORAGE_URL"] == workflows.storage_url
    assert data["MLFLOW_TRACKING_URI"] == workflows.mlflow_tracking_uri
    assert data["MLOPS_MONITOR_MAX_AUC_DROP"] == workflows.settings["MLOPS_MONITOR_MAX_AUC_DROP"]
    assert not any(key.startswith("MLOPS_GITOPS_") for key in data)  # the analysis commits nothing
    # `analyze --push` sends the verdict where the stack's Prometheus reads it
    assert data["MLOPS_METRICS_PUSHGATEWAY"] == PUSHGATEWAY_URL


def test_the_job_namespace_check_catches_planted_mistakes(charts: dict[str, Objects]) -> None:
    objects = copy.deepcopy(charts["dev"])
    (container,) = controller(objects)["spec"]["template"]["spec"]["containers"]
    container["env"] = [e for e in container.get("env") or [] if e["name"] != JOB_NAMESPACE_ENV]
    for obj in objects:
        if obj["kind"] == "ClusterRole":
            obj["rules"] = [
                r for r in obj.get("rules") or [] if "jobs" not in r.get("resources", [])
            ]
    problems = job_namespace_problems(objects, "mlops")
    assert len(problems) == 2, problems


@pytest.mark.parametrize("env", ENVS)
def test_the_installed_crds_accept_the_serving_canary(
    charts: dict[str, Objects], env: str, tmp_path: Path
) -> None:
    """The overlay's Rollout and AnalysisTemplate against the CRDs this chart installs (v1.9.0;
    tests/gitops checks them against the v1.9.1 release's too)."""
    crds = {
        o["spec"]["names"]["kind"]: o
        for o in charts[env]
        if o["kind"] == "CustomResourceDefinition"
    }
    assert {"Rollout", "AnalysisTemplate", "AnalysisRun"} <= set(crds)
    for document in overlay(env):
        if document["kind"] in ("Rollout", "AnalysisTemplate"):
            path = tmp_path / f"{document['kind']}.yaml"
            path.write_text(yaml.safe_dump(crds[document["kind"]]))
            assert validate_custom_resource(document, str(path)) == [], document["kind"]
