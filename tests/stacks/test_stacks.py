"""The Pulumi stacks under Pulumi's own mocks: inventory, per-env values, tags, secrets, and
no output the program reads left unset by the mocks."""

from __future__ import annotations

import importlib
import inspect
import json
from typing import Any

import pytest

from pipelines.errors import PipelineError
from stacks.components.mlflow import UPGRADE_COMMAND
from stacks.config import load_stack_config
from stacks.offline.harness import SECRET, UNKNOWN
from stacks.offline.plan import Plan, plan_stack
from tests.conftest import REPO, StackPlans, run_cli

ENVS = ("dev", "staging", "prod")
MODES = (True, False)  # preview, update


def of_type(plan: Plan, token: str) -> list[Any]:
    return [r for r in plan.resources if r.type == token]


def one(plan: Plan, token: str) -> dict[str, Any]:
    (resource,) = of_type(plan, token)
    inputs: dict[str, Any] = resource.inputs
    return inputs


@pytest.mark.parametrize("env", ENVS)
@pytest.mark.parametrize("preview", MODES)
def test_inventory(plans: StackPlans, env: str, preview: bool) -> None:
    plan = plans.of(env, preview)
    count = lambda token: len(of_type(plan, token))  # noqa: E731
    assert count("aws:ec2/vpc:Vpc") == 1 and count("eks:index:Cluster") == 1
    assert count("aws:rds/instance:Instance") == 1 and count("aws:s3/bucket:Bucket") == 3
    assert count("aws:ecr/repository:Repository") == 3 and count("eks:index:ManagedNodeGroup") == 2
    assert {r.inputs["name"] for r in of_type(plan, "aws:ecr/repository:Repository")} == {
        f"mlops-{env}-mlflow",
        f"mlops-{env}-pipeline",
        "mlops-serving",  # the same name in every account: ECR replication keeps it
    }
    (addon,) = of_type(plan, "aws:eks/addon:Addon")
    assert addon.inputs["addonName"] == "metrics-server"
    assert {r.name for r in of_type(plan, "aws:iam/role:Role")} >= {
        "identity-pipeline",
        "identity-mlflow",
        "identity-serving",
    }
    assert sorted(r.inputs["chart"] for r in of_type(plan, "kubernetes:helm.sh/v4:Chart")) == [
        "argo-cd",
        "argo-rollouts",
        "argo-workflows",
        "kube-prometheus-stack",
        "prometheus-pushgateway",
    ]
    assert count("kubernetes:apps/v1:Deployment") == 1  # the MLflow server
    (app,) = of_type(plan, "kubernetes:argoproj.io/v1alpha1:Application")
    assert app.inputs["spec"]["source"]["path"] == f"platform/envs/{env}"
    crons = of_type(plan, "kubernetes:argoproj.io/v1alpha1:CronWorkflow")
    assert sorted(c.inputs["metadata"]["name"] for c in crons) == [
        "mlops-monitor",
        "mlops-training",
    ]
    # every resource sits under one of our components, which sit under the stack
    components = {r.name for r in plan.resources if r.type.startswith("mlops:")}
    assert components == {
        "network",
        "cluster",
        "curated-key",
        "storage",
        "registry",
        "serving-replication",
        "database",
        "identity",
        "cluster-services",
        "monitoring",
        "rollouts",
        "backup",
        "ci",
    }
    assert all(r.parent in components for r in plan.resources if not r.type.startswith("mlops:"))


