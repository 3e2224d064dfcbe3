"""The guard rails, as pure functions ``(args, report_violation)``, one module per domain.

Each rule reads only ``args.resource_type``, ``args.name``, ``args.props`` (Pulumi's camelCase
property names) and ``args.get_config()`` — the attributes of pulumi_policy's validation
arguments — so the same functions run in ``pulumi preview --policy-pack policies`` and offline
(`policies.engine`). A rule that touches a value unknown at preview time is skipped for that
resource, as Pulumi's analyzer does. Rules are declared with `rule` next to their function (see
`policies.rules.base`); importing this package imports every domain module, and `RULES` lists
them domain by domain, in `DOMAINS` order. This package imports nothing of the project.
"""

from __future__ import annotations

from policies.rules import ecr, eks, iam, kubernetes, network, placeholders, rds, s3, tags_cost
from policies.rules.base import WORLD, Kind, Level, Report, Rule, collect, rule
from policies.rules.ecr import ecr_registry_policy_replicate_only
from policies.rules.eks import eks_endpoint, eks_logging, eks_node_imds, eks_secrets_encryption
from policies.rules.iam import (
    ADMIN_POLICIES,
    POLICY_DOCUMENTS,
    ci_oidc_trust,
    iam_no_admin,
    iam_no_star_on_star,
)
from policies.rules.kubernetes import (
    CRON_WORKFLOW,
    WORKLOAD_KINDS,
    cron_workflow_guardrails,
    k8s_image_tags,
    k8s_no_secret_in_argv,
    k8s_non_root,
    k8s_probes,
    k8s_resources,
)
from policies.rules.network import (
    DATABASE_AND_SSH_PORTS,
    WEB_PORTS,
    sg_no_world_database_or_ssh,
    sg_world_only_web,
)
from policies.rules.rds import rds_backups, rds_encrypted, rds_private, rds_resilience
from policies.rules.s3 import (
    BUCKET_TYPES,
    s3_bucket_has_encryption,
    s3_bucket_has_public_access_block,
    s3_bucket_has_tls_policy,
    s3_bucket_has_versioning,
    s3_cross_account_read_only,
    s3_encryption_config,
    s3_public_access_block,
    s3_tls_only,
    s3_versioning,
)
from policies.rules.tags_cost import REQUIRED_TAGS, TAGGABLE, cost_guard, required_tags

DOMAINS = (s3, rds, eks, ecr, network, iam, tags_cost, kubernetes, placeholders)
"""The domain modules, in report order."""

RULES: list[Rule] = collect(module.__name__ for module in DOMAINS)
"""Every rule of the pack, in report order."""

__all__ = [
    "ADMIN_POLICIES",
    "BUCKET_TYPES",
    "CRON_WORKFLOW",
    "DATABASE_AND_SSH_PORTS",
    "DOMAINS",
    "POLICY_DOCUMENTS",
    "REQUIRED_TAGS",
    "RULES",
    "TAGGABLE",
    "WEB_PORTS",
    "WORKLOAD_KINDS",
    "WORLD",
    "Kind",
    "Level",
    "Report",
    "Rule",
    "ci_oidc_trust",
    "cost_guard",
    "cron_workflow_guardrails",
    "ecr_registry_policy_replicate_only",
    "eks_endpoint",
    "eks_logging",
    "eks_node_imds",
    "eks_secrets_encryption",
    "iam_no_admin",
    "iam_no_star_on_star",
    "k8s_image_tags",
    "k8s_no_secret_in_argv",
    "k8s_non_root",
    "k8s_probes",
    "k8s_resources",
    "rds_backups",
    "rds_encrypted",
    "rds_private",
    "rds_resilience",
    "required_tags",
    "rule",
    "s3_bucket_has_encryption",
    "s3_bucket_has_public_access_block",
    "s3_bucket_has_tls_policy",
    "s3_bucket_has_versioning",
    "s3_cross_account_read_only",
    "s3_encryption_config",
    "s3_public_access_block",
    "s3_tls_only",
    "s3_versioning",
    "sg_no_world_database_or_ssh",
    "sg_world_only_web",
]
