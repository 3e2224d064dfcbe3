"""The serving canary (platform/base/serving/rollout.yaml, analysistemplate.yaml) as each
overlay renders it: valid against the upstream Argo Rollouts v1.9.1 CRDs, wired to what it
names (the Deployment, the model pin, the pipeline's image and service account, the Prometheus
and the recording rules of the stack), and its analysis Job passes Pod Security "restricted".
Each check is shown catching a planted mistake."""

from __future__ import annotations

import copy
import hashlib
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipelines.observability.rules import (
    ERROR_RATIO_LIMIT,
    LATENCY_OBJECTIVE,
    Windows,
    recording_rules,
)
from stacks.components.monitoring import PROMETHEUS_URL
from stacks.components.rollouts import ANALYSIS_ENV_CONFIGMAP
from stacks.config import load_stack_config
from tests.gitops.test_overlays import CUSTOM_KINDS, ENVS, PLATFORM, ROLLOUTS_CRDS, STACKS
from tests.support.crd import validate_custom_resource
from tests.support.pss import object_violations
from tests.support.tools import kustomize_build

pytestmark = pytest.mark.integration  # kustomize runs as a process
Doc = dict[str, Any]


def render(directory: Path) -> list[Doc]:
    return [d for d in yaml.safe_load_all(kustomize_build(directory)) if d]


_CACHE: dict[str, list[Doc]] = {}


def rendered(env: str) -> list[Doc]:
    if env not in _CACHE:
        _CACHE[env] = render(PLATFORM / "envs" / env)
    return copy.deepcopy(_CACHE[env])


def one(documents: list[Doc], kind: str) -> Doc:
    (found,) = [d for d in documents if d["kind"] == kind]
    return found


@pytest.mark.parametrize(
    ("name", "blob"),
    [
        ("rollout-crd.yaml", "3bdc95a7606485f9efde993ca104bf28fbd926ad"),
        ("analysis-template-crd.yaml", "e0c9f2e9411378363f7be4a8142d0b94d2ede5d7"),
        ("LICENSE", "67e99b065bcd6ac93d93c8fe8e0a72c6296a5614"),
    ],
)
def test_the_vendored_crds_are_the_upstream_blobs(name: str, blob: str) -> None:
    data = (ROLLOUTS_CRDS / name).read_bytes()
    assert hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest() == blob


# -- CRD validation ---------------------------------------------------------------------------


@pytest.mark.parametrize("env", ENVS)
def test_rollout_and_analysis_template_validate_against_the_crds(env: str) -> None:
    documents = rendered(env)
    for kind, crd in CUSTOM_KINDS.items():
        assert validate_custom_resource(one(documents, kind), str(crd)) == [], kind


def test_crd_validation_catches_planted_mistakes() -> None:
    documents = rendered("prod")
    rollout, template = one(documents, "Rollout"), one(documents, "AnalysisTemplate")
    rollout["spec"]["strategy"]["canary"]["steps"][0] = {"setWieght": 25}
    errors = validate_custom_resource(rollout, str(CUSTOM_KINDS["Rollout"]))
    assert any("setWieght" in e for e in errors), errors
    template["spec"]["metrics"][1]["provider"]["prometheus"]["adress"] = "http://x"
    errors = validate_custom_resource(template, str(CUSTOM_KINDS["AnalysisTemplate"]))
    assert any("adress" in e for e in errors), errors


# -- wiring ------------------------------------------------------------------------------------


