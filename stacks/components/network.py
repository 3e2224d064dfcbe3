"""Network: VPC, public and private subnets across AZs, NAT, flow logs."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from stacks.components.identity import service_trust_policy
from stacks.config import NetworkConfig


@dataclass(frozen=True)
class NetworkArgs:
    """Inputs of `Network`."""

    config: NetworkConfig
    availability_zones: list[str]
    """Zone names to spread subnets over (the first ``azCount`` are used)."""
    tags: dict[str, str]


class Network(pulumi.ComponentResource):
    """A VPC with one public and one private subnet per AZ; private egress through NAT."""

    vpc_id: pulumi.Output[str]
    """The VPC's id."""
    public_subnet_ids: list[pulumi.Output[str]]
    private_subnet_ids: list[pulumi.Output[str]]

    def __init__(
        self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        """Register the VPC, its subnets, gateways, routes and flow logs."""
        super().__init__("mlops:network:Network", name, None, opts)
        config, tags = args.config, args.tags
        child = pulumi.ResourceOptions(parent=self)
        zones = args.availability_zones[: config.az_count]

        vpc = aws.ec2.Vpc(
            f"{name}-vpc",
            cidr_block=config.cidr,
            enable_dns_hostnames=True,
            enable_dns_support=True,
            tags={**tags, "Name": f"{name}-vpc"},
            opts=child,
        )
        igw = aws.ec2.InternetGateway(f"{name}-igw", vpc_id=vpc.id, tags=tags, opts=child)
        public_rt = aws.ec2.RouteTable(f"{name}-public-rt", vpc_id=vpc.id, tags=tags, opts=child)
        aws.ec2.Route(
            f"{name}-public-default",
            route_table_id=public_rt.id,
            destination_cidr_block="0.0.0.0/0",
            gateway_id=igw.id,
            opts=child,
        )

        public, private, nats = [], [], []
        for i, zone in enumerate(zones):
            subnet = aws.ec2.Subnet(
                f"{name}-public-{i}",
                vpc_id=vpc.id,
                cidr_block=config.public_subnet_cidrs[i],
                availability_zone=zone,
                map_public_ip_on_launch=False,
                tags={**tags, "Name": f"{name}-public-{zone}", "kubernetes.io/role/elb": "1"},
                opts=child,
            )
            aws.ec2.RouteTableAssociation(
                f"{name}-public-{i}", subnet_id=subnet.id, route_table_id=public_rt.id, opts=child
            )
            public.append(subnet)
            if config.nat_gateway_per_az or i == 0:
                eip = aws.ec2.Eip(f"{name}-nat-{i}", domain="vpc", tags=tags, opts=child)
                nats.append(
                    aws.ec2.NatGateway(
                        f"{name}-nat-{i}",
                        subnet_id=subnet.id,
                        allocation_id=eip.id,
                        tags=tags,
                        opts=child,
                    )
                )
        for i, zone in enumerate(zones):
            subnet = aws.ec2.Subnet(
                f"{name}-private-{i}",
                vpc_id=vpc.id,
                cidr_block=config.private_subnet_cidrs[i],
                availability_zone=zone,
                tags={
                    **tags,
                    "Name": f"{name}-private-{zone}",
                    "kubernetes.io/role/internal-elb": "1",
                },
                opts=child,
            )
            table = aws.ec2.RouteTable(
                f"{name}-private-rt-{i}", vpc_id=vpc.id, tags=tags, opts=child
            )
            nat = nats[i] if config.nat_gateway_per_az else nats[0]
            aws.ec2.Route(
                f"{name}-private-default-{i}",
                route_table_id=table.id,
                destination_cidr_block="0.0.0.0/0",
                nat_gateway_id=nat.id,
                opts=child,
            )
            aws.ec2.RouteTableAssociation(
                f"{name}-private-{i}", subnet_id=subnet.id, route_table_id=table.id, opts=child
            )
            private.append(subnet)

        log_group = aws.cloudwatch.LogGroup(
            f"{name}-flow-logs",
            retention_in_days=config.flow_log_retention_days,
            tags=tags,
            opts=child,
        )
        flow_role = aws.iam.Role(
            f"{name}-flow-logs",
            assume_role_policy=service_trust_policy("vpc-flow-logs.amazonaws.com"),
            tags=tags,
            opts=child,
        )
        aws.iam.RolePolicy(
            f"{name}-flow-logs",
            role=flow_role.id,
            policy=log_group.arn.apply(
                lambda arn: json.dumps(
                    {
                        "Version": "2012-10-17",
                        "Statement": [
                            {
                                "Effect": "Allow",
                                "Action": [
                                    "logs:CreateLogStream",
                                    "logs:PutLogEvents",
                                    "logs:DescribeLogStreams",
                                ],
                                "Resource": f"{arn}:*",
                            }
                        ],
                    }
                )
            ),
            opts=child,
        )
        aws.ec2.FlowLog(
            f"{name}-flow-logs",
            vpc_id=vpc.id,
            traffic_type="ALL",
            log_destination=log_group.arn,
            iam_role_arn=flow_role.arn,
            tags=tags,
            opts=child,
        )

        self.vpc_id = vpc.id
        self.public_subnet_ids = [s.id for s in public]
        self.private_subnet_ids = [s.id for s in private]
        self.register_outputs(
            {
                "vpc_id": self.vpc_id,
                "private_subnet_ids": self.private_subnet_ids,
                "public_subnet_ids": self.public_subnet_ids,
            }
        )
