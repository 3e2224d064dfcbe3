"""Cluster: EKS (pulumi-eks) with KMS secrets encryption, control-plane logs, private or
CIDR-restricted API, access entries (admins and CI), managed node groups (system + workloads),
the OIDC provider for IRSA, the VPC CNI network-policy agent and the metrics-server add-on."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
import pulumi_eks as eks
import pulumi_kubernetes as k8s

from stacks.components.identity import service_trust_policy
from stacks.config import ClusterConfig, NodeGroupConfig

NODE_POLICIES = (
    "arn:aws:iam::aws:policy/AmazonEKSWorkerNodePolicy",
    "arn:aws:iam::aws:policy/AmazonEKS_CNI_Policy",
    "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly",
)
CLUSTER_ADMIN_POLICY = "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"
"""The EKS access policy equivalent to Kubernetes ``cluster-admin``."""
METRICS_SERVER = "metrics-server"
"""The EKS community add-on serving the resource metrics API (the serving HPA reads it)."""
NODE_METADATA_OPTIONS = {
    "http_endpoint": "enabled",
    "http_tokens": "required",
    "http_put_response_hop_limit": 1,
}
"""Instance metadata on every node: IMDSv2 only, and a PUT response that dies after one hop, so
a pod (one hop further than the host, unless host-network) never gets a session token, hence
never the node role's credentials; pods use IRSA. EKS's default launch template allows 2 hops."""
ROOT_DEVICE = "/dev/xvda"
"""The root volume of the EKS-optimized Amazon Linux 2023 AMIs (the node groups' default)."""


def access_entries(config: ClusterConfig) -> dict[str, eks.AccessEntryArgs]:
    """Cluster-admin access entries: each admin role and the CI role (``pulumi up`` creates
    namespaces, CRDs and cluster roles, so CI needs cluster scope too)."""
    principals = {f"admin-{i}": arn for i, arn in enumerate(config.admin_role_arns)}
    principals["ci"] = config.ci_role_arn
    return {
        key: eks.AccessEntryArgs(
            principal_arn=arn,
            access_policies={
                "cluster-admin": eks.AccessPolicyAssociationArgs(
                    policy_arn=CLUSTER_ADMIN_POLICY,
                    access_scope=aws.eks.AccessPolicyAssociationAccessScopeArgs(type="cluster"),
                )
            },
        )
        for key, arn in principals.items()
    }


@dataclass(frozen=True)
class ClusterArgs:
    """Inputs of `Cluster`."""

    config: ClusterConfig
    env: str
    vpc_id: pulumi.Input[str]
    public_subnet_ids: Sequence[pulumi.Input[str]]
    private_subnet_ids: Sequence[pulumi.Input[str]]
    tags: dict[str, str]
    after: Sequence[pulumi.Resource] = ()
    """Resources the EKS cluster waits for: the CI roles its access entries name."""


class Cluster(pulumi.ComponentResource):
    """The EKS cluster, its node groups, and a Kubernetes provider bound to it."""

    name: pulumi.Output[str]
    kubeconfig: pulumi.Output[str]
    """Kubeconfig JSON (secret)."""
    oidc_provider_arn: pulumi.Output[str]
    oidc_issuer: pulumi.Output[str]
    security_group_id: pulumi.Output[str]
    """The cluster security group EKS creates and attaches to the control plane and to every
    managed node (so to every pod on them): the source a database rule must name. Not
    pulumi-eks' ``cluster_security_group_id``, which only the API endpoint's interfaces carry."""
    provider: k8s.Provider

    def __init__(
        self, name: str, args: ClusterArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        """Register the KMS key, EKS cluster, node role and groups, and Kubernetes provider."""
        super().__init__("mlops:cluster:Cluster", name, None, opts)
        config, tags = args.config, args.tags
        child = pulumi.ResourceOptions(parent=self)
        key = aws.kms.Key(
            f"{name}-secrets",
            description=f"EKS secrets encryption ({args.env})",
            enable_key_rotation=True,
            deletion_window_in_days=30,
            tags=tags,
            opts=child,
        )
        cluster = eks.Cluster(
            f"{name}-eks",
            name=f"mlops-{args.env}",
            version=config.version,
            vpc_id=args.vpc_id,
            public_subnet_ids=list(args.public_subnet_ids),
            private_subnet_ids=list(args.private_subnet_ids),
            node_associate_public_ip_address=False,
            skip_default_node_group=True,
            create_oidc_provider=True,
            authentication_mode=eks.AuthenticationMode.API,
            access_entries=access_entries(config),
            # at the end of standard support EKS upgrades the cluster instead of billing
            # extended support (pulumi-eks defaults to EXTENDED); dates: stacks/support_matrix.py
            upgrade_policy=aws.eks.ClusterUpgradePolicyArgs(support_type="STANDARD"),
            # the vpc-cni add-on with its network-policy agent: platform/base/serving's
            # NetworkPolicy is only enforced with it
            vpc_cni_options=eks.VpcCniOptionsArgs(enable_network_policy=True),
            endpoint_private_access=True,
            endpoint_public_access=config.endpoint_public_access,
            public_access_cidrs=config.public_access_cidrs or None,
            enabled_cluster_log_types=config.log_types,
            encryption_config_key_arn=key.arn,
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(args.after)),
        )
        node_role = aws.iam.Role(
            f"{name}-nodes",
            assume_role_policy=service_trust_policy("ec2.amazonaws.com"),
            tags=tags,
            opts=child,
        )
        attachments = [
            aws.iam.RolePolicyAttachment(
                f"{name}-nodes-{i}", role=node_role.name, policy_arn=arn, opts=child
            )
            for i, arn in enumerate(NODE_POLICIES)
        ]
        node_groups = [
            self._node_group(
                f"{name}-{group}", cluster, node_role, group_config, args, labels, attachments
            )
            for group, group_config, labels in (
                ("system", config.system_nodes, {"mlops/pool": "system"}),
                ("workloads", config.workload_nodes, {"mlops/pool": "workloads"}),
            )
        ]
        # the resource metrics API (metrics.k8s.io) the serving HorizontalPodAutoscaler scales
        # on; its pods need nodes to become ACTIVE
        aws.eks.Addon(
            f"{name}-{METRICS_SERVER}",
            cluster_name=cluster.eks_cluster.name,
            addon_name=METRICS_SERVER,
            resolve_conflicts_on_create="OVERWRITE",
            resolve_conflicts_on_update="OVERWRITE",
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self, depends_on=node_groups),
        )

        self.name = cluster.eks_cluster.name
        self.kubeconfig = pulumi.Output.secret(cluster.kubeconfig_json)
        self.oidc_provider_arn = cluster.oidc_provider_arn
        self.oidc_issuer = cluster.oidc_provider_url
        self.security_group_id = cluster.eks_cluster.vpc_config.cluster_security_group_id
        self.provider = k8s.Provider(
            f"{name}-k8s",
            kubeconfig=cluster.kubeconfig_json,
            enable_server_side_apply=True,
            opts=child,
        )
        self.register_outputs({"name": self.name, "oidc_provider_arn": self.oidc_provider_arn})

    def _node_group(
        self,
        name: str,
        cluster: eks.Cluster,
        role: aws.iam.Role,
        config: NodeGroupConfig,
        args: ClusterArgs,
        labels: dict[str, str],
        attachments: Sequence[pulumi.Resource],
    ) -> eks.ManagedNodeGroup:
        # The launch template sets no security group, so EKS still puts the nodes in the cluster
        # security group (`security_group_id`); with a launch template the disk size lives in it.
        template = aws.ec2.LaunchTemplate(
            f"{name}-nodes",
            description=f"{name} nodes: IMDSv2 only, hop limit 1, encrypted gp3 root volume",
            metadata_options=aws.ec2.LaunchTemplateMetadataOptionsArgs(**NODE_METADATA_OPTIONS),
            block_device_mappings=[
                aws.ec2.LaunchTemplateBlockDeviceMappingArgs(
                    device_name=ROOT_DEVICE,
                    ebs=aws.ec2.LaunchTemplateBlockDeviceMappingEbsArgs(
                        volume_size=config.disk_size_gib,
                        volume_type="gp3",
                        encrypted="true",
                        delete_on_termination="true",
                    ),
                )
            ],
            update_default_version=True,
            tags=args.tags,
            opts=pulumi.ResourceOptions(parent=self),
        )
        return eks.ManagedNodeGroup(
            name,
            cluster=cluster,
            node_role_arn=role.arn,
            subnet_ids=list(args.private_subnet_ids),
            instance_types=config.instance_types,
            capacity_type=config.capacity_type,
            launch_template=aws.eks.NodeGroupLaunchTemplateArgs(
                id=template.id, version=template.latest_version.apply(str)
            ),
            scaling_config={
                "min_size": config.min_size,
                "desired_size": config.desired_size,
                "max_size": config.max_size,
            },
            labels=labels,
            tags=args.tags,
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(attachments)),
        )
