"""The cluster backend of drift-triggered retraining: the Workflow it creates from the rendered
training CronWorkflow is valid against the upstream Workflow CRD, and the requests it sends
(the `kubernetes` client, to a fake API server on 127.0.0.1) are exactly a GET of the training
CronWorkflow the rendered monitor names and a POST of a Workflow made from it — the names
agree across the rendered resources. An API error is one clear message with no token."""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from pipelines.decisions.retrain_backends import (
    CRON_LABEL,
    TRIGGER_LABEL,
    ArgoBackend,
    workflow_from_cron,
)
from pipelines.errors import PipelineError
from pipelines.orchestration.argo import render
from pipelines.orchestration.dag import get_pipeline
from pipelines.settings import Settings
from stacks.config import load_stack_config
from tests.conftest import REPO
from tests.support.crd import validate_custom_resource

WORKFLOW_CRD = str(REPO / "tests" / "schemas" / "argo-workflows-workflow-crd-v4.1.2.yaml")
TOKEN = "sa-token-never-logged"
DAYS = (date(2026, 10, 1), date(2026, 11, 30))


@functools.cache
def _rendered(env: str, pipeline: str) -> str:
    manifest = render(get_pipeline(pipeline), load_stack_config(env).workflows)
    manifest["metadata"]["uid"] = "0b5c6e2a-1111-4222-8333-444455556666"
    return json.dumps(manifest)


def rendered(env: str, pipeline: str) -> dict[str, Any]:
    """The rendered CronWorkflow as the API server returns it (with a uid)."""
    manifest: dict[str, Any] = json.loads(_rendered(env, pipeline))
    return manifest


def monitor_settings(env: str) -> Settings:
    """The settings the rendered monitor step runs with (its container's MLOPS_* env)."""
    (step,) = [
        t
        for t in rendered(env, "monitor")["spec"]["workflowSpec"]["templates"]
        if t["name"] == "monitor"
    ]
    values = {e["name"]: e["value"] for e in step["container"]["env"]}
    fields = {
        k.removeprefix("MLOPS_").lower(): v for k, v in values.items() if k.startswith("MLOPS_")
    }
    return Settings.model_validate(fields)


@pytest.mark.parametrize("env", ["dev", "staging", "prod"])
def test_the_workflow_made_from_the_training_cron_is_valid_against_the_upstream_crd(
    env: str,
) -> None:
    cron = rendered(env, "training")
    workflow = workflow_from_cron(cron, DAYS, datetime(2026, 12, 1, tzinfo=UTC), "decisions/x.json")
    assert validate_custom_resource(workflow, WORKFLOW_CRD) == []
    # what `argo submit --from cronwf/NAME` keeps: the spec, the labels, the owner
    assert workflow["kind"] == "Workflow" and workflow["apiVersion"] == cron["apiVersion"]
    expected = {**cron["spec"]["workflowSpec"]}
    parameters = {p["name"]: p["value"] for p in workflow["spec"]["arguments"]["parameters"]}
    assert (parameters["start"], parameters["end"]) == ("2026-10-01", "2026-11-30")
    assert {k: v for k, v in workflow["spec"].items() if k != "arguments"} == {
        k: v for k, v in expected.items() if k != "arguments"
    }
    labels = workflow["metadata"]["labels"]
    assert labels[CRON_LABEL] == cron["metadata"]["name"] and labels[TRIGGER_LABEL] == "retrain"
    # the CronWorkflow's own workflowMetadata (spec level; ours sets none) is carried over too
    cron["spec"]["workflowMetadata"] = {"labels": {"team": "ml"}, "finalizers": ["f.example/x"]}
    carried = workflow_from_cron(cron, None, datetime(2026, 12, 1, tzinfo=UTC), "decisions/x.json")
    assert carried["metadata"]["labels"]["team"] == "ml"
    assert carried["metadata"]["finalizers"] == ["f.example/x"]
    kept = {p["name"]: p["value"] for p in carried["spec"]["arguments"]["parameters"]}
    assert (kept["start"], kept["end"]) == ("", "")  # no days: the scheduled run's defaults
    (owner,) = workflow["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["uid"]) == (
        "CronWorkflow",
        cron["metadata"]["name"],
        cron["metadata"]["uid"],
    )
    assert "blockOwnerDeletion" not in owner  # it would need update on cronworkflows/finalizers
    # the validator does check this CRD: a planted unknown field and a wrong type are caught
    planted = json.loads(json.dumps(workflow))
    planted["spec"]["entrypointz"] = "x"
    planted["spec"]["parallelism"] = "eight"
    errors = validate_custom_resource(planted, WORKFLOW_CRD)
    assert any("entrypointz" in e for e in errors) and any("eight" in e for e in errors), errors


