"""The pipelines, defined once: the local runner executes them, the Argo renderer draws them."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from pipelines.errors import PipelineError
from pipelines.orchestration.context import StepContext
from pipelines.orchestration.fanout import SHARDS_STEP
from pipelines.orchestration.steps import (
    evaluate_step,
    features_step,
    fetch_step,
    gate_step,
    monitor_step,
    package_step,
    register_step,
    shards_step,
    train_step,
    validate_step,
)

RUN_PARAMETERS = ("source", "symbols", "interval", "start", "end")
"""Options every step command takes; a run stores them once and later steps must agree."""


@dataclass(frozen=True)
class Resources:
    """Kubernetes requests and limits of a step's container."""

    cpu: str = "500m"
    memory: str = "1Gi"
    cpu_limit: str = "1"
    memory_limit: str = "2Gi"


@dataclass(frozen=True)
class Step:
    """One node of a pipeline DAG: the same definition drives both executors."""

    name: str
    run: Callable[[StepContext], BaseModel] = field(compare=False)
    """The step function: its typed result is stored as the step's part of the run summary."""
    needs: tuple[str, ...] = ()
    retries: int = 0
    """Extra attempts after a failure (steps are idempotent, so a retry is safe)."""
    timeout_seconds: int = 3600
    resources: Resources = Resources()
    fan_out: bool = False
    """The step runs once per shard of the run (`pipelines.orchestration.fanout`): in parallel
    processes locally, as Argo ``withParam`` pods on the cluster."""
    output: str | None = None
    """A field of the step's result published as its Argo output parameter (``--output-file``)."""
    pushes_gitops: bool = False
    """The step commits to the GitOps repository (promotion, rollback): on the cluster it gets
    the push credentials mounted from a Secret; no other step sees them."""
    doc: str = field(default="", compare=False)


@dataclass(frozen=True)
class Pipeline:
    """A named DAG of steps."""

    name: str
    steps: tuple[Step, ...]
    doc: str = ""
    trains: bool = False
    """It trains models: an env that does not (``MLOPS_TRAINS=false``) gets it suspended."""


def step_command(
    pipeline: str,
    step: str,
    run_id: str,
    params: Mapping[str, str],
    shard: str | None = None,
    output_file: str | None = None,
) -> list[str]:
    """The exact command that runs `step` of run `run_id` — locally and in an Argo container."""
    command = ["mlops", "step", step, "--pipeline", pipeline, "--run-id", run_id]
    for name in RUN_PARAMETERS:
        command += [f"--{name}", params[name]]
    if shard is not None:
        command += ["--shard", shard]
    if output_file is not None:
        command += ["--output-file", output_file]
    return command


def _shards() -> Step:
    return Step(
        SHARDS_STEP,
        shards_step,
        retries=1,
        timeout_seconds=300,
        resources=Resources("100m", "256Mi", "500m", "512Mi"),
        output="shards",
        doc="the run's shards: one per symbol (per symbol and month for long runs)",
    )


def training_pipeline() -> Pipeline:
    """fetch → validate → features → train → evaluate → register → package → gate."""
    return Pipeline(
        "training",
        (
            _shards(),
            Step(
                "fetch",
                fetch_step,
                needs=(SHARDS_STEP,),
                fan_out=True,
                retries=2,
                timeout_seconds=1800,
                resources=Resources("250m", "512Mi", "1", "1Gi"),
                doc="download and verify daily kline zips",
            ),
            Step(
                "validate",
                validate_step,
                needs=("fetch",),
                fan_out=True,
                retries=1,
                resources=Resources("1", "1Gi", "2", "2Gi"),
                doc="check rows, quarantine rejects, write curated Parquet",
            ),
            Step(
                "features",
                features_step,
                needs=("validate",),
                retries=1,
                resources=Resources("1", "2Gi", "2", "4Gi"),
                doc="content-addressed model-ready dataset",
            ),
            Step(
                "train",
                train_step,
                needs=("features",),
                retries=1,
                timeout_seconds=5400,
                resources=Resources("2", "4Gi", "4", "8Gi"),
                doc="walk-forward CV, final fit, MLflow run and logged model",
            ),
            Step(
                "evaluate",
                evaluate_step,
                needs=("train",),
                retries=1,
                resources=Resources("1", "2Gi", "2", "4Gi"),
                doc="metrics on the latest out-of-sample window",
            ),
            Step(
                "register",
                register_step,
                needs=("evaluate",),
                retries=2,
                timeout_seconds=600,
                resources=Resources("250m", "512Mi", "500m", "1Gi"),
                doc="registry version with alias challenger",
            ),
            Step(
                "package",
                package_step,
                needs=("register",),
                retries=1,
                timeout_seconds=1200,
                resources=Resources("500m", "1Gi", "1", "2Gi"),
                doc="Bento of the new version, exported to storage",
            ),
            Step(
                "gate",
                gate_step,
                needs=("package",),
                retries=1,
                timeout_seconds=1200,
                resources=Resources("1", "2Gi", "2", "4Gi"),
                pushes_gitops=True,
                doc="challenger vs champion + drift: promote (aliases + GitOps) or reject",
            ),
        ),
        doc="daily: from the archive to a registered challenger",
        trains=True,
    )


