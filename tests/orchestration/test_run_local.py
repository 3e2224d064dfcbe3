"""`mlops workflows run-local`: the rendered CronWorkflow run as Argo would — parsing, template
tags, fan-out, retries, deadlines, isolation and the exit handler, on tiny pods; the whole
training and monitor pipelines against the local services are in test_run_local_services.py."""

from __future__ import annotations

import json
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipelines.errors import PipelineError
from pipelines.orchestration.argo_local import IMAGE_ENV, MAX_ITEMS, Pods, expand
from pipelines.orchestration.argo_spec import Task, go_duration, parse_workflow, substitute
from tests.conftest import REPO, run_cli

GOLDEN = REPO / "tests" / "golden" / "workflows" / "dev"


def golden(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((GOLDEN / f"{name}.yaml").read_text())
    return loaded


def test_the_rendered_training_workflow_parses_into_its_dag_retries_and_deadlines() -> None:
    spec = parse_workflow(golden("training"))
    assert [t.name for t in spec.tasks][:3] == ["shards", "fetch", "validate"]
    fanned = {t.name: t.with_param for t in spec.tasks if t.with_param}
    assert fanned == dict.fromkeys(
        ("fetch", "validate"), "{{tasks.shards.outputs.parameters.shards}}"
    )
    fetch = spec.templates["fetch"]
    assert fetch.inputs == ("shard",) and fetch.retry.limit == 2 and fetch.deadline == 1800
    # backoff 30s doubling up to 10m, as the stack's retry settings render it
    assert [fetch.retry.delay(n) for n in (1, 2, 6)] == [30.0, 60.0, 600.0]
    assert spec.templates["shards"].outputs == {"shards": "/tmp/outputs/shards.json"}
    assert spec.on_exit == "record-exit" and spec.parallelism == 8
    assert set(spec.parameters) == {"source", "symbols", "interval", "start", "end"}


def test_durations_and_tags_are_read_strictly() -> None:
    assert [go_duration(d) for d in ("30s", "10m", "1h30m", "2h")] == [30, 600, 5400, 7200]
    for bad in ("", "10", "5ms", "1d"):
        with pytest.raises(PipelineError, match="is not a duration"):
            go_duration(bad)
    assert substitute("--run-id {{workflow.name}}", {"workflow.name": "w-1"}) == "--run-id w-1"
    with pytest.raises(PipelineError, match=r"\{\{workflow.uid\}\} has no value"):
        substitute("{{workflow.uid}}", {"workflow.name": "w"})


def test_with_param_expands_into_one_pod_per_item_named_like_argo() -> None:
    task = Task(
        "fetch", "fetch", ("shards",), {"shard": "{{item}}"}, "{{tasks.s.outputs.parameters.x}}"
    )
    pods = expand(task, {"tasks.s.outputs.parameters.x": json.dumps(["A:1", {"k": 1}])})
    assert pods == [
        ("fetch(0:A:1)", {"inputs.parameters.shard": "A:1"}),
        ('fetch(1:{"k": 1})', {"inputs.parameters.shard": '{"k": 1}'}),
    ]
    for bad in ("not json", json.dumps({"a": 1}), json.dumps(list(range(MAX_ITEMS + 1)))):
        with pytest.raises(PipelineError, match="withParam is not a JSON list"):
            expand(task, {"tasks.s.outputs.parameters.x": bad})


def test_the_image_env_run_local_adds_is_the_pipeline_images_own() -> None:
    text = (REPO / "Dockerfile").read_text().replace("\\\n", " ")
    final = [line for line in text.splitlines() if line.startswith("ENV ")][-1]
    declared = dict(re.findall(r"(\w+)=(\S+)", final))
    for mapped in ("PATH", "HOME", "MLOPS_HOME", "MLOPS_GIT_COMMIT"):  # sandbox / per build
        declared.pop(mapped)
    assert declared == IMAGE_ENV


def test_a_pod_sees_only_its_env_with_cluster_endpoints_replaced(tmp_path: Path) -> None:
    spec = parse_workflow(golden("monitor"))
    monitor = spec.templates["monitor"]
    shell = {
        "MLOPS_STORAGE_URL": "s3://curated/v1",
        "MLOPS_RAW_STORAGE_URL": "s3://raw/v1",
        "MLFLOW_TRACKING_URI": "http://127.0.0.1:1",
        "MLOPS_GITOPS_REMOTE": "file:///srv/gitops.git",
        "AWS_ACCESS_KEY_ID": "local-key",
        "UNRELATED_SECRET": "must-not-leak",
    }
    pods = Pods(tmp_path, Path(sys.executable), shell, lambda n, e: None)
    mapping = pods.sandbox(monitor, "monitor", 1)
    env = pods.environment(monitor, {"workflow.name": "w"}, mapping)
    assert env["MLOPS_STORAGE_URL"] == "s3://curated/v1"
    assert env["MLOPS_GITOPS_REMOTE"] == "file:///srv/gitops.git"
    assert env["AWS_ACCESS_KEY_ID"] == "local-key" and "UNRELATED_SECRET" not in env
    assert "MLOPS_METRICS_PUSHGATEWAY" in monitor.env, "the cluster's Pushgateway is declared"
    assert "MLOPS_METRICS_PUSHGATEWAY" not in env, "and dropped when this shell names none"
    assert "MLOPS_SERVING_REPOSITORY" in monitor.env, "the env's ECR serving repository too"
    assert "MLOPS_SERVING_REPOSITORY" not in env, "dropped: the stand-in registry serves instead"
    pushgateway = {**shell, "MLOPS_METRICS_PUSHGATEWAY": "http://127.0.0.1:9091"}
    replaced = Pods(tmp_path, Path(sys.executable), pushgateway, lambda n, e: None).environment(
        monitor, {"workflow.name": "w"}, mapping
    )
    assert replaced["MLOPS_METRICS_PUSHGATEWAY"] == "http://127.0.0.1:9091"
    assert env["HOME"] == str(mapping["/tmp"]) and env["MLOPS_HOME"] == f"{mapping['/tmp']}/mlops"
    token = Path(env["MLOPS_GITOPS_TOKEN_FILE"])
    assert token.read_text() == "run-local-placeholder\n" and token.is_relative_to(tmp_path)
    del shell["MLOPS_GITOPS_REMOTE"]
    with pytest.raises(PipelineError, match="declares MLOPS_GITOPS_REMOTE"):
        pods.environment(monitor, {"workflow.name": "w"}, mapping)


POD = """
import json, os, pathlib, sys
results = pathlib.Path(os.environ["RESULTS"])
item = sys.argv[1]
home = pathlib.Path(os.environ["HOME"])
seen = {"item": item, "home": str(home), "cwd": os.getcwd(), "home_files": sorted(os.listdir(home)),
        "env": sorted(os.environ)}
(home / "scribble").write_text("x")
marker = results / f"{item}-attempted"
if item == "b" and not marker.exists():
    marker.write_text("1")
    sys.exit(3)
(results / f"{item}.json").write_text(json.dumps(seen))
"""


def tiny_workflow(results: Path) -> dict[str, Any]:
    def container(args: list[str]) -> dict[str, Any]:
        return {
            "image": "pipeline:test",
            "command": ["python"],
            "args": args,
            "env": [{"name": "RESULTS", "value": str(results)}, {"name": "HOME", "value": "/tmp"}],
            "volumeMounts": [{"name": "scratch", "mountPath": "/tmp"}],
        }

    scratch = [{"name": "scratch", "emptyDir": {}}]
    # paths reach a pod through its args and env (which run-local maps into the sandbox)
    plan = "import json, pathlib, sys; p = pathlib.Path(sys.argv[1]); p.parent.mkdir(); "
    plan += "p.write_text(json.dumps(['a', 'b', 'c']))"
    leave = "import json, os, sys; open(os.environ['RESULTS'] + '/exit.json', 'w')"
    leave += ".write(json.dumps({'status': sys.argv[1], 'failures': json.loads(sys.argv[2])}))"
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": "tiny", "labels": {"mlops/pipeline": "training"}},
        "spec": {
            "entrypoint": "main",
            "parallelism": 2,
            "onExit": "leave",
            "arguments": {"parameters": [{"name": "greeting", "value": "hi"}]},
            "templates": [
                {
                    "name": "main",
                    "dag": {
                        "tasks": [
                            {"name": "plan", "template": "plan"},
                            {
                                "name": "work",
                                "template": "work",
                                "dependencies": ["plan"],
                                "withParam": "{{tasks.plan.outputs.parameters.items}}",
                                "arguments": {"parameters": [{"name": "it", "value": "{{item}}"}]},
                            },
                            {"name": "slow", "template": "slow", "dependencies": ["plan"]},
                            {"name": "after", "template": "slow", "dependencies": ["slow"]},
                        ]
                    },
                },
                {
                    "name": "plan",
                    "container": container(["-c", plan, "/tmp/outputs/items.json"]),
                    "volumes": scratch,
                    "outputs": {
                        "parameters": [
                            {"name": "items", "valueFrom": {"path": "/tmp/outputs/items.json"}}
                        ]
                    },
                },
                {
                    "name": "work",
                    "inputs": {"parameters": [{"name": "it"}]},
                    "container": container(["-c", POD, "{{inputs.parameters.it}}"]),
                    "volumes": scratch,
                    "retryStrategy": {
                        "limit": 1,
                        "retryPolicy": "Always",
                        "backoff": {"duration": "1s"},
                    },
                },
                {
                    "name": "slow",
                    "activeDeadlineSeconds": 2,
                    "container": container(["-c", "import time; time.sleep(60)"]),
                    "volumes": scratch,
                },
                {
                    "name": "leave",
                    "container": container(
                        ["-c", leave, "{{workflow.status}}", "{{workflow.failures}}"]
                    ),
                    "volumes": scratch,
                },
            ],
        },
    }


