"""Tags and cost: the required tags on taggable resources, allowed sizes and node counts."""

from __future__ import annotations

from typing import Any

from policies.rules.base import Report, as_list, config_of, get, rule, who

REQUIRED_TAGS = ("env", "project", "owner", "cost-center")
TAGGABLE = {
    "aws:ec2/vpc:Vpc",
    "aws:ec2/subnet:Subnet",
    "aws:ec2/internetGateway:InternetGateway",
    "aws:ec2/natGateway:NatGateway",
    "aws:ec2/eip:Eip",
    "aws:ec2/routeTable:RouteTable",
    "aws:ec2/securityGroup:SecurityGroup",
    "aws:ec2/flowLog:FlowLog",
    "aws:ec2/instance:Instance",
    "aws:s3/bucket:Bucket",
    "aws:s3/bucketV2:BucketV2",
    "aws:rds/instance:Instance",
    "aws:rds/subnetGroup:SubnetGroup",
    "aws:rds/cluster:Cluster",
    "aws:iam/role:Role",
    "aws:iam/policy:Policy",
    "aws:iam/user:User",
    "aws:ecr/repository:Repository",
    "aws:kms/key:Key",
    "aws:cloudwatch/logGroup:LogGroup",
    "aws:eks/cluster:Cluster",
    "aws:eks/nodeGroup:NodeGroup",
    "eks:index:Cluster",
    "eks:index:ManagedNodeGroup",
    "aws:lb/loadBalancer:LoadBalancer",
    "aws:elasticache/cluster:Cluster",
}


@rule(
    "required-tags",
    "env, project, owner, cost-center on taggable resources",
    "mandatory",
)
def required_tags(args: Any, report: Report) -> None:
    """env, project, owner and cost-center on every taggable resource."""
    if args.resource_type not in TAGGABLE and "tags" not in (args.props or {}):
        return
    tags = get(args.props, "tags") or {}
    missing = [t for t in REQUIRED_TAGS if not get(tags, t)]
    if missing:
        report(f"{who(args)}: tags lack {', '.join(missing)}")


@rule(
    "cost-guard",
    "Allowed instance classes and node counts",
    "advisory",
    config_schema={
        "allowedInstanceTypes": {"type": "array", "items": {"type": "string"}},
        "allowedDbInstanceClasses": {"type": "array", "items": {"type": "string"}},
        "maxNodesPerGroup": {"type": "integer"},
    },
)
def cost_guard(args: Any, report: Report) -> None:
    """Allowed instance classes and node counts (advisory in dev, mandatory in prod).

    Instance types from ``allowedInstanceTypes``, DB classes from ``allowedDbInstanceClasses``
    and at most ``maxNodesPerGroup`` nodes per group.
    """
    config, p, t = config_of(args), args.props, args.resource_type
    if t in ("eks:index:ManagedNodeGroup", "aws:eks/nodeGroup:NodeGroup"):
        allowed = config.get("allowedInstanceTypes")
        bad = [i for i in as_list(get(p, "instanceTypes")) if allowed and i not in allowed]
        if bad:
            report(f"{who(args)}: instanceTypes {bad} not in the allowed list {allowed}")
        limit, size = config.get("maxNodesPerGroup"), get(p, "scalingConfig", "maxSize")
        if limit is not None and size is not None and int(size) > int(limit):
            report(f"{who(args)}: scalingConfig.maxSize {size} exceeds {limit}")
    if t == "aws:rds/instance:Instance":
        allowed = config.get("allowedDbInstanceClasses")
        klass = get(p, "instanceClass")
        if allowed and klass not in allowed:
            report(f"{who(args)}: instanceClass {klass} not in the allowed list {allowed}")