@pytest.mark.parametrize("preview", MODES)
def test_environments_differ_as_configured(plans: StackPlans, preview: bool) -> None:
    dev, staging, prod = (plans.of(env, preview) for env in ENVS)
    assert [len(of_type(p, "aws:ec2/natGateway:NatGateway")) for p in (dev, staging, prod)] == [
        1,
        1,
        3,
    ]
    assert [len(of_type(p, "aws:ec2/subnet:Subnet")) for p in (dev, staging, prod)] == [4, 4, 6]
    rds = [one(p, "aws:rds/instance:Instance") for p in (dev, staging, prod)]
    assert [r["multiAz"] for r in rds] == [False, False, True]
    assert [r["deletionProtection"] for r in rds] == [False, True, True]
    assert [r["backupRetentionPeriod"] for r in rds] == [1, 7, 14]
    assert all(r["storageEncrypted"] and not r["publiclyAccessible"] for r in rds)
    workloads = [
        next(
            r.inputs
            for r in of_type(p, "eks:index:ManagedNodeGroup")
            if r.name.endswith("workloads")
        )
        for p in (dev, staging, prod)
    ]
    assert [w["capacityType"] for w in workloads] == ["SPOT", "ON_DEMAND", "ON_DEMAND"]
    clusters = [one(p, "eks:index:Cluster") for p in (dev, staging, prod)]
    assert [c["endpointPublicAccess"] for c in clusters] == [True, True, False]
    assert clusters[0]["publicAccessCidrs"] == ["203.0.113.0/24"]
    assert all(
        c["endpointPrivateAccess"] and len(c["enabledClusterLogTypes"]) == 5 for c in clusters
    )
    assert [
        one(p, "aws:cloudwatch/logGroup:LogGroup")["retentionInDays"] for p in (dev, staging, prod)
    ] == [7, 14, 90]
    buckets = [
        {b.inputs["bucket"] for b in of_type(p, "aws:s3/bucket:Bucket")}
        for p in (dev, staging, prod)
    ]
    assert not (buckets[0] & buckets[1] or buckets[1] & buckets[2])


@pytest.mark.parametrize("preview", MODES)
def test_cluster_access_support_and_add_ons(plans: StackPlans, preview: bool) -> None:
    """Access entries from the stack config, standard support only, the network-policy agent
    (the serving NetworkPolicy) and metrics-server (the serving HPA)."""
    for env in ENVS:
        config = load_stack_config(env).cluster
        cluster = one(plans.of(env, preview), "eks:index:Cluster")
        assert cluster["version"] == config.version == "1.36"
        assert cluster["authenticationMode"] == "API"
        assert cluster["upgradePolicy"] == {"supportType": "STANDARD"}
        assert cluster["vpcCniOptions"]["enableNetworkPolicy"] is True
        entries = cluster["accessEntries"]
        assert {e["principalArn"] for e in entries.values()} == {
            *config.admin_role_arns,
            config.ci_role_arn,
        }
        assert len(entries) == len(config.admin_role_arns) + 1
        for entry in entries.values():
            (association,) = entry["accessPolicies"].values()
            assert association == {
                "policyArn": "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy",
                "accessScope": {"type": "cluster"},
            }
        addon = one(plans.of(env, preview), "aws:eks/addon:Addon")
        assert addon["clusterName"] == f"mlops-{env}"
        rds = one(plans.of(env, preview), "aws:rds/instance:Instance")
        assert rds["engineVersion"] == "17" and rds["autoMinorVersionUpgrade"] is True
        assert rds["engineLifecycleSupport"] == "open-source-rds-extended-support-disabled"


def _taggable(token: str) -> bool:
    """Whether the provider's resource class takes `tags` (pulumi_aws, pulumi_eks)."""
    package, module_path, cls = token.split(":")
    module = module_path.split("/")[0]
    python_module = {"aws": f"pulumi_aws.{module}", "eks": "pulumi_eks"}.get(package)
    if python_module is None:
        return False
    klass = getattr(importlib.import_module(python_module), cls)
    return "tags" in inspect.signature(klass._internal_init).parameters


@pytest.mark.parametrize("env", ENVS)
def test_every_taggable_resource_is_tagged(plans: StackPlans, env: str) -> None:
    plan = plans[env]
    wanted = {
        "env": env,
        "project": "mlops-platform",
        "owner": "ml-platform",
        "cost-center": "cc-1042",
    }
    taggable = [r for r in plan.resources if r.custom and _taggable(r.type)]
    assert len(taggable) >= 25
    untagged = [
        f"{r.type} {r.name}"
        for r in taggable
        if not wanted.items() <= (r.inputs.get("tags") or {}).items()
    ]
    assert untagged == []


@pytest.mark.parametrize("env", ENVS)
@pytest.mark.parametrize("preview", MODES)
def test_no_secret_in_plain_outputs_or_inputs(plans: StackPlans, env: str, preview: bool) -> None:
    plan = plans.of(env, preview)
    assert "kubeconfig" in plan.secret_outputs and plan.outputs["kubeconfig"] == SECRET
    text = json.dumps(plan.document())
    assert "mock-password" not in text  # the mocked RDS password appears nowhere unmasked
    secret = next(r for r in plan.resources if r.type == "kubernetes:core/v1:Secret")
    assert (
        secret.inputs["stringData"] == SECRET
        or secret.inputs["stringData"]["backend-store-uri"] == SECRET
    )
    rds = one(plan, "aws:rds/instance:Instance")
    assert rds["password"] in (SECRET, UNKNOWN)


