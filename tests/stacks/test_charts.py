"""The argo-cd and argo-workflows charts, rendered offline with the values each stack passes.

The charts are the pinned versions, vendored under tests/schemas/charts/; the renders use the
pinned helm (tests/support/charts.py). Each check has a planted instance that it catches.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from pipelines.errors import PipelineError
from stacks.components.cluster_services import argo_workflows_values
from stacks.components.identity import ServiceAccount
from stacks.config import PROJECT, STACKS_DIR, load_stack_config, parse_stack_config
from stacks.offline.harness import run_program
from stacks.offline.plan import Plan, load_config_file
from tests.conftest import REPO, StackPlans
from tests.support.charts import (
    PlannedChart,
    RenderError,
    concrete,
    describe,
    hook_resources,
    planned_charts,
    render_planned,
    unknown_value_keys,
)
from tests.support.crd import validate_custom_resource
from tests.support.pss import object_violations

ENVS = ("dev", "staging", "prod")
FREE_FORM = {
    # argo-cd copies every key of configs.params into argocd-cmd-params-cm
    # (templates/_helpers.tpl "argo-cd.config.params"); its defaults are create/annotations only
    "argo-cd": {"configs.params"},
    "argo-workflows": set(),
    # the Alertmanager configuration is the chart's free-form `alertmanager.config`
    "kube-prometheus-stack": {"alertmanager.config"},
    # copied whole into the pod's securityContext (templates/_helpers.tpl)
    "prometheus-pushgateway": {"securityContext"},
    "argo-rollouts": set(),
}
RENDERED = ("argo-cd", "argo-workflows", "argo-rollouts")
"""The charts vendored whole (rendered offline); of the monitoring charts only values.yaml is
vendored (their subcharts live in other repositories): their keys are checked, not rendered."""
CRON = "kubernetes:argoproj.io/v1alpha1:CronWorkflow"
APPLICATION = "kubernetes:argoproj.io/v1alpha1:Application"
SECRET = "kubernetes:core/v1:Secret"
Objects = list[dict[str, Any]]
OPERATOR_GROUP = "monitoring.coreos.com/"
"""The Prometheus operator's kinds (argo-rollouts renders its ServiceMonitor unconditionally):
no built-in schema, and their CRDs are not vendored here, so strict validation skips them."""


def body(resource: Any) -> dict[str, Any]:
    """A planned Kubernetes resource as the manifest it becomes."""
    return dict(concrete(resource.inputs))


def of_type(plan: Plan, token: str) -> list[dict[str, Any]]:
    return [body(r) for r in plan.resources if r.type == token]


@pytest.fixture(scope="module")
def rendered(plans: StackPlans) -> Callable[[str, str], Objects]:
    """``rendered(env, chart)``: the chart rendered with the env's values (each once)."""
    cache: dict[tuple[str, str], Objects] = {}

    def get(env: str, chart: str) -> Objects:
        if (env, chart) not in cache:
            cache[env, chart] = render_planned(planned_charts(plans[env])[chart])
        return copy.deepcopy(cache[env, chart])

    return get


# -- (a) every value key exists in the pinned chart -------------------------------------------


@pytest.mark.parametrize("env", ENVS)
def test_every_value_key_the_stack_sets_exists_in_the_pinned_chart(
    plans: StackPlans, env: str
) -> None:
    charts = planned_charts(plans[env])
    config = load_stack_config(env).platform
    assert {c.chart: c.version for c in charts.values()} == {
        "argo-cd": config.argocd_chart_version,
        "argo-workflows": config.argo_workflows_chart_version,
        "kube-prometheus-stack": config.kube_prometheus_stack_chart_version,
        "prometheus-pushgateway": config.pushgateway_chart_version,
        "argo-rollouts": config.argo_rollouts_chart_version,
    }
    for chart in charts.values():
        assert chart.directory.is_dir(), f"{chart.chart} {chart.version} is not vendored"
        defaults = chart.directory / "values.yaml"
        assert unknown_value_keys(chart.values, defaults, FREE_FORM[chart.chart]) == []


