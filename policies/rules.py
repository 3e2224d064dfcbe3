"""The guard rails, as pure functions ``(args, report_violation)``.

Each rule reads only ``args.resource_type``, ``args.name``, ``args.props`` (Pulumi's camelCase
property names) and ``args.get_config()`` — the attributes of pulumi_policy's validation
arguments — so the same functions run in ``pulumi preview --policy-pack policies`` and offline
(`policies.engine`). A rule that touches a value unknown at preview time is skipped for that
resource, as Pulumi's analyzer does. This module imports nothing of the project.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Report = Callable[..., None]
Level = Literal["mandatory", "advisory", "disabled"]

WORLD = {"0.0.0.0/0", "::/0"}
DATABASE_AND_SSH_PORTS = {
    22: "SSH",
    3389: "RDP",
    5432: "PostgreSQL",
    3306: "MySQL",
    1433: "SQL Server",
    1521: "Oracle",
    27017: "MongoDB",
    6379: "Redis",
}
WEB_PORTS = {80, 443}
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
WORKLOAD_KINDS = {
    "kubernetes:apps/v1:Deployment": ("spec", "template", "spec"),
    "kubernetes:apps/v1:StatefulSet": ("spec", "template", "spec"),
    "kubernetes:apps/v1:DaemonSet": ("spec", "template", "spec"),
    "kubernetes:batch/v1:Job": ("spec", "template", "spec"),
    "kubernetes:batch/v1:CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
    "kubernetes:core/v1:Pod": ("spec",),
}
CRON_WORKFLOW = "kubernetes:argoproj.io/v1alpha1:CronWorkflow"


@dataclass(frozen=True)
class Rule:
    """One policy: its name, what it enforces, its default level and its function."""

    name: str
    description: str
    level: Level
    validate: Callable[[Any, Report], None]
    kind: Literal["resource", "stack"] = "resource"
    config_schema: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------- helpers


def _get(mapping: Any, *path: str, default: Any = None) -> Any:
    value = mapping
    for key in path:
        if not isinstance(value, Mapping) or key not in value:
            return default
        value = value[key]
    return value


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


def _statements(document: Any) -> Iterator[Mapping[str, Any]]:
    if isinstance(document, str):
        try:
            document = json.loads(document)
        except ValueError:
            return
    if isinstance(document, Mapping):
        yield from (s for s in _as_list(document.get("Statement")) if isinstance(s, Mapping))


def _config(args: Any) -> Mapping[str, Any]:
    getter = getattr(args, "get_config", None)
    config = getter() if callable(getter) else None
    return config or {}


def _who(args: Any) -> str:
    return f"{args.resource_type} {args.name!r}"


# ---------------------------------------------------------------------------- S3

BUCKET_TYPES = {"aws:s3/bucket:Bucket", "aws:s3/bucketV2:BucketV2"}


def _buckets_with(resources: Iterable[Any], token: str, ok: Callable[[Any], bool]) -> set[str]:
    """Names of buckets that some `token` resource configures in an acceptable way."""
    names = set()
    for r in resources:
        if r.resource_type.startswith(token) and ok(r.props):
            names.add(str(_get(r.props, "bucket")))
    return names


def _stack_bucket_rule(
    token: str, ok: Callable[[Any], bool], what: str, inline: Callable[[Any], bool] | None = None
) -> Callable[[Any, Report], None]:
    def validate(args: Any, report: Report) -> None:
        covered = _buckets_with(args.resources, token, ok)
        for r in args.resources:
            if r.resource_type in BUCKET_TYPES:
                name = str(_get(r.props, "bucket", default=r.name))
                if name not in covered and not (inline and inline(r.props)):
                    report(f"{r.resource_type} {r.name!r} (bucket {name}) has no {what}", r.urn)

    return validate


def _sse_ok(props: Any) -> bool:
    rules = _as_list(_get(props, "rules"))
    return bool(rules) and all(
        _get(rule, "applyServerSideEncryptionByDefault", "sseAlgorithm")
        in ("aws:kms", "AES256", "aws:kms:dsse")
        for rule in rules
    )


def s3_encryption_config(args: Any, report: Report) -> None:
    """A bucket encryption configuration must set KMS or AES256 on every rule."""
    if args.resource_type.startswith(
        "aws:s3/bucketServerSideEncryptionConfiguration"
    ) and not _sse_ok(args.props):
        report(
            f"{_who(args)}: rules[].applyServerSideEncryptionByDefault.sseAlgorithm "
            "must be aws:kms or AES256"
        )


def _pab_ok(props: Any) -> bool:
    return all(
        _get(props, flag) is True
        for flag in (
            "blockPublicAcls",
            "blockPublicPolicy",
            "ignorePublicAcls",
            "restrictPublicBuckets",
        )
    )


def s3_public_access_block(args: Any, report: Report) -> None:
    """All four public-access-block flags on."""
    if args.resource_type == "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock":
        off = [
            flag
            for flag in (
                "blockPublicAcls",
                "blockPublicPolicy",
                "ignorePublicAcls",
                "restrictPublicBuckets",
            )
            if _get(args.props, flag) is not True
        ]
        if off:
            report(f"{_who(args)}: {', '.join(off)} must be true")


def _versioning_ok(props: Any) -> bool:
    return bool(_get(props, "versioningConfiguration", "status") == "Enabled")


def s3_versioning(args: Any, report: Report) -> None:
    """Versioning enabled."""
    if args.resource_type.startswith("aws:s3/bucketVersioning") and not _versioning_ok(args.props):
        report(f"{_who(args)}: versioningConfiguration.status must be Enabled")


def _tls_only(props: Any) -> bool:
    for statement in _statements(_get(props, "policy")):
        condition = _get(statement, "Condition", "Bool", "aws:SecureTransport")
        if statement.get("Effect") == "Deny" and str(condition).lower() == "false":
            return True
    return False


def s3_tls_only(args: Any, report: Report) -> None:
    """A bucket policy must deny requests without TLS."""
    if args.resource_type == "aws:s3/bucketPolicy:BucketPolicy" and not _tls_only(args.props):
        report(f"{_who(args)}: policy has no Deny on aws:SecureTransport = false")


# ---------------------------------------------------------------------------- RDS


def rds_encrypted(args: Any, report: Report) -> None:
    """RDS storage encrypted."""
    if (
        args.resource_type == "aws:rds/instance:Instance"
        and _get(args.props, "storageEncrypted") is not True
    ):
        report(f"{_who(args)}: storageEncrypted must be true")


def rds_private(args: Any, report: Report) -> None:
    """RDS never publicly accessible."""
    if (
        args.resource_type == "aws:rds/instance:Instance"
        and _get(args.props, "publiclyAccessible") is True
    ):
        report(f"{_who(args)}: publiclyAccessible must be false")


def rds_backups(args: Any, report: Report) -> None:
    """Backup retention of at least ``minBackupRetentionDays`` (1; 7 in prod)."""
    if args.resource_type != "aws:rds/instance:Instance":
        return
    minimum = int(_config(args).get("minBackupRetentionDays", 1))
    days = _get(args.props, "backupRetentionPeriod", default=0)
    if int(days or 0) < minimum:
        report(f"{_who(args)}: backupRetentionPeriod is {days}, needs >= {minimum}")


def rds_resilience(args: Any, report: Report) -> None:
    """Multi-AZ and deletion protection where ``requireResilience`` (prod)."""
    if args.resource_type != "aws:rds/instance:Instance" or not _config(args).get(
        "requireResilience"
    ):
        return
    missing = [p for p in ("multiAz", "deletionProtection") if _get(args.props, p) is not True]
    if missing:
        report(f"{_who(args)}: {' and '.join(missing)} must be true in this environment")


# ---------------------------------------------------------------------------- EKS


def _eks(args: Any) -> tuple[Any, Any, Any, Any] | None:
    """(public access, public CIDRs, log types, encryption) of an EKS cluster, or None."""
    p = args.props
    if args.resource_type == "eks:index:Cluster":
        return (
            _get(p, "endpointPublicAccess", default=True),
            _get(p, "publicAccessCidrs"),
            _get(p, "enabledClusterLogTypes"),
            _get(p, "encryptionConfigKeyArn"),
        )
    if args.resource_type == "aws:eks/cluster:Cluster":
        vpc = _get(p, "vpcConfig", default={})
        return (
            _get(vpc, "endpointPublicAccess", default=True),
            _get(vpc, "publicAccessCidrs"),
            _get(p, "enabledClusterLogTypes"),
            _get(p, "encryptionConfig"),
        )
    return None


def eks_endpoint(args: Any, report: Report) -> None:
    """The API endpoint private, or public only to listed CIDRs (never 0.0.0.0/0)."""
    cluster = _eks(args)
    if cluster is None:
        return
    public, cidrs = cluster[0], _as_list(cluster[1])
    if public is not False and (not cidrs or WORLD & set(cidrs)):
        report(
            f"{_who(args)}: endpointPublicAccess is open to the internet "
            f"(publicAccessCidrs={cidrs or 'unset'}); make it private or restrict the CIDRs"
        )


def eks_logging(args: Any, report: Report) -> None:
    """Control-plane logging, at least api and audit."""
    cluster = _eks(args)
    if cluster is not None and not {"api", "audit"} <= set(_as_list(cluster[2])):
        report(f"{_who(args)}: enabledClusterLogTypes must include api and audit")


def eks_secrets_encryption(args: Any, report: Report) -> None:
    """Kubernetes secrets encrypted with a KMS key."""
    cluster = _eks(args)
    if cluster is not None and not cluster[3]:
        report(
            f"{_who(args)}: secrets encryption is off (encryptionConfigKeyArn / encryptionConfig)"
        )


# ---------------------------------------------------------------------------- security groups


def _ingress_rules(args: Any) -> Iterator[tuple[int, int, str, list[str]]]:
    """(from, to, protocol, world CIDRs) of every ingress rule a resource opens."""
    p, t = args.props, args.resource_type
    if t == "aws:ec2/securityGroup:SecurityGroup":
        rules = _as_list(_get(p, "ingress"))
    elif t == "aws:ec2/securityGroupRule:SecurityGroupRule" and _get(p, "type") == "ingress":
        rules = [p]
    elif t == "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule":
        rules = [
            {
                "fromPort": _get(p, "fromPort"),
                "toPort": _get(p, "toPort"),
                "protocol": _get(p, "ipProtocol"),
                "cidrBlocks": _as_list(_get(p, "cidrIpv4")),
                "ipv6CidrBlocks": _as_list(_get(p, "cidrIpv6")),
            }
        ]
    else:
        return
    for rule in rules:
        world = [
            c
            for c in _as_list(_get(rule, "cidrBlocks")) + _as_list(_get(rule, "ipv6CidrBlocks"))
            if c in WORLD
        ]
        protocol = str(_get(rule, "protocol", default="tcp"))
        low, high = _get(rule, "fromPort", default=0), _get(rule, "toPort", default=65535)
        if protocol == "-1":
            low, high = 0, 65535
        yield int(low or 0), int(high if high is not None else 65535), protocol, world


def sg_no_world_database_or_ssh(args: Any, report: Report) -> None:
    """No ingress from 0.0.0.0/0 or ::/0 on SSH, RDP or database ports."""
    for low, high, _, world in _ingress_rules(args):
        exposed = [
            f"{port} ({name})"
            for port, name in DATABASE_AND_SSH_PORTS.items()
            if world and low <= port <= high
        ]
        if exposed:
            report(f"{_who(args)}: ingress from {', '.join(world)} on {', '.join(exposed)}")


def sg_world_only_web(args: Any, report: Report) -> None:
    """Any other world-open ingress only on 80/443."""
    for low, high, _, world in _ingress_rules(args):
        if not world or any(low <= port <= high for port in DATABASE_AND_SSH_PORTS):
            continue  # the database/SSH rule reports those
        if not (low == high and low in WEB_PORTS):
            report(
                f"{_who(args)}: ingress from {', '.join(world)} on ports {low}-{high}; "
                "only 80/443 may be world-open"
            )


# ---------------------------------------------------------------------------- IAM

POLICY_DOCUMENTS = {
    "aws:iam/policy:Policy": "policy",
    "aws:iam/rolePolicy:RolePolicy": "policy",
    "aws:iam/userPolicy:UserPolicy": "policy",
    "aws:iam/groupPolicy:GroupPolicy": "policy",
}
ADMIN_POLICIES = (
    "arn:aws:iam::aws:policy/AdministratorAccess",
    "arn:aws:iam::aws:policy/IAMFullAccess",
)


def _documents(args: Any) -> list[Any]:
    key = POLICY_DOCUMENTS.get(args.resource_type)
    if key:
        return [_get(args.props, key)]
    if args.resource_type == "aws:iam/role:Role":
        return [_get(p, "policy") for p in _as_list(_get(args.props, "inlinePolicies"))]
    return []


def iam_no_star_on_star(args: Any, report: Report) -> None:
    """No statement allowing action ``*`` on resource ``*``."""
    for document in _documents(args):
        for statement in _statements(document):
            actions, resources = (
                _as_list(statement.get("Action")),
                _as_list(statement.get("Resource")),
            )
            if (
                statement.get("Effect") == "Allow"
                and ("*" in actions or "*:*" in actions)
                and "*" in resources
            ):
                report(f"{_who(args)}: policy allows Action '*' on Resource '*'")


def iam_no_admin(args: Any, report: Report) -> None:
    """No administrator policies: neither AdministratorAccess/IAMFullAccess attached nor ``iam:*``
    granted inline."""
    t, p = args.resource_type, args.props
    attached: list[Any] = []
    if t.endswith("PolicyAttachment") and t.startswith("aws:iam/"):
        attached = [_get(p, "policyArn")]
    elif t == "aws:iam/role:Role":
        attached = _as_list(_get(p, "managedPolicyArns"))
    for arn in attached:
        if arn in ADMIN_POLICIES:
            report(f"{_who(args)}: attaches administrator policy {arn}")
    for document in _documents(args):
        for statement in _statements(document):
            if statement.get("Effect") == "Allow" and "iam:*" in _as_list(statement.get("Action")):
                report(f"{_who(args)}: inline policy grants iam:* (administrator)")


# ---------------------------------------------------------------------------- tags & cost


def required_tags(args: Any, report: Report) -> None:
    """env, project, owner and cost-center on every taggable resource."""
    if args.resource_type not in TAGGABLE and "tags" not in (args.props or {}):
        return
    tags = _get(args.props, "tags") or {}
    missing = [t for t in REQUIRED_TAGS if not _get(tags, t)]
    if missing:
        report(f"{_who(args)}: tags lack {', '.join(missing)}")


def cost_guard(args: Any, report: Report) -> None:
    """Instance classes from ``allowedInstanceTypes``/``allowedDbInstanceClasses`` and at most
    ``maxNodesPerGroup`` nodes per group (advisory in dev, mandatory in prod)."""
    config, p, t = _config(args), args.props, args.resource_type
    if t in ("eks:index:ManagedNodeGroup", "aws:eks/nodeGroup:NodeGroup"):
        allowed = config.get("allowedInstanceTypes")
        bad = [i for i in _as_list(_get(p, "instanceTypes")) if allowed and i not in allowed]
        if bad:
            report(f"{_who(args)}: instanceTypes {bad} not in the allowed list {allowed}")
        limit, size = config.get("maxNodesPerGroup"), _get(p, "scalingConfig", "maxSize")
        if limit is not None and size is not None and int(size) > int(limit):
            report(f"{_who(args)}: scalingConfig.maxSize {size} exceeds {limit}")
    if t == "aws:rds/instance:Instance":
        allowed = config.get("allowedDbInstanceClasses")
        klass = _get(p, "instanceClass")
        if allowed and klass not in allowed:
            report(f"{_who(args)}: instanceClass {klass} not in the allowed list {allowed}")


# ---------------------------------------------------------------------------- Kubernetes


def _containers(args: Any) -> list[tuple[str, Mapping[str, Any], Mapping[str, Any]]]:
    """(where, container, pod security context) of every container a workload runs."""
    t, p = args.resource_type, args.props
    found: list[tuple[str, Mapping[str, Any], Mapping[str, Any]]] = []
    if t in WORKLOAD_KINDS:
        pod = _get(p, *WORKLOAD_KINDS[t], default={}) or {}
        pod_security = _get(pod, "securityContext", default={}) or {}
        for group in ("initContainers", "containers"):
            for c in _as_list(_get(pod, group)):
                found.append((f"{group}[{_get(c, 'name')}]", c, pod_security))
    elif t == CRON_WORKFLOW:
        workflow = _get(p, "spec", "workflowSpec", default={}) or {}
        pod_security = _get(workflow, "securityContext", default={}) or {}
        for template in _as_list(_get(workflow, "templates")):
            for key in ("container", "script"):
                c = _get(template, key)
                if c:
                    found.append((f"templates[{_get(template, 'name')}].{key}", c, pod_security))
    return found


def k8s_resources(args: Any, report: Report) -> None:
    """CPU and memory requests and limits on every container."""
    for where, c, _ in _containers(args):
        missing = [
            f"{kind}.{r}"
            for kind in ("requests", "limits")
            for r in ("cpu", "memory")
            if not _get(c, "resources", kind, r)
        ]
        if missing:
            report(f"{_who(args)}: {where} lacks resources {', '.join(missing)}")


def k8s_non_root(args: Any, report: Report) -> None:
    """runAsNonRoot on the pod or every container."""
    for where, c, pod in _containers(args):
        if (
            _get(c, "securityContext", "runAsNonRoot") is not True
            and _get(pod, "runAsNonRoot") is not True
        ):
            report(f"{_who(args)}: {where} securityContext.runAsNonRoot is not true")


def _untagged(image: str) -> bool:
    if "@sha256:" in image:
        return False
    name = image.rsplit("/", 1)[-1]
    return ":" not in name or name.endswith(":latest")


def k8s_image_tags(args: Any, report: Report) -> None:
    """No ``:latest`` or untagged images."""
    for where, c, _ in _containers(args):
        image = str(_get(c, "image", default=""))
        if _untagged(image):
            report(f"{_who(args)}: {where} image {image!r} has no immutable tag")


def k8s_probes(args: Any, report: Report) -> None:
    """Liveness and readiness probes on every Deployment container."""
    if args.resource_type != "kubernetes:apps/v1:Deployment":
        return
    for where, c, _ in _containers(args):
        if where.startswith("initContainers"):
            continue
        missing = [p for p in ("livenessProbe", "readinessProbe") if not _get(c, p)]
        if missing:
            report(f"{_who(args)}: {where} lacks {' and '.join(missing)}")


def cron_workflow_guardrails(args: Any, report: Report) -> None:
    """CronWorkflows: concurrencyPolicy Forbid, a retryStrategy on every step template,
    activeDeadlineSeconds on the workflow."""
    if args.resource_type != CRON_WORKFLOW:
        return
    spec = _get(args.props, "spec", default={}) or {}
    if _get(spec, "concurrencyPolicy") != "Forbid":
        report(f"{_who(args)}: spec.concurrencyPolicy must be Forbid")
    workflow = _get(spec, "workflowSpec", default={}) or {}
    if not _get(workflow, "activeDeadlineSeconds"):
        report(f"{_who(args)}: spec.workflowSpec.activeDeadlineSeconds is not set")
    for template in _as_list(_get(workflow, "templates")):
        if (_get(template, "container") or _get(template, "script")) and not _get(
            template, "retryStrategy"
        ):
            report(f"{_who(args)}: templates[{_get(template, 'name')}] has no retryStrategy")


RULES: list[Rule] = [
    Rule(
        "s3-encryption",
        "S3 buckets encrypted at rest (KMS or AES256)",
        "mandatory",
        s3_encryption_config,
    ),
    Rule(
        "s3-bucket-has-encryption",
        "Every bucket has an encryption configuration",
        "mandatory",
        _stack_bucket_rule(
            "aws:s3/bucketServerSideEncryptionConfiguration",
            _sse_ok,
            "server-side encryption configuration",
            inline=lambda p: bool(_get(p, "serverSideEncryptionConfiguration")),
        ),
        kind="stack",
    ),
    Rule(
        "s3-public-access-block",
        "All four public-access-block flags on",
        "mandatory",
        s3_public_access_block,
    ),
    Rule(
        "s3-bucket-has-public-access-block",
        "Every bucket has a complete public access block",
        "mandatory",
        _stack_bucket_rule(
            "aws:s3/bucketPublicAccessBlock", _pab_ok, "public access block with all four flags"
        ),
        kind="stack",
    ),
    Rule("s3-versioning", "Bucket versioning enabled", "mandatory", s3_versioning),
    Rule(
        "s3-bucket-has-versioning",
        "Every bucket has versioning enabled",
        "mandatory",
        _stack_bucket_rule(
            "aws:s3/bucketVersioning",
            _versioning_ok,
            "versioning enabled",
            inline=lambda p: _get(p, "versioning", "enabled") is True,
        ),
        kind="stack",
    ),
    Rule("s3-tls-only", "Bucket policies deny non-TLS requests", "mandatory", s3_tls_only),
    Rule(
        "s3-bucket-has-tls-policy",
        "Every bucket has a TLS-only policy",
        "mandatory",
        _stack_bucket_rule("aws:s3/bucketPolicy", _tls_only, "TLS-only bucket policy"),
        kind="stack",
    ),
    Rule("rds-storage-encrypted", "RDS storage encrypted", "mandatory", rds_encrypted),
    Rule("rds-not-public", "RDS not publicly accessible", "mandatory", rds_private),
    Rule(
        "rds-backup-retention",
        "RDS backups kept long enough",
        "mandatory",
        rds_backups,
        config_schema={"minBackupRetentionDays": {"type": "integer", "minimum": 1}},
    ),
    Rule(
        "rds-resilience",
        "RDS multi-AZ with deletion protection where required",
        "mandatory",
        rds_resilience,
        config_schema={"requireResilience": {"type": "boolean"}},
    ),
    Rule(
        "eks-endpoint-restricted",
        "EKS API endpoint not open to the internet",
        "mandatory",
        eks_endpoint,
    ),
    Rule(
        "eks-control-plane-logging", "EKS control-plane logs (api, audit)", "mandatory", eks_logging
    ),
    Rule(
        "eks-secrets-encryption",
        "EKS secrets encrypted with KMS",
        "mandatory",
        eks_secrets_encryption,
    ),
    Rule(
        "sg-no-world-database-ssh",
        "No world-open SSH/RDP/database ports",
        "mandatory",
        sg_no_world_database_or_ssh,
    ),
    Rule("sg-world-only-web", "World-open ingress only on 80/443", "mandatory", sg_world_only_web),
    Rule(
        "iam-no-star-on-star",
        "No IAM statement with action * on resource *",
        "mandatory",
        iam_no_star_on_star,
    ),
    Rule("iam-no-admin", "No administrator policies attached or inline", "mandatory", iam_no_admin),
    Rule(
        "required-tags",
        "env, project, owner, cost-center on taggable resources",
        "mandatory",
        required_tags,
    ),
    Rule(
        "cost-guard",
        "Allowed instance classes and node counts",
        "advisory",
        cost_guard,
        config_schema={
            "allowedInstanceTypes": {"type": "array", "items": {"type": "string"}},
            "allowedDbInstanceClasses": {"type": "array", "items": {"type": "string"}},
            "maxNodesPerGroup": {"type": "integer"},
        },
    ),
    Rule("k8s-resources", "Requests and limits on every container", "mandatory", k8s_resources),
    Rule("k8s-run-as-non-root", "Containers run as non-root", "mandatory", k8s_non_root),
    Rule("k8s-image-tag", "No :latest or untagged images", "mandatory", k8s_image_tags),
    Rule("k8s-probes", "Liveness and readiness probes on Deployments", "mandatory", k8s_probes),
    Rule(
        "argo-cron-guardrails",
        "CronWorkflows: Forbid, retries, deadline",
        "mandatory",
        cron_workflow_guardrails,
    ),
]
"""Every rule of the pack, in report order."""
