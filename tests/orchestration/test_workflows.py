"""Argo rendering: valid against the upstream CRD (with its CEL rules), golden, and in parity
with the local runner's plan."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipelines import metrics
from pipelines.orchestration.argo import argo_params, render, render_yaml
from pipelines.orchestration.dag import PIPELINES, get_pipeline, plan
from stacks.config import load_stack_config
from tests.conftest import REPO, run_cli
from tests.support.crd import validate_custom_resource

SCHEMAS = REPO / "tests" / "schemas"
CRD = str(SCHEMAS / "argo-workflows-cronworkflow-crd-v4.1.2.yaml")
GOLDEN = REPO / "tests" / "golden" / "workflows"
ENVS = ("dev", "staging", "prod")
CASES = [(env, name) for env in ENVS for name in PIPELINES]


def rendered(env: str, name: str) -> dict[str, Any]:
    return render(get_pipeline(name), load_stack_config(env).workflows)


@pytest.mark.parametrize(("env", "name"), CASES)
def test_rendered_cronworkflows_are_valid_against_the_upstream_crd(env: str, name: str) -> None:
    assert validate_custom_resource(rendered(env, name), CRD) == []


def test_the_crd_validator_catches_planted_errors() -> None:
    good = rendered("dev", "training")
    bad_policy = copy.deepcopy(good)
    bad_policy["spec"]["concurrencyPolicy"] = "Sometimes"
    unknown = copy.deepcopy(good)
    unknown["spec"]["workflowSpec"]["templates"][1]["container"]["securityContext"][
        "runAsNonroot"
    ] = True
    cel = copy.deepcopy(good)
    cel["spec"]["workflowSpec"]["templates"][0]["activeDeadlineSeconds"] = 60  # on the DAG template
    no_schedule = copy.deepcopy(good)
    no_schedule["spec"]["schedules"] = []
    assert any("'Sometimes' is not one of" in e for e in validate_custom_resource(bad_policy, CRD))
    assert any("'runAsNonroot' was unexpected" in e for e in validate_custom_resource(unknown, CRD))
    assert any("only valid for leaf templates" in e for e in validate_custom_resource(cel, CRD))
    assert any("schedules" in e for e in validate_custom_resource(no_schedule, CRD))


@pytest.mark.parametrize(("env", "name"), CASES)
def test_golden_files_are_current(env: str, name: str) -> None:
    golden = GOLDEN / env / f"{name}.yaml"
    fresh = render_yaml(get_pipeline(name), load_stack_config(env).workflows)
    assert golden.read_text() == fresh, (
        f"{golden} is stale: regenerate with `uv run mlops workflows render --stack {env} "
        f"--out tests/golden/workflows/{env}` and review the diff"
    )


@pytest.mark.parametrize("name", list(PIPELINES))
def test_local_plan_and_argo_workflow_run_the_same_steps_and_commands(name: str) -> None:
    pipeline = get_pipeline(name)
    spec = rendered("dev", name)["spec"]["workflowSpec"]
    templates = {t["name"]: t for t in spec["templates"]}
    tasks = templates[spec["entrypoint"]]["dag"]["tasks"]
    # the Argo commands, with Argo's placeholders replaced by one run's values …
    values = {
        "source": "file:///m",
        "symbols": "BTCUSDT",
        "interval": "1h",
        "start": "2024-01-01",
        "end": "2024-01-31",
    }
    substitutions = {
        "{{workflow.name}}": "run-x",
        **{argo_params()[k]: v for k, v in values.items()},
    }

    substitutions["{{inputs.parameters.shard}}"] = "SHARD"

    def argo_command(task: dict[str, Any]) -> list[str]:
        template = templates[task["template"]]
        argv = [substitutions.get(a, a) for a in template["container"]["command"]]
        argv += [substitutions.get(a, a) for a in template["container"]["args"]]
        for output in template.get("outputs", {}).get("parameters", []):
            # the output parameter is written where Argo's executor reads it, and only there
            assert argv[-2:] == ["--output-file", output["valueFrom"]["path"]]
            argv = argv[:-2]
        return argv

    argo = {t["name"]: (sorted(t.get("dependencies", [])), argo_command(t)) for t in tasks}
    # … equal what `mlops run --plan` would run locally, step for step.
    steps = plan(pipeline, "run-x", values)["steps"]
    local = {s["name"]: (sorted(s["needs"]), s["command"]) for s in steps}
    assert argo == local
    assert list(argo) == [s.name for s in pipeline.steps]
    # the steps the local runner fans out are the ones Argo expands over the shards step's list
    fanned = {t["name"] for t in tasks if "withParam" in t}
    assert fanned == {s["name"] for s in steps if s["fan_out"]} == {"fetch", "validate"}
    for task in tasks:
        if task["name"] in fanned:
            assert task["withParam"] == "{{tasks.shards.outputs.parameters.shards}}"
            assert task["arguments"]["parameters"] == [{"name": "shard", "value": "{{item}}"}]
            declared = templates[task["template"]]["inputs"]["parameters"]
            assert [p["name"] for p in declared] == ["shard"]


@pytest.mark.integration
def test_plan_from_the_cli_matches_the_dag(tmp_path: Path) -> None:
    done = run_cli(
        [
            "run",
            "--plan",
            "--json",
            "--source",
            "file:///m",
            "--start",
            "2024-01-01",
            "--end",
            "2024-01-02",
        ],
        {"MLOPS_HOME": str(tmp_path)},
    )
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert [s["name"] for s in document["steps"]] == [
        s.name for s in get_pipeline("training").steps
    ]
    assert document["steps"][2]["command"][:6] == [
        "mlops",
        "step",
        "validate",
        "--pipeline",
        "training",
        "--run-id",
    ]
    assert not (tmp_path / "data").exists(), "--plan runs nothing"


@pytest.mark.parametrize(("env", "name"), CASES)
def test_every_template_is_hardened_retried_bounded_and_measured(env: str, name: str) -> None:
    manifest = rendered(env, name)
    spec = manifest["spec"]
    config = load_stack_config(env).workflows
    assert spec["concurrencyPolicy"] == "Forbid" and spec["timezone"] == "UTC"
    assert spec["schedules"] == config.schedules[name] and spec["startingDeadlineSeconds"] > 0
    workflow = spec["workflowSpec"]
    assert workflow["serviceAccountName"] == config.service_account
    assert (
        workflow["activeDeadlineSeconds"] > 0 and workflow["podGC"]["strategy"] == "OnPodCompletion"
    )
    assert (
        workflow["ttlStrategy"]["secondsAfterSuccess"] > 0 and workflow["onExit"] == "record-exit"
    )
    assert {m["name"] for m in workflow["metrics"]["prometheus"]} == {
        "mlops_workflow_duration_seconds",
        "mlops_workflow_result_total",
    }
    leaves = [t for t in workflow["templates"] if "container" in t]
    assert len(leaves) == len(get_pipeline(name).steps) + 1  # + the exit handler
    for template in leaves:
        container = template["container"]
        assert container["image"] == config.image and not container["image"].endswith(":latest")
        assert (
            set(container["resources"]["requests"])
            == set(container["resources"]["limits"])
            == {"cpu", "memory"}
        )
        security = container["securityContext"]
        assert security["runAsNonRoot"] and security["readOnlyRootFilesystem"]
        assert (
            security["capabilities"]["drop"] == ["ALL"]
            and security["seccompProfile"]["type"] == "RuntimeDefault"
        )
        assert container["volumeMounts"][0] == {"mountPath": "/tmp", "name": "scratch"}
        assert {m["name"] for m in container["volumeMounts"][1:]} <= {"gitops-credentials"}
        assert all(m.get("readOnly") for m in container["volumeMounts"][1:])
        assert template["volumes"][0]["emptyDir"]["sizeLimit"]
        env_vars = {e["name"]: e["value"] for e in container["env"]}
        assert env_vars["MLOPS_STORAGE_URL"] == config.storage_url and env_vars[
            "MLOPS_HOME"
        ].startswith("/tmp/")
        strategy = template["retryStrategy"]
        assert strategy["backoff"]["factor"] == 2 and strategy["backoff"]["maxDuration"]
        assert template["activeDeadlineSeconds"] > 0
        measured = {m["name"]: m for m in template["metrics"]["prometheus"]}
        assert set(measured) == {
            metrics.STEP_DURATION.name,
            metrics.STEP_RESULT.name,
            metrics.STEP_RETRIES.name,
        }
        for metric in measured.values():  # the catalogue's labels, the same locally
            catalogued = metrics.by_name(metric["name"])
            assert metric["help"] == catalogued.help
            assert [label["key"] for label in metric["labels"]] == list(catalogued.labels)


@pytest.mark.integration
def test_render_cli_writes_both_pipelines(tmp_path: Path) -> None:
    done = run_cli(["workflows", "render", "--stack", "dev", "--out", str(tmp_path)])
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["monitor.yaml", "training.yaml"]
    assert yaml.safe_load((tmp_path / "training.yaml").read_text())["kind"] == "CronWorkflow"
    unknown = run_cli(["workflows", "render", "--stack", "qa"])
    assert (
        unknown.returncode == 1
        and "no stack 'qa'" in unknown.stderr
        and "dev, prod, staging" in unknown.stderr
    )


PUSHERS = {"training": {"gate"}, "monitor": {"monitor"}}
"""The steps that commit to the GitOps repository (promotion; rollback)."""


def credential_templates(document: dict[str, Any]) -> dict[str, tuple[dict[str, Any], str]]:
    """Template name -> (its gitops Secret volume, the credential env value) where mounted."""
    found = {}
    for template in document["spec"]["workflowSpec"]["templates"]:
        volumes = {v["name"]: v for v in template.get("volumes", [])}
        if "gitops-credentials" in volumes:
            env = {e["name"]: e["value"] for e in template["container"]["env"]}
            value = env.get("MLOPS_GITOPS_TOKEN_FILE") or env.get("MLOPS_GITOPS_SSH_KEY_FILE")
            found[template["name"]] = (volumes["gitops-credentials"], str(value))
    return found


@pytest.mark.parametrize("env", ["dev", "staging", "prod"])
@pytest.mark.parametrize("credential", ["token", "ssh-key"])
def test_only_the_steps_that_push_get_the_gitops_credential(env: str, credential: str) -> None:
    from pipelines.orchestration.argo import GITOPS_SECRET_DIR

    config = load_stack_config(env).workflows.model_copy(update={"gitops_credential": credential})
    for name, pushers in PUSHERS.items():
        document = render(get_pipeline(name), config)
        spec = document["spec"]["workflowSpec"]
        assert spec["securityContext"]["fsGroup"] == 10001  # the image's user reads the Secret
        mounted = credential_templates(document)
        assert set(mounted) == pushers
        for volume, value in mounted.values():
            secret = volume["secret"]
            assert secret["secretName"] == config.gitops_secret and secret["defaultMode"] == 0o440
            assert [(i["key"], i["path"]) for i in secret["items"]] == [(credential, credential)]
            assert value == f"{GITOPS_SECRET_DIR}/{credential}"
        variable = {"token": "MLOPS_GITOPS_TOKEN_FILE", "ssh-key": "MLOPS_GITOPS_SSH_KEY_FILE"}
        for template in spec["templates"]:
            names = {e["name"] for e in template.get("container", {}).get("env", [])}
            assert (variable[credential] in names) is (template["name"] in pushers)
    # without a Secret, no step mounts one (a public or in-cluster remote)
    bare = config.model_copy(update={"gitops_secret": None})
    assert credential_templates(render(get_pipeline("training"), bare)) == {}


@pytest.mark.parametrize("env", ["dev", "staging", "prod"])
def test_every_decision_of_an_env_holds_one_mutex_across_workflows(env: str) -> None:
    """The gate (training workflow) and the monitor (monitor workflow) run in different pods of
    different workflows: Argo's mutex, named per env, lets one at a time move aliases and pins
    (the local runner uses a file lock); the other steps hold none."""
    from pipelines.orchestration.argo import decisions_mutex

    held: dict[str, Any] = {}
    for name in ("training", "monitor"):
        for template in rendered(env, name)["spec"]["workflowSpec"]["templates"]:
            if "container" in template:
                held[template["name"]] = (template.get("synchronization") or {}).get("mutexes")
    mutex = [{"name": decisions_mutex(env)}]
    assert {step for step, mutexes in held.items() if mutexes} == {"gate", "monitor"}
    assert held["gate"] == held["monitor"] == mutex
    assert decisions_mutex(env) != decisions_mutex("other")  # envs do not wait on each other
