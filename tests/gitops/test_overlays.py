"""The GitOps content under platform/, as ArgoCD renders it (kustomize), validated offline:
kubernetes-validate in strict mode, checkov with only the checked-in skips, and consistency with
the Pulumi stacks that create the accounts, buckets and repositories it refers to."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from stacks.components.ecr import repository_name
from stacks.config import ClusterConfig, load_stack_config
from tests.conftest import REPO
from tests.support.crd import validate_custom_resource
from tests.support.tools import checkov, kustomize_build

ENVS = ("local", "dev", "staging", "prod")
STACKS = ("dev", "staging", "prod")
"""Envs with a Pulumi stack (``local`` is a local cluster: kind, minikube)."""
PLATFORM = REPO / "platform"


def kubernetes_version(env: str) -> str:
    """The Kubernetes the env's cluster runs (the stack config; ``local``: the default)."""
    if env in STACKS:
        return load_stack_config(env).cluster.version
    return str(ClusterConfig.model_fields["version"].default)


KINDS = {
    "Ingress",
    "ConfigMap",
    "Service",
    "Deployment",
    "HorizontalPodAutoscaler",
    "PodDisruptionBudget",
    "NetworkPolicy",
    "Rollout",
    "AnalysisTemplate",
}
ROLLOUTS_CRDS = REPO / "tests" / "schemas" / "argo-rollouts-v1.9.1"
CUSTOM_KINDS = {
    "Rollout": ROLLOUTS_CRDS / "rollout-crd.yaml",
    "AnalysisTemplate": ROLLOUTS_CRDS / "analysis-template-crd.yaml",
}
"""Argo Rollouts' kinds, validated against the upstream CRDs (tests/schemas/README.md)."""


@functools.cache
def rendered(env: str) -> tuple[dict[str, Any], ...]:
    return tuple(d for d in yaml.safe_load_all(kustomize_build(PLATFORM / "envs" / env)) if d)


def by_kind(env: str, kind: str, name: str | None = None) -> dict[str, Any]:
    """The one rendered object of `kind` (named `name`, before kustomize's hash suffix)."""
    (document,) = [
        d
        for d in rendered(env)
        if d["kind"] == kind and (name is None or d["metadata"]["name"].startswith(f"{name}-"))
    ]
    return document


def test_platform_holds_no_python() -> None:
    assert not list(PLATFORM.rglob("*.py")), "a package named platform would shadow the stdlib"


@pytest.mark.integration
@pytest.mark.parametrize("env", ENVS)
def test_each_overlay_renders_and_validates_strictly(env: str) -> None:
    documents = rendered(env)
    assert {d["kind"] for d in documents} == KINDS
    # two ConfigMaps (settings, the model pin), two AnalysisTemplates (the Job, the metrics)
    assert len(documents) == len(KINDS) + 2
    for document in documents:
        if document["kind"] in CUSTOM_KINDS:
            crd = str(CUSTOM_KINDS[document["kind"]])
            assert validate_custom_resource(document, crd) == [], document["kind"]
        else:
            kubernetes_validate.validate(document, kubernetes_version(env), strict=True)
        assert document["metadata"]["namespace"] == "serving"


def nested_mounts(container: dict[str, Any]) -> list[str]:
    """Mount paths that lie inside another mount of the same container."""
    paths = [m["mountPath"].rstrip("/") for m in container["volumeMounts"]]
    return sorted(p for p in paths for q in paths if p != q and p.startswith(q + "/"))


def test_the_nested_mount_check_catches_a_mount_inside_another() -> None:
    mounts = [{"mountPath": "/tmp"}, {"mountPath": "/tmp/bentoml/x"}, {"mountPath": "/tmpx"}]
    assert nested_mounts({"volumeMounts": mounts}) == ["/tmp/bentoml/x"]


@pytest.mark.integration
@pytest.mark.parametrize("env", ENVS)
def test_the_workload_is_hardened(env: str) -> None:
    pod = by_kind(env, "Deployment")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert "/tmp" in mounts
    # a mount under another mount gets a mount point the runtime creates root-owned 0755 in
    # the outer volume: the non-root user can no longer write beside it (BentoML failed with
    # "Permission denied: '/tmp/bentoml/bentos'" in the serving image, tests/images)
    assert nested_mounts(container) == []
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert set(container["resources"]) == {"requests", "limits"}
    repository, tag = container["image"].rsplit(":", 1)
    assert tag and tag != "latest"
    assert "/" in repository or env == "local"  # a registry, except the locally built image
    env_vars = {e["name"]: e["value"] for e in container["env"]}
    assert env_vars["OMP_NUM_THREADS"] == "1"
    assert pod["serviceAccountName"] == "serving"


