"""Kubernetes objects the stacks create, validated offline: built-in kinds with
kubernetes-validate (strict; a missing schema is a failure) and the ArgoCD Application against
the upstream CRD."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest

from stacks.config import load_stack_config
from tests.conftest import REPO, StackPlans
from tests.support.crd import validate_custom_resource

ARGOCD_CRD = str(REPO / "tests" / "schemas" / "argocd-application-crd-v3.5.1.yaml")
KUBERNETES_VERSION = load_stack_config("dev").cluster.version  # validate for the deployed API
BUILT_IN = {
    "kubernetes:core/v1:Namespace": ("v1", "Namespace"),
    "kubernetes:core/v1:ServiceAccount": ("v1", "ServiceAccount"),
    "kubernetes:core/v1:Secret": ("v1", "Secret"),
    "kubernetes:core/v1:ConfigMap": ("v1", "ConfigMap"),
    "kubernetes:core/v1:Service": ("v1", "Service"),
    "kubernetes:apps/v1:Deployment": ("apps/v1", "Deployment"),
    "kubernetes:batch/v1:Job": ("batch/v1", "Job"),
    "kubernetes:networking.k8s.io/v1:NetworkPolicy": ("networking.k8s.io/v1", "NetworkPolicy"),
}


def _ints(value: Any) -> Any:
    """The mocks carry numbers as floats (protobuf Struct); Kubernetes wants integers."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _ints(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_ints(v) for v in value]
    return value


def manifest(resource: Any, api_version: str, kind: str) -> dict[str, Any]:
    body = {k: v for k, v in _ints(resource.inputs).items() if k not in ("apiVersion", "kind")}
    if kind == "Secret":
        body["stringData"] = {k: "masked" for k in body.get("stringData", {})}
    return {"apiVersion": api_version, "kind": kind, **body}


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_built_in_kinds_validate_strictly(plans: StackPlans, env: str) -> None:
    checked = 0
    for resource in plans[env].resources:
        if resource.type in BUILT_IN:
            document = manifest(resource, *BUILT_IN[resource.type])
            kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
            checked += 1
    # 5 namespaces, 3 service accounts, 3 secrets (MLflow's backend, argocd-redis, ArgoCD's
    # repository), MLflow's service, deployment and schema-upgrade job, 3 network policies
    # (MLflow's default deny and its pipeline-only admission, serving's load-balancer admission);
    # monitoring: its namespace, 3 dashboard ConfigMaps, 2 network policies (Prometheus to
    # serving, the pipelines and Prometheus to the Pushgateway); rollouts: its namespace and the
    # canary analysis Job's settings ConfigMap
    assert checked == 25


def test_strict_validation_rejects_a_typo_and_an_unknown_kind(plans: StackPlans) -> None:
    deployment = next(
        r for r in plans["dev"].resources if r.type == "kubernetes:apps/v1:Deployment"
    )
    document = manifest(deployment, "apps/v1", "Deployment")
    document["spec"]["replicaz"] = 2
    with pytest.raises(kubernetes_validate.ValidationError, match="replicaz"):
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
    with pytest.raises(kubernetes_validate.SchemaNotFoundError):
        kubernetes_validate.validate(
            {
                "apiVersion": "argoproj.io/v1alpha1",
                "kind": "Application",
                "metadata": {"name": "x"},
            },
            KUBERNETES_VERSION,
            strict=True,
        )


@pytest.mark.parametrize("env", ["dev", "staging", "prod"])
def test_root_application_validates_against_the_argocd_crd(plans: StackPlans, env: str) -> None:
    (app,) = [
        r for r in plans[env].resources if r.type == "kubernetes:argoproj.io/v1alpha1:Application"
    ]
    document = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        **{k: v for k, v in _ints(app.inputs).items() if k not in ("apiVersion", "kind")},
    }
    assert validate_custom_resource(document, ARGOCD_CRD) == []
    broken = {
        **document,
        "spec": {**document["spec"], "syncPolicy": {"automated": {"selfheal": True}}},
    }
    assert any("selfheal" in e for e in validate_custom_resource(broken, ARGOCD_CRD))
