"""The local executor: runs a pipeline's steps in-process, in dependency order."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from typing import Any

from pipelines import keys
from pipelines.context import StepContext
from pipelines.dag import Step, lint, upstream
from pipelines.errors import PipelineError

Reporter = Callable[[str, str], None]
"""Called with (step name, event) where event is started/succeeded/failed/resumed."""


def _silent(step: str, event: str) -> None:
    return None


def save_params(ctx: StepContext) -> None:
    """Record the run's parameters once, so later steps and resumes use the same ones."""
    ctx.storage.write_bytes(
        keys.run_params(ctx.run_id), ctx.params.model_dump_json(indent=2).encode()
    )


def stored_result(ctx: StepContext, step: str) -> dict[str, Any] | None:
    """The recorded result of `step` in this run, or None."""
    try:
        return ctx.result_of(step)
    except FileNotFoundError:
        return None


def run_step(ctx: StepContext, step: Step) -> dict[str, Any]:
    """Run one step (retrying unexpected failures), record and return its result.

    A `PipelineError` is a verdict about the inputs, so it is not retried.
    """
    started = time.monotonic()
    attempt = 0
    while True:
        try:
            result = step.run(ctx)
            break
        except PipelineError as error:
            _record(ctx, step.name, {"status": "failed", "error": str(error)}, started)
            raise
        except Exception as error:
            attempt += 1
            if attempt > step.retries:
                message = f"{type(error).__name__}: {error}"
                _record(ctx, step.name, {"status": "failed", "error": message}, started)
                raise PipelineError(f"step {step.name} failed: {message}") from error
            time.sleep(min(2.0**attempt, 30.0))
    return _record(ctx, step.name, {"status": "succeeded", **result}, started)


def _record(ctx: StepContext, name: str, body: dict[str, Any], started: float) -> dict[str, Any]:
    body["seconds"] = round(time.monotonic() - started, 3)
    body["attempt_run_id"] = ctx.run_id
    ctx.storage.write_bytes(keys.step_result(ctx.run_id, name), json.dumps(body, indent=2).encode())
    return body


def run_pipeline(
    ctx: StepContext,
    steps: Sequence[Step],
    until: str | None = None,
    resume: bool = False,
    report: Reporter = _silent,
) -> dict[str, Any]:
    """Run `steps` (up to and including `until`) and return the run summary.

    With `resume`, steps that already succeeded in this run are kept, not re-run. On failure
    the summary holds ``status: failed``, the error, the failed step and the resume command.
    """
    plan = upstream(steps, until) if until else lint(steps)
    save_params(ctx)
    summary: dict[str, Any] = {
        "run_id": ctx.run_id,
        "status": "running",
        "params": json.loads(ctx.params.model_dump_json()),
        "storage": ctx.storage.url,
        "steps": {},
    }
    started = time.monotonic()
    for step in plan:
        previous = stored_result(ctx, step.name) if resume else None
        if previous and previous.get("status") == "succeeded":
            summary["steps"][step.name] = {**previous, "resumed": True}
            report(step.name, "resumed")
            continue
        report(step.name, "started")
        try:
            summary["steps"][step.name] = run_step(ctx, step)
        except PipelineError as error:
            report(step.name, "failed")
            summary["steps"][step.name] = stored_result(ctx, step.name) or {"status": "failed"}
            summary.update(
                status="failed",
                failed_step=step.name,
                error=str(error),
                resume=f"mlops run --resume {ctx.run_id}",
            )
            break
        report(step.name, "succeeded")
    else:
        summary["status"] = "succeeded"
    summary["seconds"] = round(time.monotonic() - started, 3)
    return summary
