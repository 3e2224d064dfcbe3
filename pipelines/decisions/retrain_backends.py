"""How a drift-triggered training run starts, chosen by ``MLOPS_RETRAIN_BACKEND`` (a value, never
the env's name): ``local`` runs ``mlops run`` as a detached process on this machine; ``argo``
creates a Workflow from the training CronWorkflow through the Kubernetes API, as
``argo submit --from cronwf/NAME`` does, with the pod's own service account.

Each backend returns a *handle* (a JSON-able dict, kept in the ledger record of the trigger) and
tells from a handle whether that run is still running, so the next trigger can be suppressed.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Protocol

from pipelines import layout
from pipelines.errors import PipelineError
from pipelines.settings import Settings
from pipelines.storage import Storage

GROUP, VERSION = "argoproj.io", "v1alpha1"
CRON_LABEL = "workflows.argoproj.io/cron-workflow"
"""Argo's label naming the CronWorkflow a Workflow came from (`common.LabelKeyCronWorkflow`)."""
INSTANCE_LABEL = "workflows.argoproj.io/controller-instanceid"
SCHEDULED_ANNOTATION = "workflows.argoproj.io/scheduled-time"
TRIGGER_LABEL = "mlops/trigger"
"""Our label on a drift-triggered Workflow (value ``retrain``): told apart from scheduled runs."""
Days = tuple[date, date]
"""The first and last day of a training run's data."""
RUN_MARGIN_SECONDS = 600
"""A cluster run whose exit record is missing counts as running until its workflow deadline
plus this margin has passed (a workflow deleted before its exit handler ran records nothing)."""


class Backend(Protocol):
    """Starts a training run and tells whether one it started is still running."""

    def start(self, settings: Settings, days: Days | None, record_key: str) -> dict[str, Any]:
        """Start a training run over `days` (first, last; None: the run's default, the
        lookback up to yesterday); return its handle."""
        ...

    def running(self, handle: dict[str, Any], storage: Storage) -> bool:
        """Whether the run of `handle` is still running."""
        ...


class LocalBackend:
    """``mlops run`` (the training pipeline, this process's settings) as a detached process.

    Detached, not in-process: a training run takes minutes to hours, longer than the monitor
    step's deadline, and must survive the monitor's process; its failure is its own run's (its
    summary and log), not the monitor's decision. Its stdout (the run summary, ``--json``) and
    stderr go to ``$MLOPS_HOME/retrain/``.
    """

    def start(self, settings: Settings, days: Days | None, record_key: str) -> dict[str, Any]:
        """Spawn the run in a new session; return its pid, start time and output files."""
        import psutil

        folder = settings.home / "retrain"
        folder.mkdir(parents=True, exist_ok=True)
        stem = Path(record_key).stem
        summary, log = folder / f"{stem}.summary.json", folder / f"{stem}.log"
        argv = [sys.executable, "-m", "pipelines", "run", "--pipeline", "training", "--json"]
        argv += ["--start", days[0].isoformat(), "--end", days[1].isoformat()] if days else []
        with summary.open("wb") as out, log.open("wb") as err:
            process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,  # not in the monitor's process group: it outlives it
                env=dict(os.environ),
            )
        return {
            "backend": "local",
            "pid": process.pid,
            "started": psutil.Process(process.pid).create_time(),
            "argv": argv[1:],
            "summary": str(summary),
            "log": str(log),
        }

    def running(self, handle: dict[str, Any], storage: Storage) -> bool:
        """Whether the recorded pid is alive and is still the process started (not a reuse)."""
        import psutil

        try:
            process = psutil.Process(int(handle["pid"]))
            alive = process.status() != psutil.STATUS_ZOMBIE
            return bool(alive and abs(process.create_time() - float(handle["started"])) < 0.01)
        except (psutil.NoSuchProcess, KeyError, ValueError):
            return False