def rollout_problems(documents: list[Doc]) -> list[str]:
    """What would leave the Rollout without pods, scaled by the wrong object, or judging another
    template or version than the one it runs."""
    rollout, deployment = one(documents, "Rollout"), one(documents, "Deployment")
    spec, problems = rollout["spec"], []
    ref = spec.get("workloadRef") or {}
    if (ref.get("kind"), ref.get("name")) != ("Deployment", deployment["metadata"]["name"]):
        problems.append(f"workloadRef {ref} is not the Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    if not spec["selector"]["matchLabels"] or not spec["selector"]["matchLabels"].items() <= (
        labels.items()
    ):
        problems.append("the Rollout's selector does not select the template's pods")
    if deployment["spec"]["replicas"] != 0:
        problems.append("the Deployment runs pods of its own beside the Rollout's")
    target = one(documents, "HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]
    if (target["kind"], target["name"]) != ("Rollout", rollout["metadata"]["name"]):
        problems.append(f"the HPA scales {target['kind']} {target['name']}, not the Rollout")
    pdb = one(documents, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"]
    if not pdb.items() <= labels.items():
        problems.append("the PDB does not select the pods")
    template = one(documents, "AnalysisTemplate")
    declared = {a["name"] for a in template["spec"].get("args", [])}
    canary = spec["strategy"]["canary"]
    analyses = [s["analysis"] for s in canary["steps"] if "analysis" in s]
    if not analyses:
        problems.append("no analysis step: nothing can abort the canary")
    for analysis in analyses:
        names = {t["templateName"] for t in analysis["templates"]}
        if names != {template["metadata"]["name"]}:
            problems.append(f"analysis names {names}")
        given = {a["name"] for a in analysis.get("args", [])}
        if given != declared:
            problems.append(f"analysis passes args {given}, the template declares {declared}")
        for arg in analysis.get("args", []):
            path = arg["valueFrom"]["fieldRef"]["fieldPath"]
            key = re.fullmatch(r"metadata\.annotations\['([^']+)'\]", path)
            if not key or key.group(1) not in rollout["metadata"].get("annotations", {}):
                problems.append(f"arg {arg['name']} reads {path}, which the Rollout lacks")
    model = [d for d in documents if d["metadata"]["name"].startswith("serving-model-")]
    version = model[0]["data"]["MLOPS_MODEL_VERSION"]
    if rollout["metadata"]["annotations"].get("mlops/model-version") != version:
        problems.append(f"the analysis would judge another version than the pinned {version}")
    return problems


@pytest.mark.parametrize("env", ENVS)
def test_the_rollout_is_wired_to_the_deployment_and_the_pin(env: str) -> None:
    assert rollout_problems(rendered(env)) == []


def test_a_new_model_pin_reaches_the_version_the_analysis_judges(tmp_path: Path) -> None:
    """What promotion writes (model.env) becomes the Rollout's annotation, in the same render."""
    from pipelines.decisions.pin import ServingPin, write_pin

    copy_of = tmp_path / "platform"
    shutil.copytree(PLATFORM, copy_of)
    overlay = copy_of / "envs" / "prod" / "kustomization.yaml"
    write_pin(overlay, ServingPin(image_tag="0123456789ab", model_version=7, model_sha256="a" * 64))
    documents = render(overlay.parent)
    assert one(documents, "Rollout")["metadata"]["annotations"]["mlops/model-version"] == "7"
    assert rollout_problems(documents) == []


@pytest.mark.parametrize(
    ("plant", "problem"),
    [
        (lambda d: one(d, "Deployment")["spec"].update(replicas=3), "pods of its own"),
        (
            lambda d: one(d, "HorizontalPodAutoscaler")["spec"]["scaleTargetRef"].update(
                kind="Deployment", apiVersion="apps/v1"
            ),
            "the HPA scales Deployment",
        ),
        (
            lambda d: one(d, "Rollout")["spec"]["selector"]["matchLabels"].update(app="x"),
            "selector",
        ),
        (
            lambda d: one(d, "Rollout")["metadata"]["annotations"].update(
                {"mlops/model-version": "3"}
            ),
            "another version",
        ),
        (lambda d: one(d, "Rollout")["spec"]["workloadRef"].update(name="other"), "workloadRef"),
        (
            lambda d: one(d, "Rollout")["spec"]["strategy"]["canary"].update(
                steps=[{"setWeight": 50}]
            ),
            "no analysis step",
        ),
    ],
)
def test_the_rollout_wiring_check_catches_planted_mistakes(plant: Any, problem: str) -> None:
    documents = rendered("prod")
    plant(documents)
    problems = rollout_problems(documents)
    assert any(problem in p for p in problems), problems


def job_of(template: Doc) -> Doc:
    (metric,) = [m for m in template["spec"]["metrics"] if "job" in m["provider"]]
    job: Doc = metric["provider"]["job"]
    return job


def analysis_problems(template: Doc, env: str) -> list[str]:
    """The analysis Job runs the env's pipeline image as the pipeline service account with the
    stack's settings, and the Prometheus metrics query the stack's Prometheus for the recording
    rules the SLO alerts use, with the SLO thresholds."""
    problems = []
    workflows = load_stack_config(env).workflows
    pod = job_of(template)["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    if pod.get("serviceAccountName") != workflows.service_account:
        problems.append(f"service account {pod.get('serviceAccountName')}")
    if container["image"] != workflows.image:
        problems.append(f"image {container['image']} is not {workflows.image}")
    sources = [s["configMapRef"]["name"] for s in container.get("envFrom", [])]
    if sources != [ANALYSIS_ENV_CONFIGMAP]:
        problems.append(f"settings from {sources}")
    if container["command"] + container["args"][:2] != ["mlops", "decisions", "analyze"]:
        problems.append(f"command {container['command'] + container['args']}")
    records = {r["record"] for r in recording_rules(Windows())}
    limits = {
        "error-ratio": ERROR_RATIO_LIMIT,
        "p99": round(1 - LATENCY_OBJECTIVE, 6),
    }
    for metric in template["spec"]["metrics"]:
        prometheus = metric["provider"].get("prometheus")
        if prometheus is None:
            continue
        if prometheus["address"] != PROMETHEUS_URL:
            problems.append(f"{metric['name']}: address {prometheus['address']}")
        if prometheus["query"] not in records:
            problems.append(f"{metric['name']}: {prometheus['query']} is no recording rule")
        limit = limits.pop(metric["name"], None)
        expected = {"successCondition": f"<= {limit}", "failureCondition": f"> {limit}"}
        for field, bound in expected.items():
            if f"result[0] {bound}" not in metric[field]:
                problems.append(f"{metric['name']}: {metric[field]!r} does not hold {limit}")
    problems += [f"no {name} metric" for name in limits]
    return problems


@pytest.mark.parametrize("env", STACKS)
def test_the_analysis_is_wired_to_the_stack(env: str) -> None:
    assert analysis_problems(one(rendered(env), "AnalysisTemplate"), env) == []


@pytest.mark.parametrize(
    ("plant", "problem"),
    [
        (lambda p, c: p.update(serviceAccountName="default"), "service account"),
        (lambda p, c: c.update(image="mlops-pipeline:latest"), "image"),
        (lambda p, c: c.update(envFrom=[]), "settings from"),
    ],
)
def test_the_analysis_wiring_check_catches_planted_mistakes(plant: Any, problem: str) -> None:
    template = one(rendered("prod"), "AnalysisTemplate")
    pod = job_of(template)["spec"]["template"]["spec"]
    plant(pod, pod["containers"][0])
    assert any(problem in p for p in analysis_problems(template, "prod"))
    template = one(rendered("prod"), "AnalysisTemplate")
    metric = template["spec"]["metrics"][1]
    metric["provider"]["prometheus"].update(
        address="http://prometheus.monitoring.svc:9090", query="mlops:serving_errors:ratio"
    )
    metric["successCondition"] = "result[0] <= 0.05"
    found = analysis_problems(template, "prod")
    assert any("address" in p for p in found) and any("no recording rule" in p for p in found)
    assert any("does not hold 0.01" in p for p in found), found


# -- Pod Security of the analysis Job --------------------------------------------------------------


def as_job(template: Doc) -> Doc:
    """The Job the controller creates from the metric (metricproviders/job/job.go: its spec)."""
    job = job_of(template)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "analysis", "namespace": "mlops"},
        "spec": job["spec"],
    }


@pytest.mark.parametrize("env", ENVS)
def test_the_analysis_job_passes_restricted(env: str) -> None:
    assert object_violations(as_job(one(rendered(env), "AnalysisTemplate"))) == []


def test_the_analysis_job_check_catches_a_planted_violation() -> None:
    template = one(rendered("prod"), "AnalysisTemplate")
    pod = job_of(template)["spec"]["template"]["spec"]
    del pod["containers"][0]["securityContext"]["capabilities"]
    pod["securityContext"]["runAsNonRoot"] = False
    lines = object_violations(as_job(template))
    assert any("capabilities" in line for line in lines)
    assert any("runAsNonRoot is false" in line for line in lines)
