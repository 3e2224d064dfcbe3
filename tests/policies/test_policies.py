"""The CrossGuard pack, evaluated offline: clean stacks, one planted violation per rule, no
crash on missing or unknown values, and a deliberately bad program."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from policies.engine import UNKNOWN, Resource, evaluate, load_pack_config
from policies.rules import RULES
from stacks.offline.plan import Plan
from tests.conftest import StackPlans, run_cli


def captured(plan: Plan) -> list[Resource]:
    return [
        Resource(r.type, r.name, r.inputs, urn=r.name)
        for r in plan.resources
        if not r.type.startswith("mlops:")
    ]


def find(resources: list[Resource], token: str, name: str | None = None) -> Resource:
    return next(
        r for r in resources if r.resource_type == token and (name is None or r.name == name)
    )


@pytest.mark.parametrize("env", ["dev", "staging", "prod"])
@pytest.mark.parametrize("preview", [True, False])
def test_the_three_stacks_have_no_mandatory_violation(
    plans: StackPlans, env: str, preview: bool
) -> None:
    policy = plans.of(env, preview).policy
    assert policy["mandatory"] == 0, policy["violations"]


Mutation = Callable[[dict[str, Any]], Any]


def _set(path: str, value: Any) -> Mutation:
    def mutate(props: dict[str, Any]) -> None:
        *head, last = path.split(".")
        target: Any = props
        for key in head:
            target = target[int(key)] if isinstance(target, list) else target[key]
        if isinstance(target, list):
            target[int(last)] = value
        else:
            target[last] = value

    return mutate


def _container(change: Mutation) -> Mutation:
    def mutate(props: dict[str, Any]) -> None:
        change(props["spec"]["template"]["spec"]["containers"][0])

    return mutate


def _edit_grant(policy: str, change: Callable[[dict[str, Any]], Any]) -> str:
    """`policy` with `change` applied to its first statement granting another account."""
    document = json.loads(policy)
    grant = next(s for s in document["Statement"] if s["Effect"] == "Allow")
    change(grant)
    return json.dumps(document)


RDS, SG, DEPLOY, LAUNCH_TEMPLATE = (
    "aws:rds/instance:Instance",
    "aws:ec2/securityGroup:SecurityGroup",
    "kubernetes:apps/v1:Deployment",
    "aws:ec2/launchTemplate:LaunchTemplate",
)
PLANTED: list[tuple[str, str, str | None, Mutation, str]] = [
    ("rds-storage-encrypted", RDS, None, _set("storageEncrypted", False), "storageEncrypted"),
    ("rds-not-public", RDS, None, _set("publiclyAccessible", True), "publiclyAccessible"),
    ("rds-backup-retention", RDS, None, _set("backupRetentionPeriod", 3), "backupRetentionPeriod"),
    ("rds-resilience", RDS, None, _set("multiAz", False), "multiAz"),
    ("cost-guard", RDS, None, _set("instanceClass", "db.r6g.16xlarge"), "instanceClass"),
    (
        "cost-guard",
        "eks:index:ManagedNodeGroup",
        "cluster-workloads",
        _set("scalingConfig.maxSize", 40),
        "maxSize",
    ),
    (
        "s3-encryption",
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
        "storage-raw",
        _set("rules.0.applyServerSideEncryptionByDefault.sseAlgorithm", "none"),
        "sseAlgorithm",
    ),
    (
        "s3-public-access-block",
        "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
        "storage-raw",
        _set("blockPublicPolicy", False),
        "blockPublicPolicy",
    ),
    (
        "s3-versioning",
        "aws:s3/bucketVersioning:BucketVersioning",
        "storage-raw",
        _set("versioningConfiguration.status", "Suspended"),
        "versioningConfiguration.status",
    ),
    (
        "s3-tls-only",
        "aws:s3/bucketPolicy:BucketPolicy",
        "storage-raw",
        _set(
            "policy",
            json.dumps(
                {"Statement": [{"Effect": "Deny", "Principal": "*", "Action": "s3:DeleteBucket"}]}
            ),
        ),
        "aws:SecureTransport",
    ),
    (  # the next env's grant with its role condition dropped: the whole account may read
        "s3-cross-account-read-only",
        "aws:s3/bucketPolicy:BucketPolicy",
        "storage-curated",
        lambda p: p.update(policy=_edit_grant(p["policy"], lambda s: s.pop("Condition"))),
        "aws:PrincipalArn",
    ),
    (  # a grant that writes
        "s3-cross-account-read-only",
        "aws:s3/bucketPolicy:BucketPolicy",
        "storage-curated",
        lambda p: p.update(
            policy=_edit_grant(p["policy"], lambda s: s["Action"].append("s3:PutObject"))
        ),
        "s3:PutObject",
    ),
    (  # dev's replication into prod widened to every repository
        "ecr-registry-policy-replicate-only",
        "aws:ecr/registryPolicy:RegistryPolicy",
        "serving-replication",
        lambda p: p.update(
            policy=_edit_grant(
                p["policy"],
                lambda s: s.update(Resource=["arn:aws:ecr:eu-west-1:333333333333:repository/*"]),
            )
        ),
        "repository/*",
    ),
    (  # … or allowed to create repositories (without the stack's settings)
        "ecr-registry-policy-replicate-only",
        "aws:ecr/registryPolicy:RegistryPolicy",
        "serving-replication",
        lambda p: p.update(
            policy=_edit_grant(p["policy"], lambda s: s["Action"].append("ecr:CreateRepository"))
        ),
        "ecr:CreateRepository",
    ),
    (
        "eks-endpoint-restricted",
        "eks:index:Cluster",
        None,
        lambda p: p.update(endpointPublicAccess=True, publicAccessCidrs=["0.0.0.0/0"]),
        "endpointPublicAccess",
    ),
    (
        "eks-control-plane-logging",
        "eks:index:Cluster",
        None,
        _set("enabledClusterLogTypes", ["scheduler"]),
        "enabledClusterLogTypes",
    ),
    (
        "eks-secrets-encryption",
        "eks:index:Cluster",
        None,
        _set("encryptionConfigKeyArn", None),
        "encryptionConfigKeyArn",
    ),
    (
        "sg-no-world-database-ssh",
        SG,
        None,
        lambda p: p["ingress"][0].update(cidrBlocks=["0.0.0.0/0"]),
        "5432",
    ),
    (
        "sg-world-only-web",
        SG,
        None,
        lambda p: p["ingress"].append(
            {"protocol": "tcp", "fromPort": 8080, "toPort": 8080, "cidrBlocks": ["0.0.0.0/0"]}
        ),
        "8080",
    ),
    (
        "iam-no-star-on-star",
        "aws:iam/rolePolicy:RolePolicy",
        "identity-pipeline",
        _set(
            "policy",
            json.dumps({"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}),
        ),
        "Action '*'",
    ),
    (
        "iam-no-admin",
        "aws:iam/rolePolicyAttachment:RolePolicyAttachment",
        "cluster-nodes-0",
        _set("policyArn", "arn:aws:iam::aws:policy/AdministratorAccess"),
        "AdministratorAccess",
    ),
    ("required-tags", "aws:ec2/vpc:Vpc", None, lambda p: p["tags"].pop("owner"), "owner"),
    (
        "k8s-resources",
        DEPLOY,
        None,
        _container(lambda c: c["resources"].pop("limits")),
        "limits.cpu",
    ),
    (
        "k8s-run-as-non-root",
        DEPLOY,
        None,
        lambda p: (
            p["spec"]["template"]["spec"]["securityContext"].pop("runAsNonRoot"),
            p["spec"]["template"]["spec"]["containers"][0]["securityContext"].pop("runAsNonRoot"),
        ),
        "runAsNonRoot",
    ),
    (
        "k8s-image-tag",
        DEPLOY,
        None,
        _container(_set("image", "ghcr.io/mlflow/mlflow:latest")),
        "latest",
    ),
    ("k8s-probes", DEPLOY, None, _container(lambda c: c.pop("livenessProbe")), "livenessProbe"),
    (
        "argo-cron-guardrails",
        "kubernetes:argoproj.io/v1alpha1:CronWorkflow",
        None,
        _set("spec.concurrencyPolicy", "Allow"),
        "concurrencyPolicy",
    ),
    (
        "eks-node-imds",
        LAUNCH_TEMPLATE,
        "cluster-workloads-nodes",
        _set("metadataOptions.httpPutResponseHopLimit", 2),
        "httpPutResponseHopLimit",
    ),
    (
        "eks-node-imds",
        LAUNCH_TEMPLATE,
        "cluster-system-nodes",
        _set("metadataOptions.httpTokens", "optional"),
        "httpTokens",
    ),
    (
        "eks-node-imds",
        "eks:index:ManagedNodeGroup",
        "cluster-workloads",
        lambda p: p.pop("launchTemplate"),
        "launchTemplate",
    ),
    (  # the MLflow server as it was: the kubelet expands $(VAR) into argv
        "k8s-no-secret-in-argv",
        DEPLOY,
        None,
        _container(
            lambda c: c["command"].extend(["--backend-store-uri", "$(MLFLOW_BACKEND_STORE_URI)"])
        ),
        "$(MLFLOW_BACKEND_STORE_URI)",
    ),
    (  # the schema upgrade as it was
        "k8s-no-secret-in-argv",
        "kubernetes:batch/v1:Job",
        None,
        _container(_set("command", ["mlflow", "db", "upgrade", "$(MLFLOW_BACKEND_STORE_URI)"])),
        "command[3]",
    ),
    (
        "k8s-no-secret-in-argv",
        "kubernetes:argoproj.io/v1alpha1:CronWorkflow",
        "cluster-services-cron-mlops-training",
        lambda p: p["spec"]["workflowSpec"]["templates"][1]["container"]["args"].append(
            "--tracking-uri=https://pipeline:s3cret@mlflow.internal"
        ),
        "URL with a password",
    ),
]


@pytest.mark.parametrize(
    ("rule", "token", "name", "mutate", "property_name"),
    PLANTED,
    ids=[f"{p[0]}-{p[4]}" for p in PLANTED],
)
def test_a_planted_violation_fires_exactly_its_rule(
    plans: StackPlans,
    rule: str,
    token: str,
    name: str | None,
    mutate: Mutation,
    property_name: str,
) -> None:
    resources = captured(plans["prod"])
    original = find(resources, token, name)
    props = copy.deepcopy(dict(original.props))
    mutate(props)
    broken = Resource(original.resource_type, original.name, props, urn=original.name)
    violations, _ = evaluate([broken], load_pack_config("prod"))
    assert [v.rule for v in violations] == [rule], violations
    assert original.name in violations[0].resource and property_name in violations[0].message
    assert violations[0].level == "mandatory"


@pytest.mark.parametrize("env", ["dev", "staging", "prod"])
def test_the_shipped_cross_account_grants_pass_their_rule(plans: StackPlans, env: str) -> None:
    policy = find(captured(plans[env]), "aws:s3/bucketPolicy:BucketPolicy", "storage-curated")
    grants = [s for s in json.loads(policy.props["policy"])["Statement"] if s["Effect"] == "Allow"]
    assert len(grants) == 4  # get and list, for each of the two other envs
    violations, _ = evaluate([policy], load_pack_config(env))
    assert violations == []


@pytest.mark.parametrize("env", ["staging", "prod"])
def test_the_shipped_registry_policies_pass_their_rule(plans: StackPlans, env: str) -> None:
    policy = find(captured(plans[env]), "aws:ecr/registryPolicy:RegistryPolicy")
    violations, _ = evaluate([policy], load_pack_config(env))
    assert violations == []


@pytest.mark.parametrize(
    ("rule", "token"),
    [
        ("s3-bucket-has-encryption", "aws:s3/bucketServerSideEncryptionConfiguration"),
        ("s3-bucket-has-public-access-block", "aws:s3/bucketPublicAccessBlock"),
        ("s3-bucket-has-versioning", "aws:s3/bucketVersioning"),
        ("s3-bucket-has-tls-policy", "aws:s3/bucketPolicy"),
    ],
)
def test_a_bucket_missing_its_guard_resource_fails_the_stack_rule(
    plans: StackPlans, rule: str, token: str
) -> None:
    resources = [
        r
        for r in captured(plans["prod"])
        if not (r.resource_type.startswith(token) and r.name == "storage-raw")
    ]
    violations, _ = evaluate(resources, load_pack_config("prod"))
    assert [v.rule for v in violations] == [rule]
    assert "storage-raw" in violations[0].resource and "-raw" in violations[0].message


def test_cost_guard_is_advisory_in_dev_and_mandatory_in_prod(plans: StackPlans) -> None:
    group = find(captured(plans["dev"]), "eks:index:ManagedNodeGroup", "cluster-workloads")
    props = copy.deepcopy(dict(group.props))
    props["instanceTypes"] = ["p5.48xlarge"]
    broken = Resource(group.resource_type, group.name, props, urn=group.name)
    assert [(v.rule, v.level) for v in evaluate([broken], load_pack_config("dev"))[0]] == [
        ("cost-guard", "advisory")
    ]
    assert [(v.rule, v.level) for v in evaluate([broken], load_pack_config("prod"))[0]] == [
        ("cost-guard", "mandatory")
    ]


def _unknowns(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _unknowns(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unknowns(v) for v in value]
    return UNKNOWN


def test_rules_never_crash_on_missing_or_unknown_values(plans: StackPlans) -> None:
    resources = captured(plans["prod"])
    empty = [Resource(r.resource_type, r.name, {}, urn=r.name) for r in resources]
    unknown = [
        Resource(r.resource_type, r.name, _unknowns(dict(r.props)), urn=r.name) for r in resources
    ]
    everything_unknown = [
        Resource(r.resource_type, r.name, {k: UNKNOWN for k in r.props}, urn=r.name)
        for r in resources
    ]
    for batch in (empty, unknown, everything_unknown):
        violations, _ = evaluate(batch, load_pack_config("prod"))  # raises nothing
        assert all(v.rule in {r.name for r in RULES} for v in violations)
    assert evaluate(unknown, load_pack_config("prod"))[1] > 0, (
        "unknown values are skipped, not guessed"
    )


BAD_PROGRAM = """
import json
import pulumi
import pulumi_aws as aws
import pulumi_eks as eks
import pulumi_kubernetes as k8s

