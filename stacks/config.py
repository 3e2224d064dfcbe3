"""The one typed model of a stack's configuration (``stacks/Pulumi.<env>.yaml``).

An environment is a value: every per-env difference is a field here, validated once, with an
error that names the key. The rest of the code receives these values, never ``pulumi.Config``.
"""

from __future__ import annotations

import ipaddress
import itertools
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from pipelines.errors import PipelineError
from pipelines.orchestration.workflow_config import WorkflowSettings
from stacks import support_matrix
from stacks.candidates_config import CandidatesConfig, Chain, chain_of, own_account
from stacks.ci_config import CiConfig
from stacks.config_base import ConfigModel
from stacks.platform_config import PlatformConfig as PlatformConfig
from stacks.platform_config import mlflow_client_version as mlflow_client_version

PROJECT = "mlops-platform"
STACKS_DIR = Path(__file__).resolve().parent
IAM_ROLE_ARN = re.compile(r"^arn:aws(?:-[a-z]+)*:iam::\d{12}:role/[\w+=,.@/-]+$")
"""An IAM role ARN (the role name may carry a path)."""
DEFAULT_LAYOUT_ROOT = "v1"
"""Where the storage layout starts inside each data bucket (``s3://<bucket>/v1/raw/...``)."""


_Model = ConfigModel


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

    version: str = "1.36"
    """Kubernetes minor, in standard support per `stacks.support_matrix` (as of its date)."""
    admin_role_arns: list[str] = Field(min_length=1)
    """IAM roles given cluster-admin through EKS access entries (people operating the platform).
    Not the principal that creates the cluster: EKS already gives that one an admin entry."""
    ci_role_arn: str
    """The IAM role CI deploys with (``pulumi up``: namespaces, CRDs, Helm charts), also
    cluster-admin through an access entry."""
    endpoint_public_access: bool = False
    public_access_cidrs: list[str] = Field(default_factory=list)
    """CIDRs allowed to reach a public API endpoint (never 0.0.0.0/0)."""
    log_types: list[str] = Field(
        default_factory=lambda: ["api", "audit", "authenticator", "controllerManager", "scheduler"]
    )
    system_nodes: NodeGroupConfig
    workload_nodes: NodeGroupConfig

    @field_validator("version")
    @classmethod
    def _supported_version(cls, value: str) -> str:
        problem = support_matrix.EKS.problem(value)
        if problem is not None:
            raise ValueError(problem.removeprefix(f"{support_matrix.EKS.key}: "))
        return value

    @field_validator("admin_role_arns")
    @classmethod
    def _admin_roles(cls, value: list[str]) -> list[str]:
        for arn in value:
            _check_role_arn(arn)
        if len(set(value)) != len(value):
            raise ValueError("lists a role twice (one access entry per principal)")
        return value

    @field_validator("ci_role_arn")
    @classmethod
    def _ci_role(cls, value: str) -> str:
        return _check_role_arn(value)

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

    @model_validator(mode="after")
    def _one_entry_per_principal(self) -> ClusterConfig:
        if self.ci_role_arn in self.admin_role_arns:
            raise ValueError(
                f"ciRoleArn: {self.ci_role_arn} is also in adminRoleArns "
                "(EKS allows one access entry per principal)"
            )
        return self


def _check_role_arn(arn: str) -> str:
    if not IAM_ROLE_ARN.match(arn):
        raise ValueError(f"{arn!r} is not an IAM role ARN (arn:aws:iam::<account>:role/<name>)")
    return arn


