"""``mlops workflows run-local``: a rendered CronWorkflow executed the way Argo runs it.

Each DAG task is a pod: its container's command and args, with the template tags substituted,
run as a process of its own with a fresh sandbox for every attempt (the volumes it mounts,
``HOME`` and the working directory among them) and only the container's declared environment
plus the image's — the endpoints that name cluster services replaced by the local services'.
Retry strategies, deadlines, ``withParam`` fan-out, ``spec.parallelism`` and the exit handler
are honoured; pods share nothing but the services.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipelines.errors import PipelineError
from pipelines.orchestration.argo_spec import Task, Template, WorkflowSpec, substitute

ENDPOINTS = (
    "MLOPS_STORAGE_URL",
    "MLOPS_RAW_STORAGE_URL",
    "MLFLOW_TRACKING_URI",
    "MLOPS_GITOPS_REMOTE",
)
"""Declared variables that name cluster services: replaced by this shell's values."""
OPTIONAL_ENDPOINTS = ("MLOPS_METRICS_PUSHGATEWAY", "MLOPS_SERVING_REPOSITORY")
"""Cluster services a pod can do without: this shell's value, or dropped when it sets none
(the pod then keeps its metrics in its own textfile only, and finds the serving image in the
env's stand-in registry in its storage instead of ECR: `pipelines.ml.images`)."""
INJECTED = (
    "AWS_ENDPOINT_URL_S3",
    "MLFLOW_S3_ENDPOINT_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_DEFAULT_REGION",
)
"""What IRSA and the AWS endpoint give a pod on EKS: taken from this shell when set."""
IMAGE_ENV = {
    "PYTHONUNBUFFERED": "1",
    "MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "false",
    "OMP_NUM_THREADS": "1",
}
"""The pipeline image's own ``ENV`` (Dockerfile) that a pod sees besides the container's."""
IMAGE_WORKDIR = "/tmp"
MAX_ITEMS = 10_000
MAX_OUTPUT_BYTES = 256 * 1024
"""Argo keeps an output parameter in the pod's task result: bounded like it."""
KILL_GRACE_SECONDS = 10.0

Reporter = Callable[[str, str], None]


@dataclass
class Node:
    """One pod of the run (a task, or one item of a fanned-out task)."""

    name: str
    task: str
    template: str
    phase: str = "Pending"
    attempts: int = 0
    seconds: float = 0.0
    message: str | None = None
    outputs: dict[str, str] = field(default_factory=dict)
    log: str | None = None
    finished_at: str | None = None


@dataclass
class Pods:
    """Where pods run and what they may see."""

    root: Path
    mlops: Path
    endpoints: Mapping[str, str]
    report: Reporter
    stop: threading.Event = field(default_factory=threading.Event)

    def sandbox(self, template: Template, node: str, attempt: int) -> dict[str, Path]:
        """Fresh directories for every volume the template mounts (per attempt, like a pod)."""
        base = self.root / "pods" / f"{_safe(node)}-{attempt}"
        mapping: dict[str, Path] = {}
        for mount, volume in sorted(template.mounts.items()):
            path = base / "volumes" / volume
            path.mkdir(parents=True, exist_ok=True)
            if volume in template.secret_volumes:
                # The GitOps remote is a local repository here: no credential is sent anywhere,
                # so the Secret is stood in for by a placeholder, never a real token.
                for key in ("token", "ssh-key"):
                    secret = path / key
                    secret.write_text("run-local-placeholder\n")
                    secret.chmod(0o400)
            mapping[mount] = path
        if IMAGE_WORKDIR not in mapping:
            mapping[IMAGE_WORKDIR] = base / "workdir"
            mapping[IMAGE_WORKDIR].mkdir(parents=True, exist_ok=True)
        return mapping

    def environment(
        self, template: Template, values: dict[str, str], mapping: dict[str, Path]
    ) -> dict[str, str]:
        """The container's declared env (tags substituted, paths mapped), endpoints replaced."""
        env = {**IMAGE_ENV}
        for name, raw in template.env.items():
            env[name] = _mapped(substitute(raw, values), mapping)
        for name in ENDPOINTS:
            if name in env:
                if not self.endpoints.get(name):
                    raise PipelineError(
                        f"template {template.name} declares {name} (a cluster service) and this "
                        "shell sets no local stand-in",
                        'run eval "$(mlops services env)" first'
                        + (
                            " and export MLOPS_GITOPS_REMOTE=<a bare git repository>"
                            if name == "MLOPS_GITOPS_REMOTE"
                            else ""
                        ),
                    )
                env[name] = self.endpoints[name]
        for name in OPTIONAL_ENDPOINTS:
            if name in env:
                env.pop(name)
                if self.endpoints.get(name):
                    env[name] = self.endpoints[name]
        env.update({k: self.endpoints[k] for k in INJECTED if self.endpoints.get(k)})
        env["PATH"] = f"{self.mlops.parent}:/usr/local/bin:/usr/bin:/bin"
        return env

    def run(
        self, node: Node, template: Template, values: dict[str, str], deadline: float | None
    ) -> Node:
        """Run the pod, retrying as its ``retryStrategy`` says; fill in the node."""
        started = time.monotonic()
        for attempt in range(1, template.retry.limit + 2):
            node.attempts = attempt
            mapping = self.sandbox(template, node.name, attempt)
            argv = [_mapped(substitute(a, values), mapping) for a in template.command]
            if argv and argv[0] == "mlops":
                argv[0] = str(self.mlops)
            env = self.environment(template, values, mapping)
            log = self.root / "logs" / f"{_safe(node.name)}-{attempt}.log"
            log.parent.mkdir(parents=True, exist_ok=True)
            node.log = str(log)
            limit = _limit(template.deadline, deadline)
            node.phase, node.message = _execute(
                argv, env, mapping[IMAGE_WORKDIR], log, limit, self.stop
            )
            if node.phase == "Succeeded":
                node.outputs = _outputs(template, mapping)
                break
            if attempt <= template.retry.limit and not self.stop.is_set():
                self.report(node.name, f"retrying after {node.message}")
                time.sleep(template.retry.delay(attempt))
        node.seconds = round(time.monotonic() - started, 3)
        node.finished_at = datetime.now(UTC).isoformat()
        return node


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:120]