tags = {"env": "dev", "project": "p", "owner": "o", "cost-center": "c"}
aws.rds.Instance("public-db", engine="postgres", instance_class="db.t4g.micro", allocated_storage=20,
                 storage_encrypted=True, publicly_accessible=True, backup_retention_period=1, tags=tags)
aws.s3.Bucket("open-bucket", bucket="open-bucket", tags=tags)
aws.s3.BucketPublicAccessBlock("open-bucket", bucket="open-bucket", block_public_acls=False,
                               block_public_policy=False, ignore_public_acls=False, restrict_public_buckets=False)
aws.ec2.SecurityGroup("db-open", ingress=[{"protocol": "tcp", "from_port": 5432, "to_port": 5432,
                      "cidr_blocks": ["0.0.0.0/0"]}], tags=tags)
aws.iam.Policy("god-mode", policy=json.dumps({"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": "*", "Resource": "*"}]}), tags=tags)
eks.Cluster("public-eks", endpoint_public_access=True, enabled_cluster_log_types=["api", "audit"],
            encryption_config_key_arn="arn:aws:kms:eu-west-1:1:key/k", tags=tags)
k8s.apps.v1.Deployment("latest", spec={"selector": {"matchLabels": {"a": "b"}}, "template": {
    "metadata": {"labels": {"a": "b"}}, "spec": {"securityContext": {"runAsNonRoot": True},
    "containers": [{"name": "app", "image": "nginx:latest",
                    "livenessProbe": {"httpGet": {"path": "/", "port": 80}},
                    "readinessProbe": {"httpGet": {"path": "/", "port": 80}}}]}}})