def test_an_unknown_value_key_is_reported(plans: StackPlans) -> None:
    chart = planned_charts(plans["dev"])["argo-workflows"]
    defaults = chart.directory / "values.yaml"
    planted = copy.deepcopy(chart.values)
    planted["useDefaultArtifactRepo"] = True  # dropped by the chart in 0.26.0
    planted["server"]["authMode"] = "client"  # exists (deprecated): not reported
    planted["server"]["authModez"] = ["client"]
    planted["workflow"]["serviceAccount"]["nam"] = "x"
    planted["artifactRepository"]["s3"]["anything"] = "x"  # s3: {} is free-form
    assert unknown_value_keys(planted, defaults) == [
        "server.authModez",
        "useDefaultArtifactRepo",
        "workflow.serviceAccount.nam",
    ]
    argocd = planned_charts(plans["dev"])["argo-cd"]
    params = {"configs": {"params": {"server.insecure": False}}}
    assert unknown_value_keys(params, argocd.directory / "values.yaml") == [
        "configs.params.server.insecure"
    ]
    assert unknown_value_keys(params, argocd.directory / "values.yaml", {"configs.params"}) == []


# -- (b) both charts render, and nothing they render is a hook helm.v4.Chart would drop --------


@pytest.mark.integration
@pytest.mark.parametrize("env", ENVS)
def test_both_charts_render_with_the_stack_values_and_no_hooks(
    rendered: Callable[[str, str], Objects], env: str
) -> None:
    for chart in ("argo-cd", "argo-workflows"):
        objects = rendered(env, chart)
        assert hook_resources(objects) == [], chart
    crds = {o["metadata"]["name"] for o in rendered(env, "argo-workflows") if is_crd(o)}
    assert "cronworkflows.argoproj.io" in crds and len(crds) == 8  # the minimal CRDs
    apps = {o["metadata"]["name"] for o in rendered(env, "argo-cd") if is_crd(o)}
    assert "applications.argoproj.io" in apps


@pytest.mark.integration
def test_hooks_are_reported(plans: StackPlans) -> None:
    charts = planned_charts(plans["dev"])
    workflows = copy.deepcopy(charts["argo-workflows"].values)
    workflows["crds"] = {"install": True}  # the default full: true installs CRDs from a hook Job
    objects = render_planned(charts["argo-workflows"], values=workflows)
    assert any(h.startswith("Job argo/") for h in hook_resources(objects))
    assert not any(is_crd(o) for o in objects if not hook_resources([o]))  # no CRD deployed
    argocd = copy.deepcopy(charts["argo-cd"].values)
    del argocd["redisSecretInit"]  # default: a hook Job makes Secret argocd-redis
    hooks = hook_resources(render_planned(charts["argo-cd"], values=argocd))
    assert any(h.startswith("Job argocd/") for h in hooks), hooks


def is_crd(obj: Mapping[str, Any]) -> bool:
    return obj.get("kind") == "CustomResourceDefinition"


# -- (c) rendered objects of built-in kinds validate strictly ---------------------------------


def strict_errors(objects: Iterable[Mapping[str, Any]], version: str) -> list[str]:
    """kubernetes-validate (strict) errors of every object but CRDs (a missing schema counts),
    with the schemas of Kubernetes `version`."""
    errors = []
    for obj in objects:
        if is_crd(obj) or str(obj.get("apiVersion", "")).startswith(OPERATOR_GROUP):
            continue
        try:
            kubernetes_validate.validate(dict(obj), version, strict=True)
        except (kubernetes_validate.ValidationError, kubernetes_validate.SchemaNotFoundError) as e:
            errors.append(f"{describe(obj)}: {getattr(e, 'message', e)}")
    return errors


@pytest.mark.integration
@pytest.mark.parametrize("env", ENVS)
def test_rendered_built_in_kinds_validate_strictly(
    plans: StackPlans, rendered: Callable[[str, str], Objects], env: str
) -> None:
    for chart in planned_charts(plans[env]).values():
        if chart.chart not in RENDERED:
            continue
        assert strict_errors(rendered(env, chart.chart), chart.kube_version) == [], chart.chart


@pytest.mark.integration
def test_strict_validation_catches_a_typo_under_a_free_form_value(plans: StackPlans) -> None:
    chart = planned_charts(plans["dev"])["argo-workflows"]
    values = copy.deepcopy(chart.values)
    values["controller"]["podSecurityContext"]["runAsNonRot"] = True  # {} default: (a) can't see
    assert unknown_value_keys(values, chart.directory / "values.yaml") == []
    errors = strict_errors(render_planned(chart, values=values), chart.kube_version)
    assert any("workflow-controller" in e and "runAsNonRot" in e for e in errors), errors


