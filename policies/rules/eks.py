"""EKS: a restricted API endpoint, control-plane logging, secrets encryption, and nodes whose
instance metadata pods cannot reach."""

from __future__ import annotations

from typing import Any

from policies.rules.base import WORLD, Report, as_list, get, rule, who


def _eks(args: Any) -> tuple[Any, Any, Any, Any] | None:
    """(public access, public CIDRs, log types, encryption) of an EKS cluster, or None."""
    p = args.props
    if args.resource_type == "eks:index:Cluster":
        return (
            get(p, "endpointPublicAccess", default=True),
            get(p, "publicAccessCidrs"),
            get(p, "enabledClusterLogTypes"),
            get(p, "encryptionConfigKeyArn"),
        )
    if args.resource_type == "aws:eks/cluster:Cluster":
        vpc = get(p, "vpcConfig", default={})
        return (
            get(vpc, "endpointPublicAccess", default=True),
            get(vpc, "publicAccessCidrs"),
            get(p, "enabledClusterLogTypes"),
            get(p, "encryptionConfig"),
        )
    return None


@rule("eks-endpoint-restricted", "EKS API endpoint not open to the internet", "mandatory")
def eks_endpoint(args: Any, report: Report) -> None:
    """The API endpoint private, or public only to listed CIDRs (never 0.0.0.0/0)."""
    cluster = _eks(args)
    if cluster is None:
        return
    public, cidrs = cluster[0], as_list(cluster[1])
    if public is not False and (not cidrs or WORLD & set(cidrs)):
        report(
            f"{who(args)}: endpointPublicAccess is open to the internet "
            f"(publicAccessCidrs={cidrs or 'unset'}); make it private or restrict the CIDRs"
        )


@rule("eks-control-plane-logging", "EKS control-plane logs (api, audit)", "mandatory")
def eks_logging(args: Any, report: Report) -> None:
    """Control-plane logging, at least api and audit."""
    cluster = _eks(args)
    if cluster is not None and not {"api", "audit"} <= set(as_list(cluster[2])):
        report(f"{who(args)}: enabledClusterLogTypes must include api and audit")


@rule("eks-secrets-encryption", "EKS secrets encrypted with KMS", "mandatory")
def eks_secrets_encryption(args: Any, report: Report) -> None:
    """Kubernetes secrets encrypted with a KMS key."""
    cluster = _eks(args)
    if cluster is not None and not cluster[3]:
        report(
            f"{who(args)}: secrets encryption is off (encryptionConfigKeyArn / encryptionConfig)"
        )


LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
NODE_GROUPS = ("eks:index:ManagedNodeGroup", "aws:eks/nodeGroup:NodeGroup")


@rule(
    "eks-node-imds",
    "Nodes: IMDSv2 only, PUT hop limit 1 (pods cannot take the node role's credentials)",
    "mandatory",
)
def eks_node_imds(args: Any, report: Report) -> None:
    """Launch templates require IMDSv2 tokens with a hop limit of 1; managed node groups use
    one (EKS's default launch template allows 2 hops, so any pod could reach the node role).

    A launch template with the metadata endpoint disabled passes too.
    """
    p = args.props
    if args.resource_type == LAUNCH_TEMPLATE:
        options = get(p, "metadataOptions", default={}) or {}
        if get(options, "httpEndpoint") == "disabled":
            return
        tokens = get(options, "httpTokens")
        hops = get(options, "httpPutResponseHopLimit")
        if tokens != "required":
            report(
                f"{who(args)}: metadataOptions.httpTokens is {tokens!r}; it must be 'required' "
                "(IMDSv2 only)"
            )
        if hops is None or float(hops) != 1:
            report(
                f"{who(args)}: metadataOptions.httpPutResponseHopLimit is {hops!r}; it must be 1 "
                "so pods cannot reach the node's instance metadata (they use IRSA)"
            )
    elif args.resource_type in NODE_GROUPS and not get(p, "launchTemplate"):
        report(
            f"{who(args)}: no launchTemplate, so EKS's default applies (metadata hop limit 2: "
            "pods reach the node role's credentials); give it one with IMDSv2 and hop limit 1"
        )
