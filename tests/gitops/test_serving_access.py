"""Finding 16: who reaches /predict, read from the overlays as ArgoCD renders them (kustomize)
plus the one NetworkPolicy the stack adds; and the Ingress that lets external callers in: HTTPS
only, mutual TLS in verify mode, its placeholders listed. Each check runs on a planted instance
and names what it catches."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
import yaml

from policies.rules.placeholders import find
from tests.conftest import REPO, StackPlans
from tests.gitops.test_overlays import ENVS, STACKS, rendered
from tests.support.netpol import SERVING_POD, admitted, cluster_peers, ints

NETWORK_POLICY = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
A = "alb.ingress.kubernetes.io/"
TLS_POLICIES = {"ELBSecurityPolicy-TLS13-1-2-2021-06", "ELBSecurityPolicy-TLS13-1-3-2021-06"}


def of_kind(documents: Any, kind: str) -> list[dict[str, Any]]:
    return [copy.deepcopy(d) for d in documents if d["kind"] == kind]


def stack_policies(plans: StackPlans, env: str) -> list[dict[str, Any]]:
    return [ints(copy.deepcopy(r.inputs)) for r in plans[env].resources if r.type == NETWORK_POLICY]


def serving_pod_labels(env: str) -> dict[str, str]:
    (deployment,) = of_kind(rendered(env), "Deployment")
    labels: dict[str, str] = deployment["spec"]["template"]["metadata"]["labels"]
    return labels


def who_reaches_serving(env: str, policies: list[dict[str, Any]]) -> set[str]:
    (container,) = of_kind(rendered(env), "Deployment")[0]["spec"]["template"]["spec"]["containers"]
    (port,) = container["ports"]
    labels = serving_pod_labels(env)
    peers = cluster_peers("dev" if env == "local" else env)
    return admitted(policies, "serving", labels, peers, port["containerPort"])


@pytest.mark.integration
@pytest.mark.parametrize("env", STACKS)
def test_only_the_load_balancer_reaches_serving(plans: StackPlans, env: str) -> None:
    policies = [*of_kind(rendered(env), "NetworkPolicy"), *stack_policies(plans, env)]
    # and Prometheus, which scrapes /metrics on the serving port (a NetworkPolicy is L4: it
    # admits the monitoring namespace's Prometheus pods to the port, not to one path)
    assert who_reaches_serving(env, policies) == {"load balancer", "prometheus"}
    assert SERVING_POD.items() <= serving_pod_labels(env).items()  # what the stack selects


@pytest.mark.integration
def test_without_the_stack_nothing_reaches_serving() -> None:
    """The local overlay (kind, minikube) has no stack: serving is reached by port-forward."""
    assert who_reaches_serving("local", of_kind(rendered("local"), "NetworkPolicy")) == set()


@pytest.mark.integration
def test_the_former_any_source_policy_is_caught(plans: StackPlans) -> None:
    """The base policy as it was: TCP 3000 from anywhere (every pod, the internet)."""
    (base,) = of_kind(rendered("prod"), "NetworkPolicy")
    base["spec"]["ingress"] = [{"ports": [{"port": 3000, "protocol": "TCP"}]}]
    reached = who_reaches_serving("prod", [base, *stack_policies(plans, "prod")])
    assert {"pipeline step", "default namespace pod", "internet", "load balancer"} <= reached


def ingress_problems(ingress: dict[str, Any], documents: Any) -> list[str]:
    """What would let a caller reach serving without TLS or without a client certificate."""
    notes = ingress["metadata"].get("annotations") or {}
    problems = []
    listeners = json.loads(notes.get(A + "listen-ports", '[{"HTTP": 80}]'))
    if listeners != [{"HTTPS": 443}]:
        problems.append(f"listen-ports {listeners}: HTTPS 443 only")
    if not notes.get(A + "certificate-arn", "").startswith("arn:aws:acm:"):
        problems.append("no ACM certificate-arn")
    if notes.get(A + "ssl-policy") not in TLS_POLICIES:
        problems.append(f"ssl-policy {notes.get(A + 'ssl-policy')!r} allows TLS below 1.2")
    mutual = json.loads(notes.get(A + "mutual-authentication", "[]"))
    verified = [
        m
        for m in mutual
        if m.get("port") == 443
        and m.get("mode") == "verify"
        and str(m.get("trustStore", "")).startswith("arn:aws:elasticloadbalancing:")
        and not m.get("ignoreClientCertificateExpiry")
    ]
    if not verified:
        problems.append(f"mutual-authentication {mutual}: port 443 must verify client certificates")
    if notes.get(A + "target-type") != "ip":
        problems.append("target-type is not ip: the NetworkPolicies admit the ALB's addresses")
    if ingress["spec"].get("ingressClassName") != "alb":
        problems.append("ingressClassName is not alb")
    backend = ingress["spec"].get("defaultBackend", {}).get("service", {})
    services = {s["metadata"]["name"]: s for s in documents if s["kind"] == "Service"}
    ports = {
        p.get("name")
        for p in services.get(backend.get("name"), {}).get("spec", {}).get("ports", [])
    }
    if backend.get("port", {}).get("name") not in ports or ingress["spec"].get("rules"):
        problems.append(f"backend {backend}: the serving Service's port, and no other rule")
    return problems


@pytest.mark.integration
@pytest.mark.parametrize("env", ENVS)
def test_external_callers_come_in_over_https_with_a_client_certificate(env: str) -> None:
    documents = rendered(env)
    (ingress,) = of_kind(documents, "Ingress")
    assert ingress_problems(ingress, documents) == []
    assert ingress["metadata"]["annotations"][A + "scheme"] == "internet-facing"


@pytest.mark.integration
@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda n: n.update({A + "listen-ports": '[{"HTTP": 80}, {"HTTPS": 443}]'}), "listen"),
        (lambda n: n.pop(A + "certificate-arn"), "certificate-arn"),
        (lambda n: n.update({A + "ssl-policy": "ELBSecurityPolicy-2016-08"}), "ssl-policy"),
        (
            lambda n: n.update({A + "mutual-authentication": '[{"port": 443, "mode": "off"}]'}),
            "mutual-authentication",
        ),
        (
            lambda n: n.update(
                {A + "mutual-authentication": '[{"port": 443, "mode": "passthrough"}]'}
            ),
            "mutual-authentication",
        ),
        (lambda n: n.pop(A + "target-type"), "target-type"),
    ],
)
def test_an_ingress_that_lets_callers_in_unauthenticated_is_caught(
    change: Any, problem: str
) -> None:
    documents = rendered("prod")
    (ingress,) = of_kind(documents, "Ingress")
    change(ingress["metadata"]["annotations"])
    (found,) = ingress_problems(ingress, documents)
    assert problem in found


@pytest.mark.integration
@pytest.mark.parametrize("env", STACKS)
def test_the_ingress_placeholders_are_flagged_for_the_overlay_to_set(env: str) -> None:
    """The certificate and the trust store are the env's: each overlay patches in ARNs of its
    own account (the stack's ``aws:allowedAccountIds``), whose placeholders the no-placeholders
    patterns flag until a user sets them (and the ALB would not come up)."""
    stack = yaml.safe_load((REPO / "stacks" / f"Pulumi.{env}.yaml").read_text())
    (account,) = stack["config"]["aws:allowedAccountIds"]
    (ingress,) = of_kind(rendered(env), "Ingress")
    notes = ingress["metadata"]["annotations"]
    flagged = {
        key
        for key in (A + "certificate-arn", A + "mutual-authentication")
        if {f.placeholder for f in find(notes[key])} >= {account, "REPLACE_ME"}
    }
    assert flagged == {A + "certificate-arn", A + "mutual-authentication"}
