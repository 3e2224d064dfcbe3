"""Database: RDS PostgreSQL for MLflow, private, encrypted, reachable only from the cluster."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import quote, urlencode

import pulumi
import pulumi_aws as aws
import pulumi_random as random

from stacks.config import DatabaseConfig

PORT = 5432
RDS_CA_BUNDLE = "/etc/ssl/rds/global-bundle.pem"
"""Where images/mlflow/Dockerfile puts the RDS CA bundle (RDS certificates chain to Amazon RDS
CAs, which no system trust store holds: ``sslrootcert=system`` would never verify them)."""


def postgres_uri(
    username: str, password: str, host: str, port: int, database: str, ca_file: str
) -> str:
    """A ``postgresql://`` URI that makes libpq verify the server: ``sslmode=verify-full`` (the
    chain against `ca_file` and the host name against the certificate), not ``require``, which
    encrypts but accepts any certificate."""
    query = urlencode({"sslmode": "verify-full", "sslrootcert": ca_file})
    credentials = f"{quote(username, safe='')}:{quote(password, safe='')}"
    return f"postgresql://{credentials}@{host}:{port}/{quote(database, safe='')}?{query}"


@dataclass(frozen=True)
class DatabaseArgs:
    """Inputs of `Database`."""

    config: DatabaseConfig
    env: str
    vpc_id: pulumi.Input[str]
    vpc_cidr: str
    subnet_ids: Sequence[pulumi.Input[str]]
    client_security_group_id: pulumi.Input[str]
    """The only security group allowed to connect: the one the cluster's nodes carry (and so
    MLflow's pods, which use the node's network interfaces)."""
    tags: dict[str, str]


class Database(pulumi.ComponentResource):
    """MLflow's backend store. The password never leaves Pulumi's secrets except as a K8s Secret."""

    endpoint: pulumi.Output[str]
    address: pulumi.Output[str]
    username: str = "mlflow"
    name: str = "mlflow"
    password: pulumi.Output[str]

    def __init__(
        self, name: str, args: DatabaseArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        """Register the RDS instance, its subnet group, security group and password."""
        super().__init__("mlops:database:Database", name, None, opts)
        config, tags = args.config, args.tags
        child = pulumi.ResourceOptions(parent=self)
        password = random.RandomPassword(f"{name}-password", length=32, special=False, opts=child)
        subnets = aws.rds.SubnetGroup(
            f"{name}-subnets", subnet_ids=list(args.subnet_ids), tags=tags, opts=child
        )
        group = aws.ec2.SecurityGroup(
            f"{name}-sg",
            vpc_id=args.vpc_id,
            description="PostgreSQL from the EKS cluster only",
            ingress=[
                {
                    "protocol": "tcp",
                    "from_port": PORT,
                    "to_port": PORT,
                    "security_groups": [args.client_security_group_id],
                    "description": "EKS nodes (MLflow)",
                }
            ],
            egress=[
                {
                    "protocol": "-1",
                    "from_port": 0,
                    "to_port": 0,
                    "cidr_blocks": [args.vpc_cidr],
                    "description": "inside the VPC",
                }
            ],
            tags=tags,
            opts=child,
        )
        instance = aws.rds.Instance(
            f"{name}-postgres",
            identifier=f"mlops-{args.env}-mlflow",
            engine="postgres",
            engine_version=config.engine_version,  # the major: RDS picks and upgrades the minor
            # at the end of RDS standard support, upgrade the major instead of silently billing
            # RDS Extended Support (support dates: stacks/support_matrix.py)
            engine_lifecycle_support="open-source-rds-extended-support-disabled",
            instance_class=config.instance_class,
            allocated_storage=config.allocated_storage_gib,
            max_allocated_storage=config.max_allocated_storage_gib,
            storage_type="gp3",
            storage_encrypted=True,
            db_name=self.name,
            username=self.username,
            password=password.result,
            port=PORT,
            db_subnet_group_name=subnets.name,
            vpc_security_group_ids=[group.id],
            publicly_accessible=False,
            multi_az=config.multi_az,
            deletion_protection=config.deletion_protection,
            backup_retention_period=config.backup_retention_days,
            skip_final_snapshot=config.skip_final_snapshot,
            final_snapshot_identifier=None
            if config.skip_final_snapshot
            else f"mlops-{args.env}-mlflow-final",
            copy_tags_to_snapshot=True,
            auto_minor_version_upgrade=True,
            performance_insights_enabled=True,
            tags=tags,
            opts=child,
        )
        self.endpoint = instance.endpoint
        self.address = instance.address
        self.password = pulumi.Output.secret(password.result)
        self.register_outputs({"endpoint": self.endpoint})

    def backend_store_uri(self) -> pulumi.Output[str]:
        """``postgresql://…?sslmode=verify-full&sslrootcert=…`` for MLflow, as a secret."""
        return pulumi.Output.secret(
            pulumi.Output.all(self.address, self.password).apply(
                lambda v: postgres_uri(self.username, v[1], v[0], PORT, self.name, RDS_CA_BUNDLE)
            )
        )
