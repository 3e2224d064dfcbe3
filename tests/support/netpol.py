"""Who may open a connection to a pod, read from NetworkPolicies offline (ingress only).

The semantics are the upstream API's (networking.k8s.io/v1 NetworkPolicy, as the Kubernetes
"Network Policies" concept page states them):

- a pod is isolated for ingress when at least one policy of its namespace selects it
  (``podSelector``) with ``Ingress`` in ``policyTypes`` (``policyTypes`` unset means Ingress,
  plus Egress when the policy has ``egress`` rules); a pod no policy selects admits everything;
- an isolated pod admits a connection when some rule of some selecting policy matches both its
  port (``ports`` unset or empty: every port; a port with no protocol is TCP; ``endPort`` opens
  a range) and its source (``from`` unset or empty: every source);
- a source entry: ``podSelector`` alone, pods of the policy's namespace; ``namespaceSelector``
  alone, every pod of the selected namespaces; both, the matching pods of the selected
  namespaces; ``ipBlock``, the addresses in ``cidr`` minus ``except`` — which, under the VPC CNI,
  includes any pod whose VPC address falls in it (pods and load balancers share the VPC);
- every namespace carries ``kubernetes.io/metadata.name: <name>``;
- traffic from the pod's own node (kubelet probes) is always allowed, and is not modelled.

Named ports are compared by name with the port given to `admits`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from stacks.config import load_stack_config


@dataclass(frozen=True)
class Peer:
    """A would-be client: a pod (namespace and labels) or an address outside the cluster."""

    name: str
    ip: str
    namespace: str | None = None
    """None: not a pod (a load balancer, the internet)."""
    labels: Mapping[str, str] = field(default_factory=dict)
    namespace_labels: Mapping[str, str] = field(default_factory=dict)

    def all_namespace_labels(self) -> dict[str, str]:
        """The namespace's labels, with the one the API server always sets."""
        if self.namespace is None:
            return {}
        return {**self.namespace_labels, "kubernetes.io/metadata.name": self.namespace}


def selects(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """Whether a LabelSelector matches `labels` (an empty selector matches everything)."""
    selector = selector or {}
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expression in selector.get("matchExpressions") or []:
        key, operator = expression["key"], expression["operator"]
        values = set(expression.get("values") or [])
        matched = {
            "In": key in labels and labels[key] in values,
            "NotIn": key not in labels or labels[key] not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }.get(operator)
        if matched is None:
            raise ValueError(f"unknown selector operator {operator!r}")
        if not matched:
            return False
    return True


def _types(spec: Mapping[str, Any]) -> list[str]:
    declared = spec.get("policyTypes")
    if declared:
        return list(declared)
    return ["Ingress", *(["Egress"] if spec.get("egress") else [])]


def _port_matches(
    ports: Iterable[Mapping[str, Any]] | None, port: int | str, protocol: str
) -> bool:
    ports = list(ports or [])
    if not ports:
        return True
    for entry in ports:
        if entry.get("protocol", "TCP") != protocol:
            continue
        value = entry.get("port")
        if value is None:
            return True
        if isinstance(value, str) or isinstance(port, str):
            if str(value) == str(port):
                return True
            continue
        if int(value) <= port <= int(entry.get("endPort", value)):
            return True
    return False


def _source_matches(
    sources: Iterable[Mapping[str, Any]] | None, policy_namespace: str, peer: Peer
) -> bool:
    sources = list(sources or [])
    if not sources:
        return True
    for source in sources:
        block = source.get("ipBlock")
        if block is not None:
            address = ipaddress.ip_address(peer.ip)
            inside = address in ipaddress.ip_network(block["cidr"])
            excluded = any(address in ipaddress.ip_network(e) for e in block.get("except") or [])
            if inside and not excluded:
                return True
            continue
        if peer.namespace is None:
            continue
        pods, namespaces = source.get("podSelector"), source.get("namespaceSelector")
        if namespaces is None and peer.namespace != policy_namespace:
            continue
        if namespaces is not None and not selects(namespaces, peer.all_namespace_labels()):
            continue
        if pods is None or selects(pods, peer.labels):
            return True
    return False


def admits(
    policies: Iterable[Mapping[str, Any]],
    namespace: str,
    labels: Mapping[str, str],
    peer: Peer,
    port: int | str,
    protocol: str = "TCP",
) -> bool:
    """Whether the pod (`namespace`, `labels`) admits `peer` on `port` under `policies`."""
    selecting = [
        p
        for p in policies
        if p["metadata"].get("namespace") == namespace
        and selects(p["spec"].get("podSelector"), labels)
        and "Ingress" in _types(p["spec"])
    ]
    if not selecting:
        return True
    return any(
        _port_matches(rule.get("ports"), port, protocol)
        and _source_matches(rule.get("from"), namespace, peer)
        for policy in selecting
        for rule in policy["spec"].get("ingress") or []
    )


def admitted(
    policies: Iterable[Mapping[str, Any]],
    namespace: str,
    labels: Mapping[str, str],
    peers: Iterable[Peer],
    port: int | str,
) -> set[str]:
    """The names of the `peers` the pod admits on `port`."""
    policies = list(policies)
    return {peer.name for peer in peers if admits(policies, namespace, labels, peer, port)}


# ------------------------------------------------------------------ the platform's would-be clients

WORKFLOW_POD = {"workflows.argoproj.io/workflow": "mlops-training-29000000"}
"""The label Argo's controller puts on a workflow's pods (a pipeline step)."""
SERVING_POD = {"app.kubernetes.io/name": "market-direction"}


def ints(value: Any) -> Any:
    """Numbers back to integers (the Pulumi mocks carry them as floats)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: ints(v) for k, v in value.items()}
    if isinstance(value, list):
        return [ints(v) for v in value]
    return value


def host(cidr: str, index: int = 10) -> str:
    """An address inside `cidr`."""
    return str(ipaddress.ip_network(cidr)[index])


def cluster_peers(env: str) -> list[Peer]:
    """A client of every kind the cluster has: pods get addresses in the private subnets (the
    node groups' subnets, VPC CNI), the load balancer in a public one, the internet outside."""
    network = load_stack_config(env).network
    private, public = network.private_subnet_cidrs, network.public_subnet_cidrs
    pipeline_ns = load_stack_config(env).workflows.namespace
    pod_ip = host(private[0])
    return [
        Peer("pipeline step", pod_ip, pipeline_ns, WORKFLOW_POD),
        Peer("other pod in the pipeline namespace", pod_ip, pipeline_ns, {"app": "debug"}),
        Peer("serving pod", host(private[1]), "serving", dict(SERVING_POD)),
        Peer("argo workflows pod", pod_ip, "argo", {"app": "argo-server"}),
        Peer("argocd pod", pod_ip, "argocd", {"app.kubernetes.io/name": "argocd-server"}),
        Peer("default namespace pod", pod_ip, "default", {"run": "curl"}),
        Peer("another mlflow namespace pod", pod_ip, "mlflow", {"job-name": "db-upgrade"}),
        Peer("prometheus", pod_ip, "monitoring", {"app.kubernetes.io/name": "prometheus"}),
        Peer("grafana pod", pod_ip, "monitoring", {"app.kubernetes.io/name": "grafana"}),
        Peer("load balancer", host(public[0])),
        Peer("internet", "198.51.100.7"),
    ]