def monitor_pipeline() -> Pipeline:
    """Hourly: fresh klines curated, then the champion judged on live evidence."""
    return Pipeline(
        "monitor",
        (
            _shards(),
            Step(
                "fetch",
                fetch_step,
                needs=(SHARDS_STEP,),
                fan_out=True,
                retries=2,
                timeout_seconds=900,
                resources=Resources("250m", "512Mi", "1", "1Gi"),
                doc="download and verify the latest daily kline zips",
            ),
            Step(
                "validate",
                validate_step,
                needs=("fetch",),
                fan_out=True,
                retries=1,
                timeout_seconds=900,
                resources=Resources("500m", "1Gi", "1", "2Gi"),
                doc="curate them (realized outcomes for live quality)",
            ),
            Step(
                "monitor",
                monitor_step,
                needs=("validate",),
                retries=1,
                timeout_seconds=900,
                resources=Resources("500m", "1Gi", "1", "2Gi"),
                pushes_gitops=True,
                doc="live quality and drift of the champion; rollback after N bad windows",
            ),
        ),
        doc="hourly: fresh curated klines for live monitoring",
    )


PIPELINES: dict[str, Callable[[], Pipeline]] = {
    "training": training_pipeline,
    "monitor": monitor_pipeline,
}


def get_pipeline(name: str) -> Pipeline:
    """A pipeline by name.

    Raises:
        PipelineError: for an unknown name.
    """
    if name not in PIPELINES:
        raise PipelineError(f"unknown pipeline {name!r}", f"choose one of {', '.join(PIPELINES)}")
    return PIPELINES[name]()


def lint(steps: Sequence[Step]) -> list[Step]:
    """The steps in a valid execution order.

    Raises:
        PipelineError: on a duplicate name, an unknown dependency or a cycle.
    """
    by_name: dict[str, Step] = {}
    for step in steps:
        if step.name in by_name:
            raise PipelineError(f"duplicate step name {step.name!r}")
        by_name[step.name] = step
    for step in steps:
        unknown = [n for n in step.needs if n not in by_name]
        if unknown:
            raise PipelineError(f"step {step.name!r} needs unknown step(s) {unknown}")
    ordered: list[Step] = []
    state: dict[str, int] = {}  # 1 = visiting, 2 = done

    def visit(step: Step, trail: tuple[str, ...]) -> None:
        if state.get(step.name) == 2:
            return
        if state.get(step.name) == 1:
            raise PipelineError(f"dependency cycle: {' -> '.join((*trail, step.name))}")
        state[step.name] = 1
        for need in step.needs:
            visit(by_name[need], (*trail, step.name))
        state[step.name] = 2
        ordered.append(step)

    for step in steps:
        visit(step, ())
    for step in ordered:
        if step.fan_out and SHARDS_STEP not in _ancestors(by_name, step):
            raise PipelineError(
                f"fan-out step {step.name!r} does not depend on the {SHARDS_STEP!r} step",
                "add it to the step's needs (directly or through another step)",
            )
    return ordered


def _ancestors(by_name: Mapping[str, Step], step: Step) -> set[str]:
    found: set[str] = set()
    stack = list(step.needs)
    while stack:
        name = stack.pop()
        if name not in found:
            found.add(name)
            stack.extend(by_name[name].needs)
    return found


def upstream(steps: Sequence[Step], target: str) -> list[Step]:
    """`target` and everything it depends on, in execution order.

    Raises:
        PipelineError: if `target` is not a step of the pipeline.
    """
    ordered = lint(steps)
    names = {s.name for s in ordered}
    if target not in names:
        raise PipelineError(f"unknown step {target!r}", f"choose one of {', '.join(sorted(names))}")
    by_name = {s.name: s for s in ordered}
    wanted: set[str] = set()
    stack = [target]
    while stack:
        name = stack.pop()
        if name not in wanted:
            wanted.add(name)
            stack.extend(by_name[name].needs)
    return [s for s in ordered if s.name in wanted]


def plan(pipeline: Pipeline, run_id: str, params: Mapping[str, str]) -> dict[str, Any]:
    """The DAG as data: steps, dependencies and the exact command of each (``--plan``)."""
    return {
        "pipeline": pipeline.name,
        "run_id": run_id,
        "steps": [
            {
                "name": step.name,
                "needs": list(step.needs),
                "command": step_command(
                    pipeline.name,
                    step.name,
                    run_id,
                    params,
                    shard="SHARD" if step.fan_out else None,
                ),
                "fan_out": step.fan_out,
                "retries": step.retries,
                "timeout_seconds": step.timeout_seconds,
                "resources": step.resources.__dict__,
            }
            for step in lint(pipeline.steps)
        ],
    }