class DatabaseConfig(_Model):
    """RDS PostgreSQL, MLflow's backend store."""

    engine_version: str = "17"
    """The PostgreSQL major only: RDS picks its newest minor and upgrades minors automatically
    (autoMinorVersionUpgrade), so a pinned minor would drift and later stop being creatable."""
    instance_class: str = "db.t4g.micro"
    allocated_storage_gib: int = Field(default=20, ge=20)
    max_allocated_storage_gib: int = Field(default=100, ge=20)
    multi_az: bool = False
    deletion_protection: bool = False
    backup_retention_days: int = Field(default=1, ge=1, le=35)
    skip_final_snapshot: bool = True

    @field_validator("engine_version")
    @classmethod
    def _supported_major(cls, value: str) -> str:
        product = support_matrix.POSTGRES
        if "." in value:
            majors = ", ".join(r.version for r in product.choosable())
            raise ValueError(
                f"{value} pins a minor version, which drifts once RDS upgrades it "
                f"(autoMinorVersionUpgrade is on); use the major only: one of {majors}"
            )
        problem = product.problem(value)
        if problem is not None:
            raise ValueError(problem.removeprefix(f"{product.key}: "))
        return value

    @field_validator("instance_class")
    @classmethod
    def _postgres_class(cls, value: str) -> str:
        family, _, size = value.rpartition(".")
        if size not in support_matrix.RDS_POSTGRES_CLASSES.get(family, ()):
            families = ", ".join(f"{f}.*" for f in support_matrix.RDS_POSTGRES_CLASSES)
            raise ValueError(
                f"{value} is not an RDS for PostgreSQL class this platform accepts "
                f"({families}; stacks/support_matrix.py RDS_POSTGRES_CLASSES)"
            )
        return value


class StorageConfig(_Model):
    """S3 buckets of the storage layout."""

    bucket_prefix: str
    """Buckets are ``<prefix>-raw``, ``-curated`` and ``-artifacts`` (globally unique names)."""
    layout_root: str = Field(default=DEFAULT_LAYOUT_ROOT, pattern=r"^[a-z0-9][a-z0-9-]*$")
    """Key prefix the storage layout starts at in the raw and curated buckets; the workflows'
    ``storageUrl`` and ``rawStorageUrl`` must be ``s3://<bucketPrefix>-<bucket>/<layoutRoot>``."""
    raw_transition_storage_class: Literal[
        "STANDARD_IA", "ONEZONE_IA", "INTELLIGENT_TIERING", "GLACIER_IR", "GLACIER", "DEEP_ARCHIVE"
    ] = "STANDARD_IA"
    """Where raw archive zips move after ``rawTransitionDays``."""
    raw_transition_days: int = Field(default=30, ge=0)
    """Days before raw archive zips move to ``rawTransitionStorageClass`` (S3 requires 30 or more
    for STANDARD_IA and ONEZONE_IA)."""
    noncurrent_expiration_days: int = Field(default=30, ge=1)
    force_destroy: bool = False
    """Allow deleting non-empty buckets (dev only)."""

    @field_validator("raw_transition_days")
    @classmethod
    def _transition_minimum(cls, value: int, info: ValidationInfo) -> int:
        storage_class = info.data.get("raw_transition_storage_class")
        if storage_class is None:  # invalid itself: its own error names it
            return value
        minimum = support_matrix.S3_TRANSITION_MIN_DAYS[storage_class]
        if value < minimum:
            raise ValueError(
                f"{value} days is under the {minimum} days S3 requires before a lifecycle "
                f"transition to {storage_class} (rawTransitionStorageClass)"
            )
        return value

    def bucket(self, kind: str) -> str:
        """The name of bucket `kind` (raw, curated, artifacts): ``<bucketPrefix>-<kind>``."""
        return f"{self.bucket_prefix}-{kind}"

    def url(self, kind: str) -> str:
        """``s3://<bucketPrefix>-<kind>/<layoutRoot>``: where the layout starts in bucket `kind`."""
        return f"s3://{self.bucket(kind)}/{self.layout_root}"


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
    ci: CiConfig
    """GitHub Actions' OIDC roles for this environment (`stacks.components.ci`)."""
    candidates: CandidatesConfig | None = None
    """The promotion chain's accounts (`stacks.candidates_config`); required with
    ``workflows.settings.MLOPS_CANDIDATE_STAGES``."""

    @model_validator(mode="before")
    @classmethod
    def _trains_is_a_setting(cls, data: Any) -> Any:
        # platform.trains is the one value; the pipelines read it as MLOPS_TRAINS
        if not isinstance(data, dict) or not isinstance(data.get("workflows"), dict):
            return data
        platform = data.get("platform")
        trains = platform.get("trains", True) if isinstance(platform, dict) else True
        value = str(trains).lower() if isinstance(trains, bool) else str(trains)
        workflows = dict(data["workflows"])
        given = dict(workflows.get("settings") or {})
        if "MLOPS_TRAINS" in given and given["MLOPS_TRAINS"] != value:
            raise ValueError(
                "workflows.settings.MLOPS_TRAINS: set from platform.trains; remove it there"
            )
        workflows["settings"] = {**given, "MLOPS_TRAINS": value}
        return {**data, "workflows": workflows}

    @model_validator(mode="after")
    def _storage_urls_are_the_stacks_buckets(self) -> StackConfig:
        # The pipelines write where these URLs point; the stack's IAM grants and lifecycle rules
        # cover only its own buckets under storage.layoutRoot.
        for key, url, bucket in (
            ("workflows.storageUrl", self.workflows.storage_url, "curated"),
            ("workflows.rawStorageUrl", self.workflows.raw_storage_url, "raw"),
        ):
            if url is not None and url.rstrip("/") != self.storage.url(bucket):
                raise ValueError(
                    f"{key}: {url} is not where this stack keeps the layout in its {bucket} "
                    f"bucket: {self.storage.url(bucket)} (storage.bucketPrefix, "
                    "storage.layoutRoot)"
                )
        return self

    @model_validator(mode="after")
    def _chain_agrees(self) -> StackConfig:
        self.chain  # noqa: B018 - raises naming the key when the two disagree
        return self

    @property
    def chain(self) -> Chain | None:
        """This env's place in the promotion chain (None without one)."""
        return chain_of(
            self.candidates, self.env, self.workflows.settings, self.storage.url("curated")
        )

    @model_validator(mode="after")
    def _charts_are_supported(self) -> StackConfig:
        for product, version in (
            (support_matrix.ARGO_CD, self.platform.argocd_chart_version),
            (support_matrix.ARGO_WORKFLOWS, self.platform.argo_workflows_chart_version),
        ):
            problem = product.problem(version)
            if problem is not None:
                raise ValueError(problem)
        return self

    @property
    def tags(self) -> dict[str, str]:
        """Tags on every taggable resource."""
        return {
            "env": self.env,
            "project": PROJECT,
            "owner": self.owner,
            "cost-center": self.cost_center,
        }


