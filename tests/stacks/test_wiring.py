"""Wiring between the stack, the GitOps overlays and the pipelines, checked in the stacks' plans.

Each link is derived from one source and checked from both ends:

(a) images: every ECR image the overlays and the stack's workloads pull names a repository the
    env's plan creates (`stacks.components.ecr.repository_name`);
(b) security groups: every rule's source group is one the consumer carries (managed nodes carry
    the EKS-created cluster security group, so their pods do);
(c) S3 key prefixes: every lifecycle filter and IAM grant prefix matches a key family
    (`pipelines.layout`) the code writes under that bucket's storage URL (``workflows`` config);
(d) IRSA: every ServiceAccount has a role trusting exactly ``system:serviceaccount:<ns>:<name>``
    and the workloads (CronWorkflows, MLflow, the GitOps serving Deployment) run as them.

Each check also runs on a planted instance (a mutated copy of a plan or an overlay) and must
fail it.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml

from pipelines import layout
from stacks.components.ecr import REPOSITORIES, repository_name
from stacks.config import PROJECT, StackConfig, load_stack_config
from stacks.offline.fakes import FAKE_ACCOUNT
from stacks.offline.plan import PlannedResource
from tests.conftest import REPO, StackPlans

ENVS = ("dev", "staging", "prod")
PLATFORM = REPO / "platform"
ROLE_ARN_ANNOTATION = "eks.amazonaws.com/role-arn"
ECR_HOST = re.compile(r"^(?P<account>\d{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com$")


def of_type(resources: list[PlannedResource], token: str) -> list[PlannedResource]:
    return [r for r in resources if r.type == token]


def stack_region(env: str) -> str:
    document = yaml.safe_load((REPO / "stacks" / f"Pulumi.{env}.yaml").read_text())
    return str(document["config"]["aws:region"])


def stack_account(env: str) -> str:
    """The one AWS account the stack may deploy to (the provider's ``allowedAccountIds``)."""
    document = yaml.safe_load((REPO / "stacks" / f"Pulumi.{env}.yaml").read_text())
    (account,) = document["config"]["aws:allowedAccountIds"]
    return str(account)


# ------------------------------------------------------------------------------ (a) images


def overlay(env: str) -> dict[str, Any]:
    """platform/envs/<env>/kustomization.yaml, as written (no kustomize needed)."""
    document: dict[str, Any] = yaml.safe_load(
        (PLATFORM / "envs" / env / "kustomization.yaml").read_text()
    )
    return document


def base_documents() -> list[dict[str, Any]]:
    """Every object of platform/base/serving (the kustomization's resources)."""
    base = PLATFORM / "base" / "serving"
    kustomization = yaml.safe_load((base / "kustomization.yaml").read_text())
    return [
        d
        for name in kustomization["resources"]
        for d in yaml.safe_load_all((base / name).read_text())
        if d
    ]


def containers(pod_spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [*pod_spec.get("initContainers", []), *pod_spec.get("containers", [])]


def ecr_repository(image: str) -> tuple[str, str] | None:
    """(registry host, repository) of an ECR image reference; None for any other registry."""
    host, _, rest = image.partition("/")
    if not ECR_HOST.match(host):
        return None
    rest = rest.split("@", 1)[0]
    return host, rest.rsplit(":", 1)[0] if ":" in rest else rest


def _images(value: Any, path: str) -> Iterator[tuple[str, str]]:
    """(path, image) of every ``image`` string in a Kubernetes object."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "image" and isinstance(item, str):
                yield f"{path}.image", item
            else:
                yield from _images(item, f"{path}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _images(item, f"{path}[{i}]")


def pulled_images(
    resources: list[PlannedResource], kustomization: dict[str, Any]
) -> dict[str, str]:
    """Where -> image, for every image the env runs: the overlay's rewrites of the base's images
    and every container image of the stack's own workloads (Deployments, CronWorkflows)."""
    pulled = {}
    for i, rewrite in enumerate(kustomization.get("images", [])):
        if "newName" in rewrite:
            pulled[f"overlay images[{i}].newName"] = rewrite["newName"]
    for r in resources:
        if r.type.startswith("kubernetes:") and r.type.split(":")[-1] in {
            "Deployment",
            "StatefulSet",
            "DaemonSet",
            "Job",
            "CronJob",
            "CronWorkflow",
        }:
            for path, image in _images(r.inputs, r.name):
                pulled[path] = image
    return pulled


def image_problems(
    resources: list[PlannedResource], kustomization: dict[str, Any], region: str, account: str
) -> list[str]:
    """Every ECR image the env pulls must name a repository the plan creates, in the stack's
    account and region; every overlay rewrite must name an image the base runs (else it
    rewrites nothing)."""
    repositories = {r.inputs["name"] for r in of_type(resources, "aws:ecr/repository:Repository")}
    problems = []
    for where, image in pulled_images(resources, kustomization).items():
        found = ecr_repository(image)
        if found is None:
            continue  # another registry (the MLflow default on ghcr.io, a local image)
        host, repository = found
        if repository not in repositories:
            problems.append(
                f"{where}: {image} pulls {repository}, which the stack does not create "
                f"(its repositories: {', '.join(sorted(repositories))})"
            )
        match = ECR_HOST.match(host)
        if match and match["region"] != region:
            problems.append(f"{where}: {image} is in {match['region']}, the stack in {region}")
        # the plan's images come from its ECR outputs (the mocks' account); the overlay spells
        # the account out, and must spell the stack's (``aws:allowedAccountIds``)
        if match and where.startswith("overlay") and match["account"] != account:
            problems.append(
                f"{where}: {image} is in account {match['account']}, the stack's is {account}"
            )
    base_images = {
        c["image"].split(":")[0]
        for d in base_documents()
        if d["kind"] == "Deployment"
        for c in containers(d["spec"]["template"]["spec"])
    }
    for i, rewrite in enumerate(kustomization.get("images", [])):
        if rewrite["name"] not in base_images:
            problems.append(
                f"overlay images[{i}].name: {rewrite['name']} is no image of platform/base "
                f"({', '.join(sorted(base_images))}): the rewrite changes nothing"
            )
    return problems


@pytest.mark.parametrize("env", ENVS)
def test_every_pulled_image_has_its_repository(plans: StackPlans, env: str) -> None:
    plan, kustomization = plans[env], overlay(env)
    assert (
        image_problems(plan.resources, kustomization, stack_region(env), stack_account(env)) == []
    )
    # the serving Deployment runs the overlay's image from the stack's serving repository
    (rewrite,) = kustomization["images"]
    assert ecr_repository(rewrite["newName"]) == (
        load_stack_config(env).workflows.image.split("/")[0],
        repository_name(env, "serving"),
    )
    created = {r.inputs["name"] for r in of_type(plan.resources, "aws:ecr/repository:Repository")}
    assert created == {repository_name(env, kind) for kind in REPOSITORIES}
    # the pipeline image of the stack config is in the account the provider may deploy to
    pipeline = ecr_repository(load_stack_config(env).workflows.image)
    assert pipeline is not None and pipeline[0].startswith(f"{stack_account(env)}.")


def test_image_check_catches_planted_mismatches(plans: StackPlans) -> None:
    plan, region, account = plans["dev"], stack_region("dev"), stack_account("dev")
    # the overlay pulling the repository the stack used to create
    planted = copy.deepcopy(overlay("dev"))
    planted["images"][0]["newName"] = planted["images"][0]["newName"].replace(
        "mlops-serving", "mlops-dev-serving"
    )
    (problem,) = image_problems(plan.resources, planted, region, account)
    assert "pulls mlops-dev-serving, which the stack does not create" in problem
    # the stack no longer creating the serving repository
    resources = [
        r
        for r in plan.resources
        if not (r.type == "aws:ecr/repository:Repository" and r.name.endswith("serving"))
    ]
    (problem,) = image_problems(resources, overlay("dev"), region, account)
    assert "pulls mlops-serving, which the stack does not create" in problem
    # a CronWorkflow step pulling an image from a repository nobody creates
    resources = copy.deepcopy(plan.resources)
    cron = next(r for r in resources if r.type.endswith(":CronWorkflow"))
    step = next(t for t in cron.inputs["spec"]["workflowSpec"]["templates"] if "container" in t)
    step["container"]["image"] = f"{account}.dkr.ecr.{region}.amazonaws.com/mlops-dev-trainer:1"
    (problem,) = image_problems(resources, overlay("dev"), region, account)
    assert ".image: " in problem and "pulls mlops-dev-trainer, which the stack does not create" in (
        problem
    )
    # an image in another region, and a rewrite of an image the base does not run
    planted = copy.deepcopy(overlay("dev"))
    planted["images"][0]["newName"] = planted["images"][0]["newName"].replace(region, "us-east-1")
    planted["images"].append({"name": "mlops-serving-v2", "newTag": "1"})
    problems = image_problems(plan.resources, planted, region, account)
    assert any("is in us-east-1, the stack in eu-west-1" in p for p in problems)
    assert any("mlops-serving-v2 is no image of platform/base" in p for p in problems)
    # the overlay pulling the serving image from another account's registry (same name)
    planted = copy.deepcopy(overlay("dev"))
    planted["images"][0]["newName"] = planted["images"][0]["newName"].replace(
        account, "999999999999"
    )
    (problem,) = image_problems(plan.resources, planted, region, account)
    assert f"is in account 999999999999, the stack's is {account}" in problem


# ---------------------------------------------------------------------- (b) security groups


@dataclass(frozen=True)
class ClusterGroups:
    """What the (mocked) EKS cluster reports about its security groups."""

    nodes: str
    """``vpcConfig.clusterSecurityGroupId``: the group EKS creates and attaches to the control
    plane and to every managed node without a launch template naming groups."""
    api: str
    """pulumi-eks' ``clusterSecurityGroupId``: only the API endpoint's interfaces carry it."""


@functools.cache
def cluster_groups(logical_name: str, env: str) -> ClusterGroups:
    """Ask the mocks what an ``eks.Cluster`` named `logical_name` reports (a tiny program run
    under the same `PlatformMocks` as the plans), instead of spelling the mocks' values here."""
    import pulumi
    import pulumi_eks as eks

    from stacks.offline.harness import run_program

    def program() -> None:
        cluster = eks.Cluster(logical_name, vpc_id="vpc-0", skip_default_node_group=True)
        pulumi.export("nodes", cluster.eks_cluster.vpc_config.cluster_security_group_id)
        pulumi.export("api", cluster.cluster_security_group_id)

    outputs = run_program(program, project=PROJECT, stack=env).outputs
    return ClusterGroups(nodes=outputs["nodes"], api=outputs["api"])


def carried_groups(resources: list[PlannedResource], groups: ClusterGroups) -> dict[str, set[str]]:
    """Consumer -> the security groups it carries. Pods use their node's interfaces, so the
    workloads carry what the managed nodes carry."""
    carried: dict[str, set[str]] = {}
    # the mocks' ids: "<logical name>-id" (stacks.offline.fakes)
    templates = {
        f"{t.name}-id": t for t in of_type(resources, "aws:ec2/launchTemplate:LaunchTemplate")
    }
    for group in of_type(resources, "eks:index:ManagedNodeGroup"):
        reference = group.inputs.get("launchTemplate")
        if not reference:
            carried[f"node group {group.name}"] = {groups.nodes}
            continue
        # a launch template may name groups (then EKS adds none): resolve it before trusting
        template = templates.get(str(reference.get("id")))
        if template is None:
            carried[f"node group {group.name}"] = {f"<unresolved launch template {reference}>"}
            continue
        named = {
            *(template.inputs.get("vpcSecurityGroupIds") or []),
            *(template.inputs.get("securityGroupNames") or []),
            *(
                g
                for interface in template.inputs.get("networkInterfaces") or []
                for g in interface.get("securityGroups") or []
            ),
        }
        carried[f"node group {group.name}"] = named or {groups.nodes}
    return carried


def _sources(r: PlannedResource) -> Iterator[tuple[str, str]]:
    """(where, source group) of every security-group-sourced ingress rule of a resource."""
    if r.type == "aws:ec2/securityGroup:SecurityGroup":
        for i, rule in enumerate(r.inputs.get("ingress") or []):
            for group in rule.get("securityGroups") or []:
                yield f"{r.name} ingress[{i}]", group
    elif r.type == "aws:ec2/securityGroupRule:SecurityGroupRule" and r.inputs["type"] == "ingress":
        if r.inputs.get("sourceSecurityGroupId"):
            yield r.name, r.inputs["sourceSecurityGroupId"]
    elif r.type == "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule" and r.inputs.get(
        "referencedSecurityGroupId"
    ):
        yield r.name, r.inputs["referencedSecurityGroupId"]


def security_group_problems(resources: list[PlannedResource], groups: ClusterGroups) -> list[str]:
    """Every rule that lets a security group in names one the platform's workloads (pods on the
    managed nodes: MLflow, the pipelines) carry, and some rule lets them reach PostgreSQL."""
    carried = carried_groups(resources, groups)
    carried_by_all = set.intersection(*carried.values()) if carried else set()
    problems = []
    for r in resources:
        for where, source in _sources(r):
            if source not in carried_by_all:
                problems.append(
                    f"{where} lets in {source}, which the workloads do not carry "
                    f"({'; '.join(f'{k}: {sorted(v)}' for k, v in sorted(carried.items()))})"
                )
    reach = [
        source
        for r in of_type(resources, "aws:ec2/securityGroup:SecurityGroup")
        for i, rule in enumerate(r.inputs.get("ingress") or [])
        if rule["fromPort"] <= 5432 <= rule["toPort"]
        for source in rule.get("securityGroups") or []
        if source in carried_by_all
    ]
    if not reach:
        problems.append("no security group lets the workloads reach PostgreSQL (5432)")
    return problems


@pytest.mark.parametrize("env", ENVS)
def test_security_group_sources_are_carried_by_the_consumers(plans: StackPlans, env: str) -> None:
    plan = plans[env]
    (cluster,) = of_type(plan.resources, "eks:index:Cluster")
    groups = cluster_groups(cluster.name, env)
    assert groups.nodes != groups.api  # the mocks tell the two apart, so the check can
    assert security_group_problems(plan.resources, groups) == []


def test_security_group_check_catches_planted_sources(plans: StackPlans) -> None:
    plan = plans["dev"]
    (cluster,) = of_type(plan.resources, "eks:index:Cluster")
    groups = cluster_groups(cluster.name, "dev")
    # RDS open to pulumi-eks' API security group (what the stack used to do): no node has it
    resources = copy.deepcopy(plan.resources)
    (database_sg,) = of_type(resources, "aws:ec2/securityGroup:SecurityGroup")
    database_sg.inputs["ingress"][0]["securityGroups"] = [groups.api]
    problems = security_group_problems(resources, groups)
    assert any(f"lets in {groups.api}, which the workloads do not carry" in p for p in problems)
    assert "no security group lets the workloads reach PostgreSQL (5432)" in problems
    # a node group with a launch template: its groups are not known to be the cluster group
    resources = copy.deepcopy(plan.resources)
    of_type(resources, "eks:index:ManagedNodeGroup")[0].inputs["launchTemplate"] = {"id": "lt-1"}
    problem, unreachable = security_group_problems(resources, groups)
    assert unreachable == "no security group lets the workloads reach PostgreSQL (5432)"
    assert problem.startswith(f"database-sg ingress[0] lets in {groups.nodes}, which the workloads")
    assert "node group cluster-system: [\"<unresolved launch template {'id': 'lt-1'}>\"]" in problem
    # the stack's own launch template naming a group: EKS then adds no cluster group
    resources = copy.deepcopy(plan.resources)
    template = of_type(resources, "aws:ec2/launchTemplate:LaunchTemplate")[0]
    template.inputs["vpcSecurityGroupIds"] = ["sg-0other"]
    assert security_group_problems(resources, groups) == [
        f"database-sg ingress[0] lets in {groups.nodes}, which the workloads do not carry "
        f"(node group cluster-system: ['sg-0other']; node group cluster-workloads: "
        f"['{groups.nodes}'])",
        "no security group lets the workloads reach PostgreSQL (5432)",
    ]


# -------------------------------------------------------------------------- (c) key prefixes


def written_prefixes(config: StackConfig) -> dict[str, set[str]]:
    """Bucket -> the key prefixes the code writes there: `pipelines.layout` families under the
    workflows' storage URLs (raw families in the raw bucket when ``rawStorageUrl`` is set)."""
    workflows = config.workflows
    written: dict[str, set[str]] = {}

    def add(url: str, families: tuple[str, ...]) -> None:
        parsed = urlparse(url)
        assert parsed.scheme == "s3", url
        root = parsed.path.strip("/")
        written.setdefault(parsed.netloc, set()).update(
            f"{root}/{family}" if root else family for family in families
        )

    if workflows.raw_storage_url:
        add(
            workflows.storage_url, tuple(p for p in layout.PREFIXES if p not in layout.RAW_PREFIXES)
        )
        add(workflows.raw_storage_url, layout.RAW_PREFIXES)
    else:
        add(workflows.storage_url, layout.PREFIXES)
    return written


def _matches(prefix: str, families: set[str]) -> bool:
    """Whether `prefix` selects keys the code writes: inside a family, or covering one."""
    return any(prefix.startswith(f) or f.startswith(prefix) for f in families)


def _rule_prefixes(rule: dict[str, Any]) -> list[str]:
    found = [rule.get("prefix"), (rule.get("filter") or {}).get("prefix")]
    found.append(((rule.get("filter") or {}).get("and") or {}).get("prefix"))
    return [p for p in found if p]


def prefix_problems(resources: list[PlannedResource], written: dict[str, set[str]]) -> list[str]:
    """Every lifecycle rule and IAM grant that selects a key prefix selects keys the code
    writes in that bucket; every bucket the code writes to is one the stack creates."""
    problems = []
    buckets = {r.inputs["bucket"] for r in of_type(resources, "aws:s3/bucket:Bucket")}
    for bucket in sorted(set(written) - buckets):
        problems.append(f"the workflows write to s3://{bucket}, which the stack does not create")
    for r in of_type(resources, "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration"):
        bucket = r.inputs["bucket"]
        for rule in r.inputs["rules"]:
            for prefix in _rule_prefixes(rule):
                if not _matches(prefix, written.get(bucket, set())):
                    problems.append(
                        f"lifecycle rule {rule['id']!r} of {bucket} filters {prefix!r}, which "
                        f"nothing writes there (written: {sorted(written.get(bucket, set()))})"
                    )
    for r in of_type(resources, "aws:iam/rolePolicy:RolePolicy"):
        for statement in json.loads(r.inputs["policy"])["Statement"]:
            for resource in statement["Resource"]:
                bucket, _, prefix = resource.removeprefix("arn:aws:s3:::").partition("/")
                prefix = prefix.removesuffix("*")
                if (
                    resource.startswith("arn:aws:s3:::")
                    and prefix
                    and bucket in written
                    and not _matches(prefix, written[bucket])
                ):
                    problems.append(
                        f"{r.name} grants {resource}, a prefix nothing writes in {bucket} "
                        f"(written: {sorted(written[bucket])})"
                    )
    return problems


@pytest.mark.parametrize("env", ENVS)
def test_key_prefixes_match_what_the_code_writes(plans: StackPlans, env: str) -> None:
    plan, config = plans[env], load_stack_config(env)
    written = written_prefixes(config)
    assert prefix_problems(plan.resources, written) == []
    # the raw transition is there, on the raw bucket, at the layout's raw/ family
    raw = next(
        r
        for r in of_type(
            plan.resources, "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration"
        )
        if r.inputs["bucket"] == config.storage.bucket("raw")
    )
    (transition,) = [rule for rule in raw.inputs["rules"] if rule.get("transitions")]
    assert transition["filter"] == {"prefix": f"{config.storage.layout_root}/{layout.RAW}"}
    assert transition["transitions"] == [
        {
            "days": config.storage.raw_transition_days,
            "storageClass": config.storage.raw_transition_storage_class,
        }
    ]


def test_prefix_check_catches_planted_filters(plans: StackPlans) -> None:
    plan, config = plans["dev"], load_stack_config("dev")
    written = written_prefixes(config)

    def lifecycle(resources: list[PlannedResource], kind: str) -> PlannedResource:
        return next(
            r
            for r in resources
            if r.type.endswith(":BucketLifecycleConfiguration")
            and r.inputs["bucket"] == config.storage.bucket(kind)
        )

    # the raw transition filtering raw/ at the bucket root (what the stack used to do): the
    # pipelines write raw zips under v1/raw/, so the rule never matched anything
    resources = copy.deepcopy(plan.resources)
    rule = next(r for r in lifecycle(resources, "raw").inputs["rules"] if r.get("transitions"))
    rule["filter"] = {"prefix": "raw/"}
    (problem,) = prefix_problems(resources, written)
    assert "'raw-to-infrequent-access' of mlops-platform-dev-111111111111-raw filters 'raw/'" in (
        problem
    )
    # a raw-family rule on the curated bucket: raw/ lives in the raw bucket in this stack
    resources = copy.deepcopy(plan.resources)
    lifecycle(resources, "curated").inputs["rules"].append(
        {"id": "planted", "status": "Enabled", "filter": {"prefix": "v1/raw/"}}
    )
    (problem,) = prefix_problems(resources, written)
    assert "'planted' of mlops-platform-dev-111111111111-curated filters 'v1/raw/'" in problem
    # an IAM grant on a prefix nobody writes (the serving log without the layout root)
    resources = copy.deepcopy(plan.resources)
    policy = next(r for r in resources if r.name == "identity-serving" and "policy" in r.inputs)
    document = json.loads(policy.inputs["policy"])
    for statement in document["Statement"]:
        statement["Resource"] = [
            s.replace("/v1/inference/", "/inference/") for s in statement["Resource"]
        ]
    policy.inputs["policy"] = json.dumps(document)
    (problem,) = prefix_problems(resources, written)
    assert "identity-serving grants arn:aws:s3:::mlops-platform-dev-111111111111-curated/" in (
        problem
    )
    # the workflows writing to a bucket the stack does not create
    moved = {**written, "someone-elses-bucket": {"v1/runs/"}}
    assert any("s3://someone-elses-bucket" in p for p in prefix_problems(plan.resources, moved))


# ------------------------------------------------------------------------------------ (d) IRSA


@dataclass(frozen=True)
class Workload:
    """Something that runs pods as a service account."""

    where: str
    namespace: str
    service_account: str | None


def workloads(resources: list[PlannedResource], kustomization: dict[str, Any]) -> list[Workload]:
    """The stack's CronWorkflows and Deployments, and the GitOps serving Deployment (the base,
    in the overlay's namespace)."""
    found = []
    for r in resources:
        kind = r.type.split(":")[-1]
        if r.type.startswith("kubernetes:") and kind in {"CronWorkflow", "Deployment"}:
            spec = (
                r.inputs["spec"]["workflowSpec"]
                if kind == "CronWorkflow"
                else r.inputs["spec"]["template"]["spec"]
            )
            found.append(
                Workload(
                    f"{kind} {r.inputs['metadata']['name']}",
                    r.inputs["metadata"]["namespace"],
                    spec.get("serviceAccountName"),
                )
            )
    for document in base_documents():
        if document["kind"] == "Deployment":
            found.append(
                Workload(
                    f"platform/base/serving Deployment {document['metadata']['name']}",
                    kustomization["namespace"],
                    document["spec"]["template"]["spec"].get("serviceAccountName"),
                )
            )
    return found


def role_arn(role: PlannedResource) -> str:
    """The ARN the mocks give a role (``stacks/offline/fakes.py``: its name, else its logical
    name); in AWS the same shape with the real account."""
    return f"arn:aws:iam::{FAKE_ACCOUNT}:role/{role.inputs.get('name', role.name)}"


def irsa_problems(resources: list[PlannedResource], running: list[Workload]) -> list[str]:
    """Each ServiceAccount's annotated role trusts exactly that account; each IRSA role belongs
    to one account; each workload runs as one of them, and each account is used."""
    problems = []
    roles = {role_arn(r): r for r in of_type(resources, "aws:iam/role:Role")}
    irsa_roles = {  # web identity through the cluster's provider (not GitHub's: the CI roles)
        arn
        for arn, r in roles.items()
        if "AssumeRoleWithWebIdentity" in r.inputs["assumeRolePolicy"]
        and "token.actions.githubusercontent.com" not in r.inputs["assumeRolePolicy"]
    }
    accounts = {}
    claimed: dict[str, list[str]] = {}
    for sa in of_type(resources, "kubernetes:core/v1:ServiceAccount"):
        meta = sa.inputs["metadata"]
        subject = f"system:serviceaccount:{meta['namespace']}:{meta['name']}"
        accounts[(meta["namespace"], meta["name"])] = sa
        arn = (meta.get("annotations") or {}).get(ROLE_ARN_ANNOTATION)
        if arn not in roles:
            problems.append(f"ServiceAccount {subject}: {ROLE_ARN_ANNOTATION} {arn} is no role")
            continue
        claimed.setdefault(arn, []).append(subject)
        statements = json.loads(roles[arn].inputs["assumeRolePolicy"])["Statement"]
        for statement in statements:
            condition = statement.get("Condition") or {}
            equals = condition.get("StringEquals") or {}
            subs = {v for k, v in equals.items() if k.endswith(":sub")}
            auds = {v for k, v in equals.items() if k.endswith(":aud")}
            if (
                statement.get("Action") != "sts:AssumeRoleWithWebIdentity"
                or not str(statement["Principal"].get("Federated", "")).startswith(
                    f"arn:aws:iam::{FAKE_ACCOUNT}:oidc-provider/"
                )
                or set(condition) != {"StringEquals"}
                or subs != {subject}
                or auds != {"sts.amazonaws.com"}
            ):
                problems.append(
                    f"ServiceAccount {subject}: role {arn} trusts {json.dumps(statement)}, not "
                    f"exactly {subject} through the cluster's OIDC provider"
                )
    for arn in sorted(irsa_roles):
        if len(claimed.get(arn, [])) != 1:
            problems.append(
                f"IRSA role {arn} is the role of {claimed.get(arn, [])}, not one account"
            )
    used = set()
    for workload in running:
        key = (workload.namespace, workload.service_account)
        if workload.service_account is None or key not in accounts:
            problems.append(
                f"{workload.where} runs as {workload.namespace}/{workload.service_account}, "
                f"not one of the stack's accounts {sorted(accounts)}"
            )
        used.add(key)
    for key in sorted(set(accounts) - used):
        problems.append(f"ServiceAccount {key[0]}/{key[1]} has a role but no workload uses it")
    return problems


@pytest.mark.parametrize("env", ENVS)
def test_irsa_accounts_roles_and_workloads_agree(plans: StackPlans, env: str) -> None:
    plan, kustomization = plans[env], overlay(env)
    running = workloads(plan.resources, kustomization)
    assert {w.where.split(" ")[0] for w in running} >= {"CronWorkflow", "Deployment"}
    assert any(w.where.startswith("platform/base/serving") for w in running)
    assert irsa_problems(plan.resources, running) == []


def test_irsa_check_catches_planted_mismatches(plans: StackPlans) -> None:
    plan, kustomization = plans["dev"], overlay("dev")
    running = workloads(plan.resources, kustomization)
    # a trust policy naming another account of the namespace
    resources = copy.deepcopy(plan.resources)
    role = next(
        r for r in resources if r.type == "aws:iam/role:Role" and r.name == "identity-pipeline"
    )
    role.inputs["assumeRolePolicy"] = role.inputs["assumeRolePolicy"].replace(
        "system:serviceaccount:mlops:mlops-pipeline", "system:serviceaccount:mlops:default"
    )
    (problem,) = irsa_problems(resources, running)
    assert problem.startswith("ServiceAccount system:serviceaccount:mlops:mlops-pipeline: role")
    # a wildcard subject (StringLike) is not "exactly"
    resources = copy.deepcopy(plan.resources)
    role = next(
        r for r in resources if r.type == "aws:iam/role:Role" and r.name == "identity-mlflow"
    )
    role.inputs["assumeRolePolicy"] = role.inputs["assumeRolePolicy"].replace(
        "StringEquals", "StringLike"
    )
    (problem,) = irsa_problems(resources, running)
    assert problem.startswith("ServiceAccount system:serviceaccount:mlflow:mlflow: role")
    assert (
        '"StringLike"' in problem and "not exactly system:serviceaccount:mlflow:mlflow" in problem
    )
    # a CronWorkflow running as an account the stack does not create
    resources = copy.deepcopy(plan.resources)
    cron = next(r for r in resources if r.type.endswith(":CronWorkflow"))
    cron.inputs["spec"]["workflowSpec"]["serviceAccountName"] = "mlops-pipelines"
    problems = irsa_problems(resources, workloads(resources, kustomization))
    assert any(
        "runs as mlops/mlops-pipelines, not one of the stack's accounts" in p for p in problems
    )
    # the serving Deployment deployed into another namespace than its account's
    elsewhere = {**kustomization, "namespace": "default"}
    problems = irsa_problems(plan.resources, workloads(plan.resources, elsewhere))
    assert any("Deployment market-direction runs as default/serving" in p for p in problems)
    assert "ServiceAccount serving/serving has a role but no workload uses it" in problems


def test_platform_tree_is_what_the_checks_read() -> None:
    """The checks read the overlays and the base directly; guard the shape they rely on."""
    for env in ENVS:
        kustomization = overlay(env)
        assert kustomization["resources"] == ["../../base/serving"]
        assert kustomization["namespace"] == "serving"
    assert Path(PLATFORM / "base" / "serving" / "deployment.yaml").is_file()
