"""Who can reach MLflow and serving, read from the NetworkPolicies the stacks plan (finding 2 and
the stack half of finding 16), with `tests.support.netpol`; each check also runs on a planted
policy and names the client it wrongly admits or wrongly shuts out."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from stacks.components.mlflow import MLFLOW_PORT
from stacks.components.serving import SERVING_POD_LABELS, SERVING_PORT
from stacks.config import load_stack_config
from tests.conftest import StackPlans
from tests.support.netpol import Peer, admits, admitted, cluster_peers, host, ints

ENVS = ("dev", "staging", "prod")
NETWORK_POLICY = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
MLFLOW_POD = {"app.kubernetes.io/name": "mlflow", "app.kubernetes.io/part-of": "mlops-platform"}


def network_policies(plans: StackPlans, env: str) -> list[dict[str, Any]]:
    """The planned NetworkPolicies as manifests (numbers back to integers)."""
    return [ints(copy.deepcopy(r.inputs)) for r in plans[env].resources if r.type == NETWORK_POLICY]


# ----------------------------------------------------------------------------------- MLflow


@pytest.mark.parametrize("env", ENVS)
def test_only_the_pipeline_steps_reach_mlflow(plans: StackPlans, env: str) -> None:
    policies = network_policies(plans, env)
    peers = cluster_peers(env)
    assert admitted(policies, "mlflow", MLFLOW_POD, peers, MLFLOW_PORT) == {"pipeline step"}
    # and nothing at all on another port, nor to another pod of the namespace (default deny)
    assert admitted(policies, "mlflow", MLFLOW_POD, peers, 5432) == set()
    assert admitted(policies, "mlflow", {"job-name": "db-upgrade"}, peers, 8080) == set()


def test_a_policy_admitting_every_namespace_is_caught(plans: StackPlans) -> None:
    policies = network_policies(plans, "prod")
    (server,) = [p for p in policies if p["metadata"]["name"] == "mlflow-from-pipeline"]
    server["spec"]["ingress"][0]["from"] = [{"namespaceSelector": {}}]
    reached = admitted(policies, "mlflow", MLFLOW_POD, cluster_peers("prod"), MLFLOW_PORT)
    assert {"serving pod", "default namespace pod", "argocd pod"} <= reached
    assert "internet" not in reached


def test_podselector_and_namespaceselector_in_two_entries_are_caught(plans: StackPlans) -> None:
    """The classic slip: two `from` entries (OR) instead of one with both selectors (AND)."""
    policies = network_policies(plans, "prod")
    (server,) = [p for p in policies if p["metadata"]["name"] == "mlflow-from-pipeline"]
    (source,) = server["spec"]["ingress"][0]["from"]
    server["spec"]["ingress"][0]["from"] = [
        {"namespaceSelector": source["namespaceSelector"]},
        {"podSelector": source["podSelector"]},
    ]
    reached = admitted(policies, "mlflow", MLFLOW_POD, cluster_peers("prod"), MLFLOW_PORT)
    assert "other pod in the pipeline namespace" in reached


def test_without_the_policies_everyone_reaches_mlflow_and_without_the_allow_nobody_does(
    plans: StackPlans,
) -> None:
    policies = network_policies(plans, "prod")
    peers = cluster_peers("prod")
    others = [p for p in policies if p["metadata"]["namespace"] != "mlflow"]
    assert admitted(others, "mlflow", MLFLOW_POD, peers, MLFLOW_PORT) == {p.name for p in peers}
    deny_only = [p for p in policies if p["metadata"]["name"] != "mlflow-from-pipeline"]
    assert admitted(deny_only, "mlflow", MLFLOW_POD, peers, MLFLOW_PORT) == set()


def test_the_allowed_namespace_is_the_one_the_cronworkflows_run_in(plans: StackPlans) -> None:
    crons = [
        r.inputs
        for r in plans["prod"].resources
        if r.type == "kubernetes:argoproj.io/v1alpha1:CronWorkflow"
    ]
    namespaces = {c["metadata"]["namespace"] for c in crons}
    (server,) = [
        p
        for p in network_policies(plans, "prod")
        if p["metadata"]["name"] == "mlflow-from-pipeline"
    ]
    (source,) = server["spec"]["ingress"][0]["from"]
    assert namespaces == {source["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]}


# ---------------------------------------------------------------------------------- serving


@pytest.mark.parametrize("env", ENVS)
def test_the_stack_admits_the_load_balancer_subnets_and_no_pod(plans: StackPlans, env: str) -> None:
    """With the base's isolating policy (platform/base/serving/networkpolicy.yaml: tested on the
    rendered overlays in tests/gitops), the stack's one is the only way in."""
    isolate = {
        "metadata": {"name": "market-direction", "namespace": "serving"},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress"]},
    }
    policies = [*network_policies(plans, env), isolate]
    peers = cluster_peers(env)
    reached = admitted(policies, "serving", SERVING_POD_LABELS, peers, SERVING_PORT)
    assert reached == {"load balancer", "prometheus"}  # and Prometheus scrapes /metrics
    network = load_stack_config(env).network
    for cidr in network.public_subnet_cidrs:  # every zone's load balancer interface
        assert admits(policies, "serving", SERVING_POD_LABELS, Peer("lb", host(cidr, 200)), 3000)


def test_a_load_balancer_policy_naming_the_vpc_cidr_is_caught(plans: StackPlans) -> None:
    """Naming the VPC (or the private subnets) would admit every pod: pods have VPC addresses."""
    policies = network_policies(plans, "prod")
    (serving,) = [
        p for p in policies if p["metadata"]["name"] == "market-direction-from-load-balancer"
    ]
    serving["spec"]["ingress"][0]["from"] = [{"ipBlock": {"cidr": "10.40.0.0/16"}}]
    reached = admitted(policies, "serving", SERVING_POD_LABELS, cluster_peers("prod"), 3000)
    assert {"pipeline step", "argocd pod", "load balancer"} <= reached


# ------------------------------------------------------------------------------- monitoring

PUSHGATEWAY_POD = {"app.kubernetes.io/name": "prometheus-pushgateway"}


@pytest.mark.parametrize("env", ENVS)
def test_only_the_pipeline_pods_and_prometheus_reach_the_pushgateway(
    plans: StackPlans, env: str
) -> None:
    policies = network_policies(plans, env)
    reached = admitted(policies, "monitoring", PUSHGATEWAY_POD, cluster_peers(env), 9091)
    # the pipeline namespace pushes (any of its pods: a step's pod has no fixed labels beyond
    # the workflow's), Prometheus scrapes; nobody else writes metrics
    assert reached == {"pipeline step", "other pod in the pipeline namespace", "prometheus"}


def test_the_prometheus_policy_admits_no_other_monitoring_pod(plans: StackPlans) -> None:
    policies = network_policies(plans, "prod")
    (scrape,) = [p for p in policies if p["metadata"]["name"] == "market-direction-from-prometheus"]
    (source,) = scrape["spec"]["ingress"][0]["from"]
    source.pop("podSelector")  # the slip: the whole monitoring namespace
    reached = admitted(policies, "serving", SERVING_POD_LABELS, cluster_peers("prod"), 3000)
    assert "grafana pod" in reached