@pytest.mark.integration
def test_pods_fan_out_retry_hit_deadlines_and_the_exit_handler_sees_the_failure(
    tmp_path: Path,
) -> None:
    # outside /tmp: inside a pod, /tmp is the pod's own scratch volume (run-local maps it so)
    results = Path(tempfile.mkdtemp(prefix="run-local-results-", dir="/var/tmp"))
    try:
        check_tiny_run(tmp_path, results)
    finally:
        shutil.rmtree(results, ignore_errors=True)


def check_tiny_run(tmp_path: Path, results: Path) -> None:
    manifest = tmp_path / "tiny.yaml"
    manifest.write_text(yaml.safe_dump(tiny_workflow(results)))
    home = tmp_path / "home"
    done = run_cli(
        ["workflows", "run-local", "--file", str(manifest), "--json"],
        {"MLOPS_HOME": str(home), "PARENT_ONLY_SECRET": "s3cr3t"},
    )
    assert done.returncode == 1, done.stderr
    document = json.loads(done.stdout)
    nodes = {n["name"]: n for n in document["nodes"]}
    assert {nodes[f"work({i}:{x})"]["phase"] for i, x in enumerate("abc")} == {"Succeeded"}
    assert nodes["work(1:b)"]["attempts"] == 2, "retried once after its first attempt failed"
    slow = nodes["slow"]
    assert slow["phase"] == "Failed" and "longer than the specified deadline" in slow["message"]
    assert slow["seconds"] < 20, "killed at its activeDeadlineSeconds"
    assert nodes["after"]["phase"] == "Omitted", "a task after a failed one does not run"
    left = json.loads((results / "exit.json").read_text())
    assert left["status"] == "Failed" and [f["displayName"] for f in left["failures"]] == ["slow"]
    seen = {x: json.loads((results / f"{x}.json").read_text()) for x in "abc"}
    homes = {s["home"] for s in seen.values()}
    assert len(homes) == 3 and all(s["home_files"] == [] for s in seen.values()), (
        "each pod (and each attempt) starts from a fresh, empty sandbox"
    )
    assert all(s["cwd"] == s["home"] for s in seen.values()), "WORKDIR /tmp is the scratch volume"
    assert all(Path(h).is_relative_to(home) for h in homes)
    env = set(seen["a"]["env"])
    assert "PARENT_ONLY_SECRET" not in env and "MLOPS_HOME" not in env
    env.discard("LC_CTYPE")  # set by Python itself when no locale is given (PEP 538)
    assert env == {"RESULTS", "HOME", "PATH", *IMAGE_ENV}, env


def test_unknown_parameters_are_refused(tmp_path: Path) -> None:
    from pipelines.cli.workflows import _parameters

    assert _parameters({"source": "a", "end": ""}, ["end=2024-01-02"]) == {
        "source": "a",
        "end": "2024-01-02",
    }
    for bad in ("nosuch=1", "source"):
        with pytest.raises(PipelineError, match="not NAME=VALUE for a workflow parameter"):
            _parameters({"source": "a"}, [bad])