# -- (d) wiring -------------------------------------------------------------------------------


def cron_accounts(plan: Plan) -> set[tuple[str, str]]:
    """(namespace, serviceAccountName) the CronWorkflows run as."""
    return {
        (c["metadata"]["namespace"], c["spec"]["workflowSpec"]["serviceAccountName"])
        for c in of_type(plan, CRON)
    }


def rbac_problems(objects: Objects, accounts: Iterable[tuple[str, str]]) -> list[str]:
    """Each account needs a Role (same namespace) granting workflowtaskresults create+patch,
    bound to it by a RoleBinding: what the executor's wait container writes its results with."""
    problems = []
    for namespace, account in sorted(accounts):
        roles = {
            o["metadata"]["name"]
            for o in objects
            if o["kind"] == "Role"
            and o["metadata"]["namespace"] == namespace
            and any(
                "argoproj.io" in r.get("apiGroups", [])
                and "workflowtaskresults" in r.get("resources", [])
                and {"create", "patch"} <= set(r.get("verbs", []))
                for r in o.get("rules") or []
            )
        }
        subject = {"kind": "ServiceAccount", "name": account, "namespace": namespace}
        bound = [
            o
            for o in objects
            if o["kind"] == "RoleBinding"
            and o["metadata"]["namespace"] == namespace
            and o["roleRef"]["kind"] == "Role"
            and o["roleRef"]["name"] in roles
            and subject in (o.get("subjects") or [])
        ]
        if not bound:
            problems.append(f"{namespace}/{account}: no Role with workflowtaskresults create/patch")
    return problems


def controller_config(objects: Objects) -> dict[str, Any]:
    (configmap,) = [o for o in objects if o["kind"] == "ConfigMap" and "config" in o["data"]]
    config: dict[str, Any] = yaml.safe_load(configmap["data"]["config"]) or {}
    return config


def artifact_problems(objects: Objects) -> list[str]:
    """IRSA only: no static S3 keys, the SDK's credentials (the pod's web identity); and an
    executor that can start under runAsNonRoot (the argoexec image has no USER)."""
    config = controller_config(objects)
    s3 = (config.get("artifactRepository") or {}).get("s3") or {}
    problems = [
        f"artifactRepository.s3.{key} is set (static keys)"
        for key in ("accessKeySecret", "secretKeySecret")
        if key in s3
    ]
    if s3.get("useSDKCreds") is not True:
        problems.append("artifactRepository.s3.useSDKCreds is not true")
    security = (config.get("executor") or {}).get("securityContext") or {}
    if security.get("runAsNonRoot") and not security.get("runAsUser"):
        problems.append("executor.securityContext: runAsNonRoot without runAsUser")
    return problems


def argo_server(objects: Objects) -> dict[str, Any]:
    (server,) = [
        o
        for o in objects
        if o["kind"] == "Deployment"
        and any(c.get("args", [None])[0] == "server" for c in pod_spec(o)["containers"])
    ]
    return server


