"""The pipelines, defined once: the local runner executes them, the Argo renderer draws them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pipelines.context import StepContext
from pipelines.errors import PipelineError
from pipelines.steps import (
    evaluate_step,
    features_step,
    fetch_step,
    register_step,
    train_step,
    validate_step,
)


@dataclass(frozen=True)
class Step:
    """One node of a pipeline DAG."""

    name: str
    run: Callable[[StepContext], dict[str, Any]]
    needs: tuple[str, ...] = ()
    retries: int = 0
    """Extra attempts on failure (the step itself is idempotent)."""
    timeout_seconds: int = 3600
    cpu: str = "500m"
    memory: str = "1Gi"
    doc: str = field(default="", compare=False)


def training_pipeline() -> list[Step]:
    """fetch → validate → features → train → evaluate → register (package and gate: later)."""
    return [
        Step(
            "fetch",
            fetch_step,
            retries=2,
            timeout_seconds=1800,
            cpu="500m",
            memory="512Mi",
            doc="download and verify daily kline zips",
        ),
        Step(
            "validate",
            validate_step,
            needs=("fetch",),
            retries=1,
            cpu="1",
            memory="2Gi",
            doc="check rows, quarantine rejects, write curated Parquet",
        ),
        Step(
            "features",
            features_step,
            needs=("validate",),
            retries=1,
            cpu="1",
            memory="2Gi",
            doc="content-addressed model-ready dataset",
        ),
        Step(
            "train",
            train_step,
            needs=("features",),
            retries=1,
            cpu="2",
            memory="4Gi",
            doc="walk-forward CV, final fit, MLflow run and logged model",
        ),
        Step(
            "evaluate",
            evaluate_step,
            needs=("train",),
            retries=1,
            cpu="1",
            memory="2Gi",
            doc="metrics on the latest out-of-sample window",
        ),
        Step(
            "register",
            register_step,
            needs=("evaluate",),
            retries=2,
            cpu="250m",
            memory="512Mi",
            doc="registry version with alias challenger",
        ),
    ]


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
    return ordered


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