def _limit(own: float | None, workflow: float | None) -> float | None:
    remaining = None if workflow is None else max(0.0, workflow - time.monotonic())
    options = [x for x in (own, remaining) if x is not None]
    return min(options) if options else None


def _mapped(value: str, mapping: dict[str, Path]) -> str:
    for mount in sorted(mapping, key=len, reverse=True):
        if value == mount or value.startswith(mount.rstrip("/") + "/"):
            return str(mapping[mount]) + value[len(mount.rstrip("/")) :]
    return value


def _execute(
    argv: list[str],
    env: dict[str, str],
    cwd: Path,
    log: Path,
    limit: float | None,
    stop: threading.Event,
) -> tuple[str, str | None]:
    with log.open("wb") as sink:
        process = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        ends = None if limit is None else time.monotonic() + limit
        while process.poll() is None:
            if stop.is_set() or (ends is not None and time.monotonic() > ends):
                _kill(process)
                reason = (
                    "the workflow was stopped"
                    if stop.is_set()
                    else ("Pod was active on the node longer than the specified deadline")
                )
                return "Failed", reason
            time.sleep(0.1)
    if process.returncode == 0:
        return "Succeeded", None
    tail = log.read_bytes()[-400:].decode(errors="replace").strip().splitlines()
    return "Failed", f"exit code {process.returncode}" + (f": {tail[-1]}" if tail else "")