SECRET_KEYS = frozenset({"gitopsRepoCredential"})
"""Keys set with ``pulumi config set --secret``: encrypted, never part of `StackConfig`; each
is read where it is used (`stacks.components.gitops_repo`)."""


def parse_stack_config(document: dict[str, Any], source: str) -> tuple[StackConfig, dict[str, Any]]:
    """Our namespace's keys as a `StackConfig`, and every other provider's keys as they are.

    Raises:
        PipelineError: naming the first invalid or unknown key, and the file.
    """
    values: dict[str, Any] = {}
    providers: dict[str, Any] = {}
    for key, value in (document.get("config") or {}).items():
        namespace, _, name = str(key).partition(":")
        if namespace == PROJECT and name in SECRET_KEYS:
            continue  # read by the component that needs it, as a Pulumi secret
        if namespace == PROJECT:
            values[name] = value
        else:
            providers[str(key)] = value
    try:
        config = StackConfig.model_validate(values)
        own_account(config.chain, providers.get("aws:allowedAccountIds"))
    except ValidationError as error:
        item = error.errors()[0]
        where = ".".join(str(p) for p in item["loc"])
        # a validator's message says what is wrong; for a check across sections (no location)
        # it starts with the key itself
        message = item["msg"].removeprefix("Value error, ")
        raise PipelineError(
            f"{source}: {PROJECT}:{where + ': ' if where else ''}{message}"
            + (f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""),
            "fix the stack config (see stacks/config.py for every key)",
        ) from None
    except ValueError as error:  # a check across our keys and the provider's
        raise PipelineError(f"{source}: {PROJECT}:{error}", "fix the stack config") from None
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