def _walk(value: Any, path: str = "") -> list[tuple[str, Any]]:
    if isinstance(value, dict):
        return [item for k, v in value.items() for item in _walk(v, f"{path}.{k}")]
    if isinstance(value, list):
        return [item for i, v in enumerate(value) for item in _walk(v, f"{path}[{i}]")]
    return [(path, value)]


@pytest.mark.parametrize("env", ENVS)
def test_mocks_return_every_output_the_program_reads(plans: StackPlans, env: str) -> None:
    plan = plans[env]
    holes = [
        f"{r.type} {r.name}{path}"
        for r in plan.resources
        for path, value in _walk(r.inputs)
        if value == UNKNOWN or (value is None and "[" in path)
    ]
    assert holes == []
    sg = one(plan, "aws:ec2/securityGroup:SecurityGroup")
    # the EKS-created cluster security group (aws.eks.Cluster vpcConfig, which the mocks seed
    # for getResource); test_wiring checks that the nodes carry it
    assert sg["ingress"][0]["securityGroups"] == ["sg-cluster-eks-eks"]
    assert all(not rule.get("cidrBlocks") for rule in sg["ingress"])
    trust = json.loads(
        next(r for r in of_type(plan, "aws:iam/role:Role") if r.name == "identity-pipeline").inputs[
            "assumeRolePolicy"
        ]
    )
    condition = trust["Statement"][0]["Condition"]["StringEquals"]
    assert trust["Statement"][0]["Principal"]["Federated"].startswith("arn:aws:iam::")
    assert "system:serviceaccount:mlops:mlops-pipeline" in condition.values()
    policies = {
        r.name: json.loads(r.inputs["policy"])
        for r in of_type(plan, "aws:iam/rolePolicy:RolePolicy")
    }
    serving = policies["identity-serving"]["Statement"]
    assert any(s["Resource"][0].endswith(f"-curated/v1/inference/{env}/*") for s in serving)
    for document in (d for name, d in policies.items() if name.startswith("identity-")):
        for statement in document["Statement"]:
            assert "*" not in statement["Action"] and statement["Resource"] != ["*"]
    for sa in of_type(plan, "kubernetes:core/v1:ServiceAccount"):
        assert sa.inputs["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].startswith(
            "arn:aws:iam::"
        )


def test_the_same_program_registers_the_same_resources_every_time(plans: StackPlans) -> None:
    """Guards against mock flakiness (pulumi/pulumi#6561): repeated runs, both modes."""
    for preview in MODES:
        first = plans.of("prod", preview).document()
        for _ in range(3):
            again = plan_stack("prod", preview=preview).document()
            assert again == first


@pytest.mark.integration
def test_config_errors_are_one_clear_line(tmp_path: Any) -> None:
    bad = (
        (REPO / "stacks" / "Pulumi.dev.yaml")
        .read_text()
        .replace("multiAz: false", "multiAz: maybe")
    )
    path = tmp_path / "Pulumi.dev.yaml"
    path.write_text(bad)
    with pytest.raises(PipelineError, match=r"database\.multiAz: Input should be a valid boolean"):
        plan_stack("dev", config_file=path)
    done = run_cli(["infra", "plan", "--stack", "dev", "--config-file", str(path)])
    assert (
        done.returncode == 1
        and "database.multiAz" in done.stderr
        and "Traceback" not in done.stderr
    )


@pytest.mark.integration
def test_plan_cli_json_lists_the_platform(tmp_path: Any) -> None:
    done = run_cli(["infra", "plan", "--stack", "prod", "--json"])
    assert done.returncode == 0, done.stderr[-2000:]
    document = json.loads(done.stdout)
    types = {r["type"] for r in document["resources"]}
    assert {
        "aws:ec2/vpc:Vpc",
        "eks:index:Cluster",
        "aws:rds/instance:Instance",
        "aws:s3/bucket:Bucket",
        "aws:ecr/repository:Repository",
        "kubernetes:helm.sh/v4:Chart",
        "kubernetes:apps/v1:Deployment",
        "kubernetes:argoproj.io/v1alpha1:Application",
        "kubernetes:argoproj.io/v1alpha1:CronWorkflow",
    } <= types
    assert document["outputs"]["kubeconfig"] == SECRET


