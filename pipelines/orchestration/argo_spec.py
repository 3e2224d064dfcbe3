"""Reading a rendered (Cron)Workflow the way Argo's controller does, for ``workflows run-local``:
its parameters, DAG tasks, container templates, retry strategies, deadlines and template tags.

Only what the rendered CronWorkflows use is understood; anything else is refused by name rather
than ignored, so a manifest that would behave differently on the cluster never "passes" here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from pipelines.errors import PipelineError

MAX_MANIFEST_BYTES = 1_000_000
"""A rendered CronWorkflow is ~30 KB; anything near this bound is not one of ours."""

_TAG = re.compile(r"\{\{\s*([^{}]{1,200}?)\s*\}\}")
_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m(?!s))?(?:(\d+)s)?$")
IGNORED_TAGS = ("duration", "status", "workflow.duration")
"""Tags only metrics use (evaluated by the controller, not by a pod)."""


def go_duration(text: str) -> float:
    """Seconds of a Go duration such as ``30s``, ``10m`` or ``1h30m`` (Argo's backoff fields).

    Raises:
        PipelineError: for anything else.
    """
    found = _DURATION.match(text.strip())
    if not text.strip() or not found:
        raise PipelineError(f"{text!r} is not a duration", "use e.g. 30s, 10m or 1h")
    hours, minutes, seconds = (int(g or 0) for g in found.groups())
    return float(hours * 3600 + minutes * 60 + seconds)


def substitute(text: str, values: dict[str, str]) -> str:
    """Replace each ``{{tag}}`` with its value, as the controller does before creating a pod.

    Raises:
        PipelineError: naming a tag that has no value here.
    """

    def one(found: re.Match[str]) -> str:
        tag = found[1]
        if tag in values:
            return values[tag]
        raise PipelineError(f"template tag {{{{{tag}}}}} has no value", "check the manifest")

    return _TAG.sub(one, text)


@dataclass(frozen=True)
class Retry:
    """A template's ``retryStrategy`` (``Always``: any failure is retried)."""

    limit: int = 0
    backoff: float = 0.0
    factor: float = 1.0
    max_backoff: float | None = None

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry number `attempt` (1 = the first retry)."""
        wait = self.backoff * self.factor ** (attempt - 1)
        return min(wait, self.max_backoff) if self.max_backoff is not None else wait


@dataclass(frozen=True)
class Template:
    """A container template: what one pod runs."""

    name: str
    command: list[str]
    env: dict[str, str]
    mounts: dict[str, str]
    """Mount path -> volume name."""
    secret_volumes: frozenset[str]
    inputs: tuple[str, ...]
    outputs: dict[str, str]
    """Output parameter -> the path it is read from."""
    retry: Retry
    deadline: float | None


@dataclass(frozen=True)
class Task:
    """One DAG task (fanned out when it has ``withParam``)."""

    name: str
    template: str
    needs: tuple[str, ...]
    arguments: dict[str, str]
    with_param: str | None = None


@dataclass
class WorkflowSpec:
    """The parts of a workflow spec run-local executes."""

    name: str
    parameters: dict[str, str]
    tasks: list[Task]
    templates: dict[str, Template]
    on_exit: str | None
    deadline: float | None
    parallelism: int | None
    volumes: dict[str, dict[str, Any]] = field(default_factory=dict)


def _retry(raw: dict[str, Any] | None) -> Retry:
    if not raw:
        return Retry()
    policy = raw.get("retryPolicy", "OnFailure")
    if policy not in ("Always", "OnFailure", "OnError"):
        raise PipelineError(f"retryPolicy {policy!r} is not supported by run-local")
    backoff = raw.get("backoff") or {}
    return Retry(
        limit=int(str(raw.get("limit", 0))),
        backoff=go_duration(str(backoff["duration"])) if "duration" in backoff else 0.0,
        factor=float(str(backoff.get("factor", 1))),
        max_backoff=go_duration(str(backoff["maxDuration"])) if "maxDuration" in backoff else None,
    )


def _template(raw: dict[str, Any], volumes: dict[str, dict[str, Any]]) -> Template:
    container = raw["container"]
    env: dict[str, str] = {}
    for item in container.get("env", []):
        if "value" not in item:
            raise PipelineError(
                f"template {raw['name']}: env {item.get('name')} has no literal value",
                "run-local supports env values only (no valueFrom)",
            )
        env[item["name"]] = str(item["value"])
    local_volumes = {v["name"]: v for v in raw.get("volumes", [])} | volumes
    mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
    unknown = [n for n in mounts.values() if n not in local_volumes]
    if unknown:
        raise PipelineError(f"template {raw['name']}: volume(s) {unknown} are not declared")
    outputs = {
        p["name"]: p["valueFrom"]["path"] for p in raw.get("outputs", {}).get("parameters", [])
    }
    return Template(
        name=raw["name"],
        command=[*container.get("command", []), *container.get("args", [])],
        env=env,
        mounts=mounts,
        secret_volumes=frozenset(n for n, v in local_volumes.items() if "secret" in v),
        inputs=tuple(p["name"] for p in raw.get("inputs", {}).get("parameters", [])),
        outputs=outputs,
        retry=_retry(raw.get("retryStrategy")),
        deadline=float(raw["activeDeadlineSeconds"]) if "activeDeadlineSeconds" in raw else None,
    )


def parse_workflow(document: dict[str, Any]) -> WorkflowSpec:
    """The executable parts of a CronWorkflow (or Workflow) manifest.

    Raises:
        PipelineError: for a manifest that is not a DAG of container templates.
    """
    kind = document.get("kind")
    if kind not in ("CronWorkflow", "Workflow"):
        raise PipelineError(f"kind {kind!r} is not a CronWorkflow or Workflow")
    spec = document["spec"]["workflowSpec"] if kind == "CronWorkflow" else document["spec"]
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    raw = {t["name"]: t for t in spec["templates"]}
    entry = raw.get(spec["entrypoint"], {})
    if "dag" not in entry:
        raise PipelineError(f"entrypoint {spec['entrypoint']!r} is not a DAG template")
    tasks = []
    for task in entry["dag"]["tasks"]:
        arguments = task.get("arguments", {}).get("parameters", [])
        tasks.append(
            Task(
                name=task["name"],
                template=task["template"],
                needs=tuple(task.get("dependencies") or ()),
                arguments={p["name"]: str(p["value"]) for p in arguments},
                with_param=task.get("withParam"),
            )
        )
    templates = {n: _template(t, volumes) for n, t in raw.items() if "container" in t}
    missing = [t.template for t in tasks if t.template not in templates]
    if missing:
        raise PipelineError(f"task template(s) {missing} are not container templates")
    return WorkflowSpec(
        name=document["metadata"]["name"],
        parameters={
            p["name"]: str(p.get("value", ""))
            for p in spec.get("arguments", {}).get("parameters", [])
        },
        tasks=tasks,
        templates=templates,
        on_exit=spec.get("onExit"),
        deadline=float(spec["activeDeadlineSeconds"]) if "activeDeadlineSeconds" in spec else None,
        parallelism=spec.get("parallelism"),
        volumes=volumes,
    )
