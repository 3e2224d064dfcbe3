"""The Pulumi program: one stack of the platform, composed from its components."""

from __future__ import annotations

import json
from typing import Any

import pulumi
import pulumi_aws as aws

from pipelines.orchestration.argo import render
from pipelines.orchestration.dag import PIPELINES, get_pipeline
from stacks.candidates_config import pipeline_role_name
from stacks.components.backup import Backup, BackupArgs
from stacks.components.buckets import Storage, StorageArgs
from stacks.components.candidate_grants import CuratedKey, CuratedKeyArgs, source_statements
from stacks.components.ci import Ci, CiArgs
from stacks.components.cluster import Cluster, ClusterArgs
from stacks.components.cluster_services import ClusterServices, ClusterServicesArgs
from stacks.components.database import Database, DatabaseArgs
from stacks.components.ecr import Registry, RegistryArgs
from stacks.components.identity import Identity, IdentityArgs, service_accounts
from stacks.components.image_replication import (
    ImageReplication,
    ImageReplicationArgs,
    digest_statements,
)
from stacks.components.monitoring import Monitoring, MonitoringArgs
from stacks.components.network import Network, NetworkArgs
from stacks.components.rollouts import Rollouts, RolloutsArgs
from stacks.config import StackConfig, mlflow_client_version, parse_stack_config


def _decode(value: Any) -> Any:
    """Config values arrive as strings; structured ones as JSON."""
    if (isinstance(value, str) and value[:1] in "{[") or value in ("true", "false"):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def config_from_engine() -> StackConfig:
    """The stack's `StackConfig` from the config the Pulumi engine (or the mocks) handed over."""
    from pulumi.runtime import config as runtime_config

    merged = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    document = {"config": {key: _decode(value) for key, value in merged.items()}}
    return parse_stack_config(document, f"stack {pulumi.get_stack()}")[0]


def build(config: StackConfig) -> dict[str, Any]:
    """Create every resource of the stack; returns what the stack exports."""
    tags = config.tags
    zones = aws.get_availability_zones(state="available").names
    network = Network("network", NetworkArgs(config.network, zones, tags))
    registry = Registry("registry", RegistryArgs(config.env, tags))
    chain = config.chain
    # the images job pushes the serving image only where it is built (the chain's first env);
    # the later envs' mlops-serving receives it by replication alone
    builds_serving = chain is None or chain.accounts[0] == chain.account_id
    pushed = {k: v for k, v in registry.repository_arns.items() if k != "serving" or builds_serving}
    # the deploy role exists before the cluster's access entry that names it
    ci = Ci("ci", CiArgs(config.ci, config.env, config.cluster.ci_role_arn, pushed, tags))
    cluster = Cluster(
        "cluster",
        ClusterArgs(
            config.cluster,
            config.env,
            network.vpc_id,
            network.public_subnet_ids,
            network.private_subnet_ids,
            tags,
            after=[ci],
        ),
    )
    region = aws.get_region().region
    if chain is not None:  # the serving image: replicated from the chain's first env
        ImageReplication("serving-replication", ImageReplicationArgs(chain, region))
    curated_key = (
        None
        if chain is None
        else CuratedKey(
            "curated-key",
            CuratedKeyArgs(config.env, chain.account_id, region, tuple(chain.readers), tags),
        )
    )
    storage = Storage(
        "storage",
        StorageArgs(
            config.storage,
            tags,
            break_glass=tuple(config.cluster.admin_role_arns),
            chain=chain,
            curated_key_arn=None if curated_key is None else curated_key.arn,
        ),
    )
    database = Database(
        "database",
        DatabaseArgs(
            config.database,
            config.env,
            network.vpc_id,
            config.network.cidr,
            network.private_subnet_ids,
            cluster.security_group_id,
            tags,
        ),
    )
    Backup(
        "backup",
        BackupArgs(
            config.env,
            config.database.backup_retention_days,
            f"mlops-{config.env}-mlflow",
            storage.bucket_arns["artifacts"],
            tags,
        ),
    )
    accounts = service_accounts(
        config.workflows.namespace,
        config.workflows.service_account,
        config.env,
        layout_root=config.storage.layout_root,
        raw_bucket=config.workflows.raw_storage_url is not None,
    )
    identity = Identity(
        "identity",
        IdentityArgs(
            cluster.oidc_provider_arn,
            cluster.oidc_issuer,
            storage.bucket_arns,
            accounts,
            tags,
            role_names={"pipeline": pipeline_role_name(config.env)},
            more_statements={
                "pipeline": [
                    *([] if chain is None else source_statements(chain.sources, region)),
                    *digest_statements(config.workflows.settings.get("MLOPS_SERVING_REPOSITORY")),
                ]
            },
        ),
    )
    crons = [render(get_pipeline(name), config.workflows) for name in PIPELINES]
    # Logical name and type were "platform" / "mlops:addons:Addons". No real stack exists yet, so
    # the rename needs no pulumi.Alias; after a first deploy, a rename must carry
    # aliases=[pulumi.Alias(name=..., type_=...)] or Pulumi replaces every resource under it.
    services = ClusterServices(
        "cluster-services",
        ClusterServicesArgs(
            config.platform,
            config.env,
            cluster.provider,
            accounts,
            identity.role_arns,
            storage.bucket_names["artifacts"],
            config.platform.mlflow_image
            or registry.repository_urls["mlflow"].apply(
                lambda url: f"{url}:{mlflow_client_version()}"
            ),
            database.backend_store_uri(),
            crons,
            {"app.kubernetes.io/part-of": "mlops-platform", "mlops/env": config.env},
            load_balancer_cidrs=config.network.public_subnet_cidrs,
        ),
    )
    Monitoring(
        "monitoring",
        MonitoringArgs(
            config.platform,
            config.env,
            cluster.provider,
            {"app.kubernetes.io/part-of": "mlops-platform", "mlops/env": config.env},
        ),
        pulumi.ResourceOptions(depends_on=[services]),
    )
    Rollouts(
        "rollouts",
        RolloutsArgs(
            config.platform,
            cluster.provider,
            {"app.kubernetes.io/part-of": "mlops-platform", "mlops/env": config.env},
            config.workflows.namespace,
            crons,
        ),
        pulumi.ResourceOptions(depends_on=[services]),  # the pipeline namespace
    )
    return {
        "vpc_id": network.vpc_id,
        "cluster_name": cluster.name,
        "kubeconfig": cluster.kubeconfig,
        "bucket_names": storage.bucket_names,
        "db_endpoint": database.endpoint,
        "ecr_repository_urls": registry.repository_urls,
        "irsa_role_arns": identity.role_arns,
        "ci_role_arns": ci.role_arns,
        "mlflow_url": services.mlflow_url,
        "argocd_server": services.argocd_server,
        "cron_workflows": [c["metadata"]["name"] for c in crons],
    }


def main() -> None:
    """Entry point of ``stacks/__main__.py``."""
    for name, value in build(config_from_engine()).items():
        pulumi.export(name, value)
