"""What the stack adds to the GitOps-managed serving workload: the one NetworkPolicy that admits
its load balancer.

platform/base/serving isolates the serving pods (a NetworkPolicy with no ingress rule) and asks
the AWS Load Balancer Controller for an internet-facing ALB (platform/base/serving/ingress.yaml:
HTTPS only, mutual TLS). With ``target-type: ip`` the ALB connects straight to the pods from its
interfaces in the public subnets; the pods themselves only ever get addresses in the private
subnets (the node groups live there), so admitting the public subnets' CIDRs admits the load
balancer and no pod. The CIDRs are the stack's (``network.publicSubnetCidrs``), which is why this
policy is created here rather than in the overlays.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

SERVING_NAMESPACE = "serving"
SERVING_POD_LABELS = {"app.kubernetes.io/name": "market-direction"}
"""The labels platform/base/serving/kustomization.yaml puts on the serving pods."""
SERVING_PORT = 3000
"""The container port of the BentoML server (platform/base/serving/deployment.yaml)."""


def serving_ingress_policy(
    name: str,
    source: str,
    peers: Sequence[dict[str, Any]],
    labels: dict[str, str],
    opts: pulumi.ResourceOptions,
) -> k8s.networking.v1.NetworkPolicy:
    """Admit the serving port from `peers` only; `source` names the policy
    (``market-direction-from-<source>``)."""
    return k8s.networking.v1.NetworkPolicy(
        f"{name}-serving-from-{source}",
        metadata={
            "name": f"market-direction-from-{source}",
            "namespace": SERVING_NAMESPACE,
            "labels": labels,
        },
        spec={
            "podSelector": {"matchLabels": dict(SERVING_POD_LABELS)},
            "policyTypes": ["Ingress"],
            "ingress": [
                {"from": list(peers), "ports": [{"protocol": "TCP", "port": SERVING_PORT}]}
            ],
        },
        opts=opts,
    )


def serving_load_balancer_policy(
    name: str,
    load_balancer_cidrs: Sequence[str],
    labels: dict[str, str],
    opts: pulumi.ResourceOptions,
) -> k8s.networking.v1.NetworkPolicy:
    """Admit the serving port from `load_balancer_cidrs` (the public subnets) only."""
    peers = [{"ipBlock": {"cidr": cidr}} for cidr in load_balancer_cidrs]
    return serving_ingress_policy(name, "load-balancer", peers, labels, opts)