@pytest.mark.parametrize("env", ["dev", "staging", "prod"])
def test_the_plan_lists_the_resolved_versions_and_images(plans: StackPlans, env: str) -> None:
    from importlib.metadata import version

    document = plans.of(env, True).document()
    config = load_stack_config(env)
    assert document["versions"] == {
        "kubernetes": config.cluster.version,
        "postgresql": config.database.engine_version,
        "charts": {
            "argo-cd": config.platform.argocd_chart_version,
            "argo-workflows": config.platform.argo_workflows_chart_version,
            "kube-prometheus-stack": config.platform.kube_prometheus_stack_chart_version,
            "prometheus-pushgateway": config.platform.pushgateway_chart_version,
            "argo-rollouts": config.platform.argo_rollouts_chart_version,
        },
    }
    images = document["images"]
    assert images[config.workflows.image] == [
        "cluster-services-cron-mlops-monitor",
        "cluster-services-cron-mlops-training",
    ]
    (mlflow,) = [i for i in images if "/mlops-" + env + "-mlflow:" in i]
    assert mlflow.endswith(":" + version("mlflow")), "the server runs the client's MLflow"


def test_a_server_image_that_is_not_the_clients_mlflow_is_refused() -> None:
    from stacks.config import PlatformConfig

    base = {"gitopsRepoUrl": "https://git.internal/mlops.git"}
    with pytest.raises(ValueError, match="is not MLflow"):
        PlatformConfig.model_validate({**base, "mlflowImage": "ghcr.io/mlflow/mlflow:v3.7.0"})
    from importlib.metadata import version

    current = version("mlflow")
    with pytest.raises(ValueError, match="neither the PostgreSQL driver nor boto3"):
        PlatformConfig.model_validate({**base, "mlflowImage": f"ghcr.io/mlflow/mlflow:v{current}"})
    with pytest.raises(ValueError, match="is not MLflow"):  # a near miss is another version
        PlatformConfig.model_validate({**base, "mlflowImage": f"r/mlflow:v{current}0-full"})
    full = PlatformConfig.model_validate(
        {**base, "mlflowImage": f"ghcr.io/mlflow/mlflow:v{current}-full"}
    )
    assert full.mlflow_image is not None and full.mlflow_image.endswith("-full")


def test_the_mlflow_schema_is_upgraded_by_the_servers_own_image(plans: StackPlans) -> None:
    resources = plans["dev"].resources
    (job,) = [r for r in resources if r.type == "kubernetes:batch/v1:Job"]
    (server,) = [
        r
        for r in resources
        if r.type == "kubernetes:apps/v1:Deployment" and r.inputs["metadata"]["name"] == "mlflow"
    ]
    (upgrade,) = job.inputs["spec"]["template"]["spec"]["containers"]
    (serve,) = server.inputs["spec"]["template"]["spec"]["containers"]
    assert upgrade["image"] == serve["image"], "the migration is the server version's own"
    assert upgrade["command"] == UPGRADE_COMMAND  # mlflow db upgrade, the URL from the env
    assert upgrade["env"] == serve["env"]  # the same backend store Secret
    assert "name" not in job.inputs["metadata"], "auto-named: a new image replaces the Job"


def test_the_mlflow_server_waits_for_its_schema_upgrade() -> None:
    """The plan drops dependencies: read them from one mocked run."""
    from stacks.config import PROJECT, STACKS_DIR
    from stacks.offline.harness import run_program
    from stacks.offline.plan import load_config_file

    config = load_config_file(STACKS_DIR / "Pulumi.dev.yaml")
    result = run_program(STACKS_DIR, project=PROJECT, stack="dev", config=config, preview=False)
    (job,) = [r for r in result.resources if r.type == "kubernetes:batch/v1:Job"]
    (server,) = [
        r
        for r in result.resources
        if r.type == "kubernetes:apps/v1:Deployment" and r.inputs["metadata"]["name"] == "mlflow"
    ]
    assert job.urn in server.dependencies