def pod_spec(obj: Mapping[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = ((obj.get("spec") or {}).get("template") or {}).get("spec") or {}
    return spec


def auth_mode_problems(objects: Objects) -> list[str]:
    """argo-server exits at start with --auth-mode=sso and no ``sso`` block in its ConfigMap."""
    server = argo_server(objects)
    args = [a for c in pod_spec(server)["containers"] for a in c.get("args", [])]
    if "--auth-mode=sso" in args and "sso" not in controller_config(objects):
        return [f"{describe(server)}: --auth-mode=sso without SSO settings (server.sso.*)"]
    return []


def secret_ref_problems(objects: Objects, provided: set[tuple[str, str]]) -> list[str]:
    """Every Secret a pod needs (env secretKeyRef, envFrom, volume; not optional) exists:
    rendered by the chart (not as a hook, which helm.v4.Chart drops) or `provided`."""
    have = provided | {
        (o["metadata"]["namespace"], o["metadata"]["name"])
        for o in objects
        if o["kind"] == "Secret" and not hook_resources([o])
    }
    problems = []
    for obj in objects:
        spec = pod_spec(obj)
        if not spec or hook_resources([obj]):
            continue
        containers = [*spec.get("initContainers", []), *spec.get("containers", [])]
        needed = {
            ref["name"]
            for c in containers
            for env in c.get("env") or []
            if (ref := (env.get("valueFrom") or {}).get("secretKeyRef")) and not ref.get("optional")
        }
        needed |= {
            e["secretRef"]["name"]
            for c in containers
            for e in c.get("envFrom") or []
            if "secretRef" in e and not e["secretRef"].get("optional")
        }
        needed |= {
            v["secret"]["secretName"]
            for v in spec.get("volumes") or []
            if "secret" in v and not v["secret"].get("optional")
        }
        namespace = obj["metadata"]["namespace"]
        problems += [
            f"{describe(obj)} needs Secret {namespace}/{name}"
            for name in sorted(needed)
            if (namespace, name) not in have
        ]
    return problems


def service_problems(objects: Objects, url: str) -> list[str]:
    """The stack's in-cluster URL (``https://<service>.<namespace>.svc...``) names a Service."""
    service, namespace = url.split("://")[1].split(".")[:2]
    services = {
        (o["metadata"]["namespace"], o["metadata"]["name"])
        for o in objects
        if o["kind"] == "Service"
    }
    return [] if (namespace, service) in services else [f"no Service {namespace}/{service}"]


def plan_secrets(plan: Plan) -> set[tuple[str, str]]:
    return {(s["metadata"]["namespace"], s["metadata"]["name"]) for s in of_type(plan, SECRET)}


@pytest.mark.integration
@pytest.mark.parametrize("env", ENVS)
def test_the_charts_are_wired_to_the_stack(
    plans: StackPlans, rendered: Callable[[str, str], Objects], env: str
) -> None:
    plan = plans[env]
    workflows, argocd = rendered(env, "argo-workflows"), rendered(env, "argo-cd")
    accounts = cron_accounts(plan)
    assert accounts == {("mlops", "mlops-pipeline")}
    assert rbac_problems(workflows, accounts) == []
    assert artifact_problems(workflows) == []
    assert auth_mode_problems(workflows) == []
    assert service_problems(argocd, plan.outputs["argocd_server"]) == []
    assert secret_ref_problems(argocd, plan_secrets(plan)) == []
    assert secret_ref_problems(workflows, plan_secrets(plan)) == []


@pytest.mark.integration
def test_the_wiring_checks_catch_planted_mistakes(
    plans: StackPlans, rendered: Callable[[str, str], Objects]
) -> None:
    plan = plans["dev"]
    charts = planned_charts(plan)
    workflows = charts["argo-workflows"]

    def with_values(change: Callable[[dict[str, Any]], Any]) -> Objects:
        values = copy.deepcopy(workflows.values)
        change(values)
        return render_planned(workflows, values=values)

    # the chart's default workflow service account (argo-workflow) instead of the pipeline's
    default_account = with_values(lambda v: v["workflow"]["serviceAccount"].pop("name"))
    assert rbac_problems(default_account, cron_accounts(plan)) == [
        "mlops/mlops-pipeline: no Role with workflowtaskresults create/patch"
    ]

    # static credentials (useStaticCredentials defaults to true) and no useSDKCreds: the chart
    # fails on the missing accessKeySecret; given keys, it renders them and the check sees them
    def static_keys(values: dict[str, Any]) -> None:
        del values["useStaticCredentials"]
        del values["artifactRepository"]["s3"]["useSDKCreds"]

    with pytest.raises(RenderError, match=r"accessKeySecret\.key"):
        with_values(static_keys)

    def given_keys(values: dict[str, Any]) -> None:
        static_keys(values)
        values["artifactRepository"]["s3"].update(
            accessKeySecret={"name": "s3", "key": "id"},
            secretKeySecret={"name": "s3", "key": "secret"},
        )

    assert artifact_problems(with_values(given_keys)) == [
        "artifactRepository.s3.accessKeySecret is set (static keys)",
        "artifactRepository.s3.secretKeySecret is set (static keys)",
        "artifactRepository.s3.useSDKCreds is not true",
    ]
    # the executor without runAsUser
    no_user = with_values(lambda v: v["executor"]["securityContext"].pop("runAsUser"))
    assert artifact_problems(no_user) == [
        "executor.securityContext: runAsNonRoot without runAsUser"
    ]
    # the old authModes: [sso, client] with no SSO settings
    sso = with_values(lambda v: v["server"].update(authModes=["sso", "client"]))
    assert len(auth_mode_problems(sso)) == 1
    # helm.v4.Chart's default release name (the Pulumi name) renames argocd-server
    argocd = charts["argo-cd"]
    renamed = render_planned(argocd, release=argocd.resource)
    assert service_problems(renamed, plan.outputs["argocd_server"]) == [
        "no Service argocd/argocd-server"
    ]
    # without the stack's Secret argocd-redis, redis cannot start
    missing = secret_ref_problems(
        rendered("dev", "argo-cd"), plan_secrets(plan) - {("argocd", "argocd-redis")}
    )
    assert any(
        "Deployment argocd/argocd-redis needs Secret argocd/argocd-redis" in p for p in missing
    )


def test_argocd_redis_secret_is_made_before_the_chart_with_key_auth() -> None:
    """The plan masks Secret data and drops dependencies: read them from one mocked run."""
    config = load_config_file(STACKS_DIR / "Pulumi.dev.yaml")
    result = run_program(STACKS_DIR, project=PROJECT, stack="dev", config=config, preview=False)
    (secret,) = [
        r
        for r in result.resources
        if r.type == SECRET and r.inputs["metadata"]["name"] == "argocd-redis"
    ]
    assert secret.inputs["metadata"]["namespace"] == "argocd"
    assert list(secret.inputs["stringData"]) == ["auth"] and "stringData" in secret.secret_inputs
    (password,) = [
        r
        for r in result.resources
        if r.type == "random:index/randomPassword:RandomPassword" and r.name == secret.name
    ]
    assert password.inputs["length"] >= 32 and "result" in password.state
    (chart,) = [
        r
        for r in result.resources
        if r.type == "kubernetes:helm.sh/v4:Chart" and r.inputs["chart"] == "argo-cd"
    ]
    assert secret.urn in chart.dependencies


# -- (e) the root Application against the pinned chart's CRD and its path ----------------------


def source_type_problems(application: Mapping[str, Any], repo: Path) -> list[str]:
    """ArgoCD detects a source's tool from its path unless the source names one; the named one
    must be the one the path holds (``directory`` on a kustomize overlay applies raw files)."""
    source = application["spec"]["source"]
    path = repo / source["path"]
    if not path.is_dir():
        return [f"source.path {source['path']} does not exist"]
    kustomize = any(
        (path / n).is_file() for n in ("kustomization.yaml", "kustomization.yml", "Kustomization")
    )
    detected = (
        "kustomize" if kustomize else "helm" if (path / "Chart.yaml").is_file() else "directory"
    )
    return [
        f"source.{tool} forces {tool} mode, but {source['path']} is a {detected} source"
        for tool in ("directory", "helm", "kustomize", "plugin")
        if tool in source and tool != detected
    ]


def application_crd(objects: Objects, tmp_path: Path) -> str:
    (crd,) = [
        o for o in objects if is_crd(o) and o["metadata"]["name"] == "applications.argoproj.io"
    ]
    path = tmp_path / "application-crd.yaml"
    path.write_text(yaml.safe_dump(crd))
    return str(path)


@pytest.mark.integration
@pytest.mark.parametrize("env", ENVS)
def test_root_application_validates_against_the_pinned_chart_crd(
    plans: StackPlans, rendered: Callable[[str, str], Objects], env: str, tmp_path: Path
) -> None:
    (app,) = of_type(plans[env], APPLICATION)
    crd = application_crd(rendered(env, "argo-cd"), tmp_path)
    assert validate_custom_resource(app, crd) == []
    planted = copy.deepcopy(app)
    planted["spec"]["syncPolicy"]["automated"]["selfheal"] = True
    assert any("selfheal" in e for e in validate_custom_resource(planted, crd))


@pytest.mark.parametrize("env", ENVS)
def test_root_application_source_type_matches_its_path(plans: StackPlans, env: str) -> None:
    (app,) = of_type(plans[env], APPLICATION)
    assert (REPO / app["spec"]["source"]["path"] / "kustomization.yaml").is_file()
    assert source_type_problems(app, REPO) == []
    planted = copy.deepcopy(app)
    planted["spec"]["source"]["directory"] = {"recurse": True}  # what the stack had
    assert source_type_problems(planted, REPO) == [
        f"source.directory forces directory mode, but platform/envs/{env} is a kustomize source"
    ]


# -- (f) Pod Security "restricted" of every rendered pod template -----------------------------


def pss_problems(objects: Objects, crons: Iterable[Mapping[str, Any]]) -> list[str]:
    """Every pod the chart renders, and every CronWorkflow pod with the executor's
    securityContext from the rendered controller ConfigMap (its init and wait containers)."""
    executor = (controller_config(objects).get("executor") or {}).get("securityContext")
    lines = [line for obj in objects for line in object_violations(obj)]
    return lines + [line for cron in crons for line in object_violations(cron, executor)]


@pytest.mark.integration
@pytest.mark.parametrize("env", ENVS)
def test_rendered_pods_meet_pod_security_restricted(
    plans: StackPlans, rendered: Callable[[str, str], Objects], env: str
) -> None:
    crons = of_type(plans[env], CRON)
    assert pss_problems(rendered(env, "argo-workflows"), crons) == []
    assert [line for obj in rendered(env, "argo-cd") for line in object_violations(obj)] == []


@pytest.mark.integration
def test_pod_security_catches_the_chart_defaults(plans: StackPlans) -> None:
    chart = planned_charts(plans["dev"])["argo-workflows"]
    values = copy.deepcopy(chart.values)
    del values["executor"]["securityContext"]
    del values["controller"]["podSecurityContext"]
    problems = pss_problems(render_planned(chart, values=values), of_type(plans["dev"], CRON))
    assert any("workflow-controller" in p and "seccompProfile" in p for p in problems), problems
    # (runAsNonRoot and seccomp come from the CronWorkflow's pod-level securityContext; the rest
    # of restricted only the executor setting can give the injected containers)
    assert any("initContainer init" in p and "capabilities" in p for p in problems), problems
    assert any("container wait" in p and "allowPrivilegeEscalation" in p for p in problems)


# -- the argo-server auth mode comes from the stack config --------------------------------------


def test_sso_auth_mode_needs_sso_settings() -> None:
    document = yaml.safe_load((REPO / "stacks" / "Pulumi.dev.yaml").read_text())
    platform = document["config"][f"{PROJECT}:platform"]
    platform["argoServerAuthModes"] = ["sso", "client"]
    with pytest.raises(
        PipelineError, match=r"platform: .*argoServerAuthModes has sso but no argoSso"
    ):
        parse_stack_config(document, "Pulumi.dev.yaml")
    platform["argoSso"] = {"issuer": "https://idp.example", "redirectUrl": "https://argo/cb"}
    config, _ = parse_stack_config(document, "Pulumi.dev.yaml")
    assert config.platform.argo_sso is not None


@pytest.mark.integration
def test_sso_settings_reach_argo_server() -> None:
    document = yaml.safe_load((REPO / "stacks" / "Pulumi.dev.yaml").read_text())
    document["config"][f"{PROJECT}:platform"].update(
        argoServerAuthModes=["sso", "client"],
        argoSso={"issuer": "https://idp.example", "redirectUrl": "https://argo.example/cb"},
    )
    config, _ = parse_stack_config(document, "Pulumi.dev.yaml")
    pipeline = ServiceAccount(config.workflows.namespace, config.workflows.service_account, ())
    values = argo_workflows_values(config.platform, pipeline, "bucket", "eu-west-1")
    version = config.platform.argo_workflows_chart_version
    chart = PlannedChart("x", "argo-workflows", version, "argo-workflows", "argo", values)
    objects = render_planned(chart)
    assert auth_mode_problems(objects) == []
    sso = controller_config(objects)["sso"]
    assert sso["issuer"] == "https://idp.example" and sso["clientSecret"]["key"] == "client-secret"
    args = [a for c in pod_spec(argo_server(objects))["containers"] for a in c["args"]]
    assert "--auth-mode=sso" in args and "--auth-mode=client" in args
