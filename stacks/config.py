"""The one typed model of a stack's configuration (``stacks/Pulumi.<env>.yaml``).

An environment is a value: every per-env difference is a field here, validated once, with an
error that names the key. The rest of the code receives these values, never ``pulumi.Config``.
"""

from __future__ import annotations

import ipaddress
import itertools
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel

from pipelines.errors import PipelineError
from pipelines.orchestration.argo import WorkflowSettings

PROJECT = "mlops-platform"
STACKS_DIR = Path(__file__).resolve().parent


class _Model(BaseModel):
    model_config = ConfigDict(
        extra="forbid", frozen=True, alias_generator=to_camel, populate_by_name=True
    )


class NetworkConfig(_Model):
    """VPC layout: one public and one private subnet per availability zone."""

    cidr: str = "10.20.0.0/16"
    az_count: int = Field(default=2, ge=2, le=3)
    public_subnet_cidrs: list[str]
    private_subnet_cidrs: list[str]
    nat_gateway_per_az: bool = False
    """One NAT gateway per AZ (resilient) or a single one (cheap)."""
    flow_log_retention_days: int = Field(default=14, ge=1)

    @model_validator(mode="after")
    def _subnets_fit(self) -> NetworkConfig:
        vpc = ipaddress.ip_network(self.cidr)
        subnets = [*self.public_subnet_cidrs, *self.private_subnet_cidrs]
        for key, cidrs in (
            ("publicSubnetCidrs", self.public_subnet_cidrs),
            ("privateSubnetCidrs", self.private_subnet_cidrs),
        ):
            if len(cidrs) != self.az_count:
                raise ValueError(f"{key} has {len(cidrs)} entries, azCount is {self.az_count}")
            for cidr in cidrs:
                if not ipaddress.ip_network(cidr).subnet_of(vpc):  # type: ignore[arg-type]
                    raise ValueError(f"{key}: {cidr} does not fit the VPC {self.cidr}")
        nets = [ipaddress.ip_network(c) for c in subnets]
        for a, b in itertools.combinations(nets, 2):
            if a.overlaps(b):
                raise ValueError(f"subnets {a} and {b} overlap")
        return self


class NodeGroupConfig(_Model):
    """One EKS managed node group."""

    instance_types: list[str]
    capacity_type: Literal["ON_DEMAND", "SPOT"] = "ON_DEMAND"
    min_size: int = Field(ge=0)
    desired_size: int = Field(ge=0)
    max_size: int = Field(ge=1)
    disk_size_gib: int = Field(default=50, ge=20)

    @model_validator(mode="after")
    def _sizes(self) -> NodeGroupConfig:
        if not self.min_size <= self.desired_size <= self.max_size:
            raise ValueError("needs minSize <= desiredSize <= maxSize")
        return self


class ClusterConfig(_Model):
    """EKS control plane and node groups."""

    version: str = "1.33"
    endpoint_public_access: bool = False
    public_access_cidrs: list[str] = Field(default_factory=list)
    """CIDRs allowed to reach a public API endpoint (never 0.0.0.0/0)."""
    log_types: list[str] = Field(
        default_factory=lambda: ["api", "audit", "authenticator", "controllerManager", "scheduler"]
    )
    system_nodes: NodeGroupConfig
    workload_nodes: NodeGroupConfig

    @model_validator(mode="after")
    def _endpoint(self) -> ClusterConfig:
        if self.endpoint_public_access and not self.public_access_cidrs:
            raise ValueError(
                "endpointPublicAccess needs publicAccessCidrs (never open to the world)"
            )
        for cidr in self.public_access_cidrs:
            if ipaddress.ip_network(cidr).prefixlen == 0:
                raise ValueError(f"publicAccessCidrs: {cidr} opens the API to the whole internet")
        return self


class DatabaseConfig(_Model):
    """RDS PostgreSQL, MLflow's backend store."""

    engine_version: str = "16.4"
    instance_class: str = "db.t4g.micro"
    allocated_storage_gib: int = Field(default=20, ge=20)
    max_allocated_storage_gib: int = Field(default=100, ge=20)
    multi_az: bool = False
    deletion_protection: bool = False
    backup_retention_days: int = Field(default=1, ge=1, le=35)
    skip_final_snapshot: bool = True


class StorageConfig(_Model):
    """S3 buckets of the storage layout."""

    bucket_prefix: str
    """Buckets are ``<prefix>-raw``, ``-curated`` and ``-artifacts`` (globally unique names)."""
    raw_transition_days: int = Field(default=30, ge=1)
    """Days before raw archive zips move to a cheaper storage class."""
    noncurrent_expiration_days: int = Field(default=30, ge=1)
    force_destroy: bool = False
    """Allow deleting non-empty buckets (dev only)."""


class PlatformConfig(_Model):
    """What runs on the cluster: charts, MLflow and the GitOps root application."""

    argocd_chart_version: str = "10.1.1"
    argo_workflows_chart_version: str = "1.0.18"
    mlflow_image: str = "ghcr.io/mlflow/mlflow:v3.7.0"
    gitops_repo_url: str
    gitops_revision: str = "main"


class StackConfig(_Model):
    """Everything that differs between dev, staging and prod."""

    env: str
    """Environment name (dev, staging, prod); tags every resource."""
    owner: str
    """Team owning the stack (the ``owner`` tag)."""
    cost_center: str
    """The ``cost-center`` tag."""
    network: NetworkConfig
    cluster: ClusterConfig
    database: DatabaseConfig
    storage: StorageConfig
    platform: PlatformConfig
    workflows: WorkflowSettings
    """Argo CronWorkflows of the pipelines in this environment."""

    @property
    def tags(self) -> dict[str, str]:
        """Tags on every taggable resource."""
        return {
            "env": self.env,
            "project": PROJECT,
            "owner": self.owner,
            "cost-center": self.cost_center,
        }


def parse_stack_config(document: dict[str, Any], source: str) -> tuple[StackConfig, dict[str, Any]]:
    """Our namespace's keys as a `StackConfig`, and every other provider's keys as they are.

    Raises:
        PipelineError: naming the first invalid or unknown key, and the file.
    """
    values: dict[str, Any] = {}
    providers: dict[str, Any] = {}
    for key, value in (document.get("config") or {}).items():
        namespace, _, name = str(key).partition(":")
        if namespace == PROJECT:
            values[name] = value
        else:
            providers[str(key)] = value
    try:
        config = StackConfig.model_validate(values)
    except ValidationError as error:
        item = error.errors()[0]
        where = ".".join(str(p) for p in item["loc"])
        raise PipelineError(
            f"{source}: {PROJECT}:{where}: {item['msg']}"
            + (f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""),
            "fix the stack config (see stacks/config.py for every key)",
        ) from None
    return config, providers


def load_stack_config(env: str, directory: Path = STACKS_DIR) -> StackConfig:
    """`StackConfig` of ``Pulumi.<env>.yaml``.

    Raises:
        PipelineError: if the file is missing or invalid.
    """
    path = directory / f"Pulumi.{env}.yaml"
    if not path.is_file():
        known = sorted(
            p.name.removeprefix("Pulumi.").removesuffix(".yaml")
            for p in directory.glob("Pulumi.*.yaml")
        )
        raise PipelineError(
            f"no stack {env!r} ({path} is missing)", f"choose one of {', '.join(known)}"
        )
    document = yaml.safe_load(path.read_text()) or {}
    return parse_stack_config(document, path.name)[0]