def workflow_from_cron(
    cron: dict[str, Any], days: Days | None, now: datetime, record_key: str
) -> dict[str, Any]:
    """The Workflow that ``argo submit --from cronwf/NAME`` creates from `cron` (upstream
    ``common.ConvertCronWorkflowToWorkflow``): its ``workflowSpec``, the cron-workflow and
    instance-id labels, ``workflowMetadata``'s labels, annotations and finalizers, the
    scheduled-time annotation and a controller owner reference to the CronWorkflow — without
    ``blockOwnerDeletion``, which would need ``update`` on ``cronworkflows/finalizers`` where
    the OwnerReferencesPermissionEnforcement admission plugin runs. Ours on top: the
    ``mlops/trigger`` label, the ledger record in an annotation, and the run's ``start`` and
    ``end`` parameters.
    """
    meta, spec = cron["metadata"], cron["spec"]
    workflow_spec = copy.deepcopy(spec["workflowSpec"])
    labels: dict[str, str] = {}
    if INSTANCE_LABEL in (meta.get("labels") or {}):
        labels[INSTANCE_LABEL] = meta["labels"][INSTANCE_LABEL]
    labels[CRON_LABEL] = meta["name"]
    extra = spec.get("workflowMetadata") or {}
    labels.update(extra.get("labels") or {})
    labels[TRIGGER_LABEL] = "retrain"
    annotations = {
        SCHEDULED_ANNOTATION: now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        **(extra.get("annotations") or {}),
        "mlops/decision-record": record_key,
    }
    if days is not None:
        parameters = workflow_spec.setdefault("arguments", {}).setdefault("parameters", [])
        for name, day in zip(("start", "end"), days, strict=True):
            found = [p for p in parameters if p.get("name") == name]
            if not found:
                raise PipelineError(
                    f"CronWorkflow {meta['name']} has no {name!r} parameter to set",
                    "render it with `mlops workflows render` (every pipeline takes start, end)",
                )
            found[0]["value"] = day.isoformat()
    metadata: dict[str, Any] = {
        "generateName": f"{meta['name']}-retrain-",
        "namespace": meta.get("namespace"),
        "labels": labels,
        "annotations": annotations,
        "ownerReferences": [
            {
                "apiVersion": cron.get("apiVersion", f"{GROUP}/{VERSION}"),
                "kind": "CronWorkflow",
                "name": meta["name"],
                "uid": meta.get("uid", ""),
                "controller": True,
            }
        ],
    }
    if extra.get("finalizers"):
        metadata["finalizers"] = list(extra["finalizers"])
    return {
        "apiVersion": cron.get("apiVersion", f"{GROUP}/{VERSION}"),
        "kind": "Workflow",
        "metadata": metadata,
        "spec": workflow_spec,
    }


def in_cluster_api() -> Any:
    """A Kubernetes API client with the pod's service account (its mounted token and CA)."""
    from kubernetes import client, config

    try:
        config.load_incluster_config()
    except config.ConfigException as error:
        raise PipelineError(
            f"no in-cluster Kubernetes credentials for an argo retrain: {error}",
            "run the monitor in the cluster (its pod's service account), or set "
            "MLOPS_RETRAIN_BACKEND=local",
        ) from None
    return client.ApiClient()


class ArgoBackend:
    """A Workflow from the training CronWorkflow, created through the Kubernetes API.

    Two calls, so two permissions in the namespace and nothing more (the Role
    ``mlops-pipeline-retrain`` of `stacks.components.cluster_services` grants): ``get`` on that
    one CronWorkflow, ``create`` on workflows. No Argo Server and no token of its: the pod's
    service account talks to the API server, and the workflow controller runs the result like a
    scheduled run.
    """

    def __init__(self, api_client: Any | None = None) -> None:
        """`api_client`: a ``kubernetes.client.ApiClient`` (default: in-cluster)."""
        self._api_client = api_client

    def _api(self) -> Any:
        from kubernetes import client

        if self._api_client is None:
            self._api_client = in_cluster_api()
        return client.CustomObjectsApi(self._api_client)

    def start(self, settings: Settings, days: Days | None, record_key: str) -> dict[str, Any]:
        """GET the CronWorkflow, POST the Workflow made from it; return its name."""
        from kubernetes.client.exceptions import ApiException

        name, namespace = settings.retrain_cron_workflow, settings.retrain_namespace
        api = self._api()
        try:
            cron = api.get_namespaced_custom_object(
                GROUP, VERSION, namespace, "cronworkflows", name
            )
            body = workflow_from_cron(cron, days, datetime.now(UTC), record_key)
            created = api.create_namespaced_custom_object(
                GROUP, VERSION, namespace, "workflows", body
            )
        except ApiException as error:
            raise PipelineError(
                f"creating a training Workflow from CronWorkflow {namespace}/{name} failed: "
                f"HTTP {error.status} {error.reason}",
                "check that the CronWorkflow exists (MLOPS_RETRAIN_CRON_WORKFLOW) and that the "
                "pipeline service account's Role allows get on it and create on workflows",
            ) from None
        return {
            "backend": "argo",
            "namespace": namespace,
            "workflow": created["metadata"]["name"],
            "cron_workflow": name,
            "deadline_seconds": body["spec"].get("activeDeadlineSeconds"),
            "created": time.time(),
        }

    def running(self, handle: dict[str, Any], storage: Storage) -> bool:
        """Running until its exit handler records how it ended (``runs/{name}/exit.json``),
        or its deadline (plus a margin) has passed — read from storage: no list permission."""
        if storage.exists(layout.run_exit(str(handle["workflow"]))):
            return False
        deadline = float(handle.get("deadline_seconds") or 0) + RUN_MARGIN_SECONDS
        return time.time() - float(handle.get("created", 0)) < deadline


def backend_of(settings: Settings) -> Backend:
    """The backend ``MLOPS_RETRAIN_BACKEND`` names."""
    return ArgoBackend() if settings.retrain_backend == "argo" else LocalBackend()


def backend_for(handle: dict[str, Any]) -> Backend:
    """The backend that started the run of `handle` (the one that can tell if it runs)."""
    return ArgoBackend() if handle.get("backend") == "argo" else LocalBackend()