"""


@pytest.mark.integration
def test_a_bad_program_fails_with_one_named_violation_for_each_problem(tmp_path: Path) -> None:
    program = tmp_path / "bad"
    program.mkdir()
    (program / "__main__.py").write_text(BAD_PROGRAM)
    (program / "Pulumi.dev.yaml").write_text("config:\n  aws:region: eu-west-1\n")
    done = run_cli(["infra", "plan", "--stack", "dev", "--program", str(program), "--json"])
    assert done.returncode == 1, done.stderr[-2000:]
    assert "mandatory policy violation" in done.stderr
    violations = json.loads(done.stdout)["policy"]["violations"]
    fired = {(v["rule"], v["resource"]) for v in violations}
    assert {
        ("rds-not-public", "public-db"),
        ("s3-public-access-block", "open-bucket"),
        ("s3-bucket-has-encryption", "open-bucket"),
        ("sg-no-world-database-ssh", "db-open"),
        ("iam-no-star-on-star", "god-mode"),
        ("eks-endpoint-restricted", "public-eks"),
        ("k8s-image-tag", "latest"),
        ("k8s-resources", "latest"),
    } <= fired
    assert all(v["level"] == "mandatory" for v in violations if v["rule"] != "cost-guard")


def test_every_rule_becomes_a_pulumi_policy() -> None:
    from pulumi_policy import EnforcementLevel, StackValidationPolicy

    from policies.pack import build_policies

    policies = build_policies()
    assert [p.name for p in policies] == [r.name for r in RULES]
    by_name = {p.name: p for p in policies}
    assert by_name["cost-guard"].enforcement_level == EnforcementLevel.ADVISORY
    assert by_name["rds-not-public"].enforcement_level == EnforcementLevel.MANDATORY
    assert isinstance(by_name["s3-bucket-has-tls-policy"], StackValidationPolicy)
    assert by_name["rds-backup-retention"].config_schema is not None