class FakeApiServer:
    """A Kubernetes API server on 127.0.0.1 serving one CronWorkflow and accepting Workflow
    creates (or refusing them with `refuse`); records every request."""

    def __init__(self, cron: dict[str, Any], refuse: int | None = None) -> None:
        self.cron, self.refuse = cron, refuse
        self.requests: list[dict[str, Any]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return None

            def _reply(self, status: int, document: dict[str, Any]) -> None:
                body = json.dumps(document).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _record(self) -> dict[str, Any]:
                length = int(self.headers.get("Content-Length") or 0)
                request = {
                    "method": self.command,
                    "path": self.path,
                    "authorization": self.headers.get("Authorization"),
                    "body": json.loads(self.rfile.read(length)) if length else None,
                }
                fake.requests.append(request)
                return request

            def do_GET(self) -> None:
                self._record()
                meta = fake.cron["metadata"]
                path = f"/apis/argoproj.io/v1alpha1/namespaces/{meta['namespace']}"
                if self.path == f"{path}/cronworkflows/{meta['name']}":
                    self._reply(200, fake.cron)
                else:
                    self._reply(404, {"kind": "Status", "code": 404, "reason": "NotFound"})

            def do_POST(self) -> None:
                request = self._record()
                if fake.refuse:
                    self._reply(fake.refuse, {"kind": "Status", "code": fake.refuse})
                    return
                created = json.loads(json.dumps(request["body"]))
                created["metadata"]["name"] = created["metadata"]["generateName"] + "x7k2p"
                self._reply(201, created)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def api_client(self) -> Any:
        from kubernetes import client

        configuration = client.Configuration(
            host=self.url,
            api_key={"authorization": f"Bearer {TOKEN}"},  # as load_incluster_config sets it
        )
        return client.ApiClient(configuration)


@pytest.fixture
def fake_api() -> Iterator[Any]:
    servers: list[FakeApiServer] = []

    def start(cron: dict[str, Any], refuse: int | None = None) -> FakeApiServer:
        fake = FakeApiServer(cron, refuse)
        threading.Thread(target=fake.server.serve_forever, daemon=True).start()
        servers.append(fake)
        return fake

    yield start
    for fake in servers:
        fake.server.shutdown()
        fake.server.server_close()


@pytest.mark.integration
@pytest.mark.parametrize("env", ["dev", "staging", "prod"])
def test_the_backend_gets_the_rendered_training_cron_and_creates_a_workflow_from_it(
    fake_api: Any, env: str
) -> None:
    training, settings = rendered(env, "training"), monitor_settings(env)
    fake = fake_api(training)
    handle = ArgoBackend(fake.api_client()).start(settings, DAYS, "decisions/dev/x-retrain.json")
    base = f"/apis/argoproj.io/v1alpha1/namespaces/{training['metadata']['namespace']}"
    assert [(r["method"], r["path"]) for r in fake.requests] == [
        ("GET", f"{base}/cronworkflows/{training['metadata']['name']}"),
        ("POST", f"{base}/workflows"),
    ]
    assert {r["authorization"] for r in fake.requests} == {f"Bearer {TOKEN}"}
    sent = fake.requests[1]["body"]
    # the cross-resource check: what the monitor is configured with, the CronWorkflow the stack
    # renders and the Workflow sent all name the same training pipeline
    assert settings.retrain_backend == "argo"
    assert settings.retrain_cron_workflow == training["metadata"]["name"] == "mlops-training"
    assert settings.retrain_namespace == training["metadata"]["namespace"]
    assert sent["metadata"]["labels"][CRON_LABEL] == training["metadata"]["name"]
    assert sent["metadata"]["ownerReferences"][0]["name"] == training["metadata"]["name"]
    assert (
        sent["metadata"]["annotations"]["mlops/decision-record"] == "decisions/dev/x-retrain.json"
    )
    assert sent["spec"]["templates"] == training["spec"]["workflowSpec"]["templates"]
    assert (
        sent["spec"]["serviceAccountName"] == training["spec"]["workflowSpec"]["serviceAccountName"]
    )
    assert validate_custom_resource(sent, WORKFLOW_CRD) == []
    assert handle["workflow"] == "mlops-training-retrain-x7k2p"
    assert handle["deadline_seconds"] == training["spec"]["workflowSpec"]["activeDeadlineSeconds"]


@pytest.mark.integration
@pytest.mark.parametrize(("refuse", "missing"), [(403, False), (None, True)])
def test_an_api_error_is_one_clear_message_without_the_token(
    fake_api: Any, refuse: int | None, missing: bool
) -> None:
    training = rendered("dev", "training")
    if missing:
        training = {**training, "metadata": {**training["metadata"], "name": "another"}}
    fake = fake_api(training, refuse)
    with pytest.raises(PipelineError) as caught:
        ArgoBackend(fake.api_client()).start(monitor_settings("dev"), DAYS, "decisions/x.json")
    message = str(caught.value)
    assert f"HTTP {refuse or 404}" in message and "mlops/mlops-training" in message
    assert "Role allows get on it and create on workflows" in message and TOKEN not in message
    assert len(fake.requests) == (2 if refuse else 1)  # nothing is created after a failed GET