@pytest.mark.integration
@pytest.mark.parametrize("env", ENVS)
def test_the_pods_read_the_model_pin_of_their_overlay(env: str) -> None:
    """The model half of the pin (model.env) reaches the pods as the serving-model ConfigMap,
    whose name changes with its content, so a new pin rolls the pods; and what it holds is what
    `read_pin` and the serving entry point parse."""
    from bentos.start import ModelPin
    from pipelines.decisions.pin import DIGEST_KEY, VERSION_KEY, read_pin

    model = by_kind(env, "ConfigMap", "serving-model")
    assert model["data"] == {VERSION_KEY: "unreleased", DIGEST_KEY: "unreleased"}
    (container,) = by_kind(env, "Deployment")["spec"]["template"]["spec"]["containers"]
    sources = [s["configMapRef"]["name"] for s in container["envFrom"]]
    assert model["metadata"]["name"] in sources  # kustomize rewrote the hashed name
    assert read_pin(PLATFORM / "envs" / env / "kustomization.yaml") is None  # unreleased
    # every key the ConfigMap holds is a field the entry point reads
    assert {f"MLOPS_{name.upper()}" for name in ModelPin.model_fields} >= set(model["data"])
    env_vars = {e["name"]: e["value"] for e in container["env"]}
    assert env_vars["BENTOML_HOME"] == "/tmp/bentoml"  # on the writable emptyDir


@pytest.mark.integration
def test_envs_differ_only_where_they_should() -> None:
    replicas = {env: by_kind(env, "Rollout")["spec"]["replicas"] for env in ENVS}
    assert replicas == {"local": 1, "dev": 1, "staging": 2, "prod": 3}
    # the Rollout runs the pods; its template Deployment stays empty (rollout.yaml)
    assert {env: by_kind(env, "Deployment")["spec"]["replicas"] for env in ENVS} == dict.fromkeys(
        ENVS, 0
    )
    for env in ENVS:
        hpa = by_kind(env, "HorizontalPodAutoscaler")["spec"]
        assert hpa["minReplicas"] == replicas[env] < hpa["maxReplicas"]
    strip = {}
    for env in STACKS:
        deployment = json.loads(json.dumps(by_kind(env, "Deployment")))
        pod = deployment["spec"]["template"]["spec"]
        del deployment["spec"]["replicas"], pod["containers"][0]["resources"]
        pod["containers"][0]["image"] = pod["containers"][0]["envFrom"] = None
        strip[env] = deployment
    assert strip["dev"] == strip["staging"] == strip["prod"]


@pytest.mark.integration
@pytest.mark.parametrize("env", STACKS)
def test_overlays_agree_with_the_stacks(env: str) -> None:
    """Same account, region, buckets and serving repository as the Pulumi stack that builds
    the env (`repository_name` is what the stack creates; tests/stacks/test_wiring.py checks
    the plan)."""
    config = load_stack_config(env)
    settings = by_kind(env, "ConfigMap", "serving-env")["data"]
    assert settings["MLOPS_ENV"] == env == config.env
    assert settings["MLOPS_STORAGE_URL"] == config.workflows.storage_url
    registry = config.workflows.image.split("/")[0]
    image = by_kind(env, "Deployment")["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image.startswith(f"{registry}/{repository_name(env, 'serving')}:")


def run_checkov(directory: Path) -> tuple[int, dict[str, Any]]:
    done = checkov(
        "--framework",
        "kubernetes",
        "--quiet",
        "--compact",
        "-o",
        "json",
        "--config-file",
        str(PLATFORM / "checkov.yaml"),
        "-d",
        str(directory),
    )
    document = json.loads(done.stdout)
    document = document[0] if isinstance(document, list) else document
    return done.returncode, document


def write_rendered(directory: Path, documents: dict[str, tuple[dict[str, Any], ...]]) -> None:
    directory.mkdir()
    for env, docs in documents.items():
        (directory / f"{env}.yaml").write_text(yaml.safe_dump_all(docs))


@pytest.mark.integration
def test_checkov_passes_with_only_the_checked_in_skips(tmp_path: Path) -> None:
    write_rendered(tmp_path / "rendered", {env: rendered(env) for env in ENVS})
    code, document = run_checkov(tmp_path / "rendered")
    failed = [(c["check_id"], c["resource"]) for c in document["results"]["failed_checks"]]
    assert code == 0 and failed == []
    assert document["summary"]["resource_count"] >= len(ENVS) * len(KINDS)  # it did look
    assert document["summary"]["passed"] > 50
    skips = yaml.safe_load((PLATFORM / "checkov.yaml").read_text())["skip-check"]
    reasons = (PLATFORM / "checkov.yaml").read_text()
    for check in skips:  # every skip is explained in a comment just above it
        before = reasons.split(f"- {check}")[0].rstrip().splitlines()[-1]
        assert before.strip().startswith("#"), check


@pytest.mark.integration
def test_checkov_catches_a_planted_violation(tmp_path: Path) -> None:
    documents = [json.loads(json.dumps(d)) for d in rendered("prod")]
    for document in documents:
        if document["kind"] == "Deployment":
            container = document["spec"]["template"]["spec"]["containers"][0]
            del container["resources"]["limits"]
            container["securityContext"]["allowPrivilegeEscalation"] = True
    write_rendered(tmp_path / "planted", {"prod": tuple(documents)})
    code, document = run_checkov(tmp_path / "planted")
    failed = {c["check_id"] for c in document["results"]["failed_checks"]}
    assert code == 1
    assert {"CKV_K8S_11", "CKV_K8S_13", "CKV_K8S_20"} <= failed
