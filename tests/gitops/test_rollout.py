"""The serving canary (platform/base/serving/rollout.yaml, analysistemplate.yaml) as each
overlay renders it: valid against the upstream Argo Rollouts v1.9.1 CRDs, wired to what it
names (the Deployment, the model pin, the pipeline's image and service account, the pushed
verdict, the Prometheus and the per-template recording rules of the stack, the canary's pod
template hash), and its analysis Job passes Pod Security "restricted". Each check is shown
catching a planted mistake."""

from __future__ import annotations

import copy
import hashlib
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipelines import metrics as m
from pipelines.observability.rules import (
    ERROR_RATIO_LIMIT,
    LATENCY_OBJECTIVE,
    POD_TEMPLATE_LABEL,
    Windows,
    template_rules,
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


ANALYZE, JUDGE = "market-direction-canary-analyze", "market-direction-canary"
"""The two AnalysisTemplates: the Job that judges and pushes, then the metrics that read."""


def one(documents: list[Doc], kind: str, name: str | None = None) -> Doc:
    (found,) = [
        d
        for d in documents
        if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
    ]
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
    custom = [d for d in documents if d["kind"] in CUSTOM_KINDS]
    assert sorted(d["metadata"]["name"] for d in custom) == sorted(
        ["market-direction", ANALYZE, JUDGE]
    )
    for document in custom:
        crd = str(CUSTOM_KINDS[document["kind"]])
        assert validate_custom_resource(document, crd) == [], document["metadata"]["name"]


def test_crd_validation_catches_planted_mistakes() -> None:
    documents = rendered("prod")
    rollout, template = one(documents, "Rollout"), one(documents, "AnalysisTemplate", JUDGE)
    rollout["spec"]["strategy"]["canary"]["steps"][0] = {"setWieght": 25}
    errors = validate_custom_resource(rollout, str(CUSTOM_KINDS["Rollout"]))
    assert any("setWieght" in e for e in errors), errors
    template["spec"]["metrics"][1]["provider"]["prometheus"]["adress"] = "http://x"
    errors = validate_custom_resource(template, str(CUSTOM_KINDS["AnalysisTemplate"]))
    assert any("adress" in e for e in errors), errors
    template["spec"]["metrics"][0]["inconclusiveLimt"] = 0
    errors = validate_custom_resource(template, str(CUSTOM_KINDS["AnalysisTemplate"]))
    assert any("inconclusiveLimt" in e for e in errors), errors


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
    templates = {
        d["metadata"]["name"]: {a["name"] for a in d["spec"].get("args", [])}
        for d in documents
        if d["kind"] == "AnalysisTemplate"
    }
    canary = spec["strategy"]["canary"]
    analyses = [s["analysis"] for s in canary["steps"] if "analysis" in s]
    if not analyses:
        problems.append("no analysis step: nothing can abort the canary")
    order = [[t["templateName"] for t in a["templates"]] for a in analyses]
    if order != [[ANALYZE], [JUDGE]] * (len(order) // 2) or len(order) % 2:
        problems.append(f"analysis steps run {order}: each verdict must be pushed, then read")
    for analysis in analyses:
        for name in {t["templateName"] for t in analysis["templates"]}:
            given = {a["name"] for a in analysis.get("args", [])}
            if given != templates.get(name):
                problems.append(f"{name}: passes args {given}, it declares {templates.get(name)}")
        for arg in analysis.get("args", []):
            source = arg["valueFrom"]
            if arg["name"] == "canary-hash":
                if source != {"podTemplateHashValue": "Latest"}:
                    problems.append(f"canary-hash is {source}, not the canary's template hash")
                continue
            path = source.get("fieldRef", {}).get("fieldPath", "")
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


def _steps(documents: list[Doc]) -> list[Doc]:
    steps: list[Doc] = one(documents, "Rollout")["spec"]["strategy"]["canary"]["steps"]
    return steps


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
        (lambda d: _steps(d).insert(3, _steps(d).pop(2)), "must be pushed, then read"),
        (
            lambda d: _steps(d)[3]["analysis"]["args"][1]["valueFrom"].update(
                podTemplateHashValue="Stable"
            ),
            "not the canary's template hash",
        ),
        (lambda d: _steps(d)[3]["analysis"]["args"].pop(), "it declares"),
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


VERDICT_QUERY = re.compile(
    rf'{m.CANARY_VERDICT.name}{{job="(?P<job>[^"]+)",model_version="(?P<version>[^"]+)"}}'
    r" and on\(job, model_version\) \(time\(\) - push_time_seconds"
    r'{job="(?P=job)",model_version="(?P=version)"} < (?P<age>\d+)\)'
)
"""The live-quality query: the pushed verdict of the judged version, only if pushed lately."""


def analysis_problems(documents: list[Doc], env: str) -> list[str]:
    """The analysis Job runs the env's pipeline image as the pipeline service account with the
    stack's settings and pushes its verdict; the live-quality metric reads that verdict (the
    same job, the judged version, fresher than the Job's deadline); the serving metrics query
    the stack's Prometheus for the per-template recording rules of the canary's template, with
    the SLO thresholds."""
    problems = []
    workflows = load_stack_config(env).workflows
    job = job_of(one(documents, "AnalysisTemplate", ANALYZE))
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    if pod.get("serviceAccountName") != workflows.service_account:
        problems.append(f"service account {pod.get('serviceAccountName')}")
    if container["image"] != workflows.image:
        problems.append(f"image {container['image']} is not {workflows.image}")
    sources = [s["configMapRef"]["name"] for s in container.get("envFrom", [])]
    if sources != [ANALYSIS_ENV_CONFIGMAP]:
        problems.append(f"settings from {sources}")
    command = container["command"] + container["args"]
    if command[:3] != ["mlops", "decisions", "analyze"] or "--push" not in command:
        problems.append(f"command {command} does not push the verdict")
    if "{{args.model-version}}" not in command:
        problems.append("the Job judges another version than the analysis argument")
    template = one(documents, "AnalysisTemplate", JUDGE)
    records = {r["record"] for r in template_rules(Windows().rate)}
    limits = {"error-ratio": ERROR_RATIO_LIMIT, "p99": round(1 - LATENCY_OBJECTIVE, 6)}
    for metric in template["spec"]["metrics"]:
        prometheus = metric["provider"].get("prometheus")
        if prometheus is None:
            problems.append(f"{metric['name']}: no Prometheus query")
            continue
        if prometheus["address"] != PROMETHEUS_URL:
            problems.append(f"{metric['name']}: address {prometheus['address']}")
        query = prometheus["query"].strip()
        if metric["name"] == "live-quality":
            found = VERDICT_QUERY.fullmatch(query)
            if not found or found["job"] != m.PUSHGATEWAY_JOBS["canary"]:
                problems.append(f"live-quality: {query!r} does not read the pushed verdict")
            elif found["version"] != "{{args.model-version}}":
                problems.append(f"live-quality reads version {found['version']}")
            elif int(found["age"]) > job["spec"]["activeDeadlineSeconds"]:
                problems.append(f"live-quality accepts a verdict {found['age']} s old")
            continue
        record, _, selector = query.partition("{")
        if record not in records:
            problems.append(f"{metric['name']}: {record} is no per-template recording rule")
        if selector != f'{POD_TEMPLATE_LABEL}="{{{{args.canary-hash}}}}"}}':
            problems.append(f"{metric['name']}: {query!r} does not select the canary's pods")
        limit = limits.pop(metric["name"], None)
        expected = {"successCondition": f"<= {limit}", "failureCondition": f"> {limit}"}
        for field, bound in expected.items():
            if f"result[0] {bound}" not in metric[field]:
                problems.append(f"{metric['name']}: {metric[field]!r} does not hold {limit}")
    problems += [f"no {name} metric" for name in limits]
    return problems


@pytest.mark.parametrize("env", STACKS)
def test_the_analysis_is_wired_to_the_stack(env: str) -> None:
    assert analysis_problems(rendered(env), env) == []


def _judge(documents: list[Doc], name: str) -> Doc:
    (metric,) = [
        x for x in one(documents, "AnalysisTemplate", JUDGE)["spec"]["metrics"] if x["name"] == name
    ]
    prometheus: Doc = metric["provider"]["prometheus"]
    return prometheus


@pytest.mark.parametrize(
    ("plant", "problem"),
    [
        (lambda p, c: p.update(serviceAccountName="default"), "service account"),
        (lambda p, c: c.update(image="mlops-pipeline:latest"), "image"),
        (lambda p, c: c.update(envFrom=[]), "settings from"),
        (lambda p, c: c["args"].remove("--push"), "does not push the verdict"),
        (lambda p, c: c["args"].__setitem__(3, "7"), "another version"),
    ],
)
def test_the_analysis_wiring_check_catches_planted_mistakes(plant: Any, problem: str) -> None:
    documents = rendered("prod")
    pod = job_of(one(documents, "AnalysisTemplate", ANALYZE))["spec"]["template"]["spec"]
    plant(pod, pod["containers"][0])
    assert any(problem in p for p in analysis_problems(documents, "prod"))


@pytest.mark.parametrize(
    ("metric", "query", "problem"),
    [
        ("error-ratio", "mlops:serving_errors:ratio_rate5m", "no per-template recording rule"),
        (
            "p99",
            'mlops:serving_slow_per_template:ratio_rate5m{rollouts_pod_template_hash!=""}',
            "does not select the canary's pods",
        ),
        ("live-quality", 'mlops_canary_verdict{job="mlops-canary"}', "does not read the pushed"),
        (
            "live-quality",
            'mlops_canary_verdict{job="mlops-canary",model_version="{{args.model-version}}"} and'
            ' on(job, model_version) (time() - push_time_seconds{job="mlops-canary",'
            'model_version="{{args.model-version}}"} < 86400)',
            "accepts a verdict 86400 s old",
        ),
    ],
)
def test_the_query_checks_catch_planted_mistakes(metric: str, query: str, problem: str) -> None:
    documents = rendered("prod")
    _judge(documents, metric)["query"] = query
    found = analysis_problems(documents, "prod")
    assert any(problem in p for p in found), found
    documents = rendered("prod")
    judged = one(documents, "AnalysisTemplate", JUDGE)["spec"]["metrics"]
    judged[1]["provider"]["prometheus"]["address"] = "http://prometheus.monitoring.svc:9090"
    judged[1]["successCondition"] = "result[0] <= 0.05"
    found = analysis_problems(documents, "prod")
    assert any("address" in p for p in found) and any("does not hold 0.01" in p for p in found)


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
    assert object_violations(as_job(one(rendered(env), "AnalysisTemplate", ANALYZE))) == []


def test_the_analysis_job_check_catches_a_planted_violation() -> None:
    template = one(rendered("prod"), "AnalysisTemplate", ANALYZE)
    pod = job_of(template)["spec"]["template"]["spec"]
    del pod["containers"][0]["securityContext"]["capabilities"]
    pod["securityContext"]["runAsNonRoot"] = False
    lines = object_violations(as_job(template))
    assert any("capabilities" in line for line in lines)
    assert any("runAsNonRoot is false" in line for line in lines)