def _kill(process: subprocess.Popen[bytes]) -> None:
    for sig, grace in ((signal.SIGTERM, KILL_GRACE_SECONDS), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


def _outputs(template: Template, mapping: dict[str, Path]) -> dict[str, str]:
    found = {}
    for name, path in template.outputs.items():
        local = Path(_mapped(path, mapping))
        if not local.is_file() or local.stat().st_size > MAX_OUTPUT_BYTES:
            raise PipelineError(
                f"template {template.name}: output parameter {name} is missing or larger than "
                f"{MAX_OUTPUT_BYTES} bytes at {path}"
            )
        found[name] = local.read_text()
    return found


def expand(task: Task, values: dict[str, str]) -> list[tuple[str, dict[str, str]]]:
    """The pods of a task: one, or one per item of its ``withParam`` list (Argo's names).

    Raises:
        PipelineError: when the list is not a JSON list or is too long.
    """
    if task.with_param is None:
        return [
            (
                task.name,
                {
                    f"inputs.parameters.{k}": substitute(v, values)
                    for k, v in task.arguments.items()
                },
            )
        ]
    try:
        items = json.loads(substitute(task.with_param, values))
    except ValueError:
        items = None
    if not isinstance(items, list) or len(items) > MAX_ITEMS:
        raise PipelineError(
            f"task {task.name}: withParam is not a JSON list of at most {MAX_ITEMS} items"
        )
    pods = []
    for index, item in enumerate(items):
        text = item if isinstance(item, str) else json.dumps(item)
        scope = {**values, "item": text}
        args = {f"inputs.parameters.{k}": substitute(v, scope) for k, v in task.arguments.items()}
        pods.append((f"{task.name}({index}:{text})", args))
    return pods


@dataclass
class LocalRun:
    """The outcome of one run-local execution."""

    workflow: str
    status: str
    nodes: list[Node]
    exit_handler: Node | None
    seconds: float


def run_workflow(
    spec: WorkflowSpec, name: str, parameters: Mapping[str, str], pods: Pods, parallel: int
) -> LocalRun:
    """Run the DAG (then the exit handler) and return every node's outcome."""
    started = time.monotonic()
    deadline = None if spec.deadline is None else started + spec.deadline
    base = {"workflow.name": name, **{f"workflow.parameters.{k}": v for k, v in parameters.items()}}
    width = max(1, min(parallel, spec.parallelism or parallel))
    done: dict[str, str] = {}  # task -> phase
    nodes: list[Node] = []
    pending = list(spec.tasks)
    running: dict[Future[Node], str] = {}
    groups: dict[str, list[Future[Node]]] = {}
    values = dict(base)
    with ThreadPoolExecutor(max_workers=width) as pool:
        while pending or running:
            if pods.stop.is_set():  # past the workflow's deadline: nothing new starts
                for task in pending:
                    done[task.name] = "Omitted"
                    nodes.append(Node(task.name, task.name, task.template, "Omitted"))
                pending.clear()
            for task in [t for t in pending if all(done.get(n) == "Succeeded" for n in t.needs)]:
                pending.remove(task)
                template = spec.templates[task.template]
                try:
                    expanded = expand(task, values)
                except PipelineError as error:
                    done[task.name] = "Failed"
                    nodes.append(
                        Node(task.name, task.name, task.template, "Error", message=str(error))
                    )
                    continue
                groups[task.name] = []
                for pod_name, args in expanded:
                    node = Node(pod_name, task.name, task.template)
                    nodes.append(node)
                    pods.report(pod_name, "started")
                    future = pool.submit(pods.run, node, template, {**values, **args}, deadline)
                    running[future] = task.name
                    groups[task.name].append(future)
                if not expanded:
                    done[task.name] = "Succeeded"
            blocked = [
                t for t in pending if any(done.get(n) in ("Failed", "Omitted") for n in t.needs)
            ]
            for task in blocked:
                pending.remove(task)
                done[task.name] = "Omitted"
                nodes.append(Node(task.name, task.name, task.template, "Omitted"))
            if not running:
                if pending and not [t for t in pending if all(n in done for n in t.needs)]:
                    break
                continue
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                task_name = running.pop(future)
                node = future.result()
                pods.report(node.name, node.phase.lower())
                if all(f.done() for f in groups[task_name]):
                    results = [f.result() for f in groups[task_name]]
                    ok = all(r.phase == "Succeeded" for r in results)
                    done[task_name] = "Succeeded" if ok else "Failed"
                    if ok and len(results) == 1:
                        for key, value in results[0].outputs.items():
                            values[f"tasks.{task_name}.outputs.parameters.{key}"] = value
            if deadline is not None and time.monotonic() > deadline:
                pods.stop.set()
    failed = [n for n in nodes if n.phase in ("Failed", "Error")]
    status = (
        "Succeeded" if not failed and all(p == "Succeeded" for p in done.values()) else "Failed"
    )
    exit_node = None
    if spec.on_exit:
        pods.stop.clear()
        failures = [
            {
                "displayName": n.name,
                "message": n.message,
                "templateName": n.template,
                "phase": n.phase,
                "finishedAt": n.finished_at,
            }
            for n in failed
        ]
        scope = {**values, "workflow.status": status, "workflow.failures": json.dumps(failures)}
        exit_node = pods.run(
            Node(f"{name}.onExit", "onExit", spec.on_exit),
            spec.templates[spec.on_exit],
            scope,
            None,
        )
        pods.report(exit_node.name, exit_node.phase.lower())
    return LocalRun(name, status, nodes, exit_node, round(time.monotonic() - started, 3))


def node_document(node: Node) -> dict[str, Any]:
    """A node as ``--json`` prints it."""
    return {
        "name": node.name,
        "task": node.task,
        "phase": node.phase,
        "attempts": node.attempts,
        "seconds": node.seconds,
        "message": node.message,
        "log": node.log,
    }
