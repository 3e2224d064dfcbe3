"""The local executor: runs a pipeline's steps in-process, in dependency order.

Independent steps run in parallel (bounded threads), and a fan-out step's shards on a bounded
pool of processes (``MLOPS_FAN_OUT_WORKERS``); failures other than a `PipelineError` (a verdict
about the inputs) are retried with exponential backoff; every step's result is recorded in
storage with a digest of its inputs, so ``--resume`` skips exactly the steps that already
succeeded on the same inputs and re-runs from the first one that did not.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import multiprocessing
import time
from collections.abc import Callable, Sequence
from concurrent.futures import (
    FIRST_COMPLETED,
    Future,
    ProcessPoolExecutor,
    ThreadPoolExecutor,
    as_completed,
    wait,
)
from dataclasses import replace
from typing import Any

from pipelines import layout, logs
from pipelines.errors import PipelineError
from pipelines.orchestration import telemetry
from pipelines.orchestration.context import StepContext
from pipelines.orchestration.dag import Step, lint, upstream
from pipelines.orchestration.fanout import (
    SHARDS_STEP,
    Shard,
    fan_in,
    narrowed,
    planned,
    shard_result,
)
from pipelines.orchestration.memory import release_free_memory
from pipelines.progress import no_progress

Reporter = Callable[[str, str], None]
"""Called with (step name, event): started/succeeded/failed/resumed/retrying."""

VOLATILE = ("seconds", "attempts", "inputs_digest", "resumed", "status")

log = logging.getLogger(__name__)


def _silent(step: str, event: str) -> None:
    return None


def save_params(ctx: StepContext) -> None:
    """Record the run's parameters once, so later steps and resumes use the same ones."""
    ctx.storage.write_bytes(
        layout.run_params(ctx.run_id), ctx.params.model_dump_json(indent=2).encode()
    )


def stored_result(ctx: StepContext, step: str) -> dict[str, Any] | None:
    """The recorded result of `step` in this run, or None. A fan-out step whose merged result
    is not recorded yet (on the cluster nobody writes it) is the fan-in of its shards."""
    try:
        return ctx.result_of(step)
    except FileNotFoundError:
        planned_key = layout.step_result(ctx.run_id, SHARDS_STEP)
        if step == SHARDS_STEP or not ctx.storage.exists(planned_key):
            return None
        return fan_in(ctx, step)


def inputs_digest(ctx: StepContext, step: Step) -> str:
    """A digest of what `step` consumes: the run parameters and its dependencies' results."""
    upstream_results = {}
    for need in step.needs:
        result = stored_result(ctx, need) or {}
        upstream_results[need] = {k: v for k, v in result.items() if k not in VOLATILE}
    document = {"params": ctx.params.model_dump(mode="json"), "needs": upstream_results}
    return hashlib.sha256(json.dumps(document, sort_keys=True, default=str).encode()).hexdigest()[
        :16
    ]


def run_step(
    ctx: StepContext, step: Step, report: Reporter = _silent, shard: Shard | None = None
) -> dict[str, Any]:
    """Run one step — or one `shard` of a fan-out step — retrying unexpected failures with
    backoff; record and return its result.

    Raises:
        PipelineError: naming the step and the cause, once retries are exhausted.
    """
    if shard is not None:
        ctx = narrowed(ctx, shard)
    key = (
        layout.shard_result(ctx.run_id, step.name, shard.key)
        if shard
        else layout.step_result(ctx.run_id, step.name)
    )
    label = f"{step.name} {shard}" if shard else step.name
    with logs.bound(**_log_fields(ctx, step.name, shard)):
        log.info("step %s started", label, extra={"event": "step_started"})
        return _attempts(ctx, step, key, label, None if shard else step.name, report)


def _log_fields(ctx: StepContext, step: str, shard: Shard | None) -> dict[str, Any]:
    """What every log line of a step says it belongs to (the model version once registered)."""
    registered = (stored_result(ctx, "register") or {}).get("version")
    return {
        "run_id": ctx.run_id,
        "pipeline": ctx.pipeline or None,
        "step": step,
        "shard": shard,
        "model_version": registered,
    }


def _attempts(
    ctx: StepContext, step: Step, key: str, label: str, whole: str | None, report: Reporter
) -> dict[str, Any]:
    """`run_step`'s attempts; `whole` is None for a shard (counted with its step's merge)."""
    started = time.monotonic()
    digest = inputs_digest(ctx, step)
    attempt = 0
    while True:
        attempt += 1
        try:
            result = step.run(ctx)
            release_free_memory()
            break
        except PipelineError as error:
            failed = {"status": "failed", "error": str(error)}
            _record(ctx, key, failed, started, attempt, digest, whole)
            log.error("step %s failed: %s", label, error, extra={"event": "step_failed"})
            raise
        except Exception as error:
            message = f"{type(error).__name__}: {error}"
            if attempt > step.retries:
                failed = {"status": "failed", "error": message}
                _record(ctx, key, failed, started, attempt, digest, whole)
                log.error(
                    "step %s failed after %d attempt(s)",
                    label,
                    attempt,
                    exc_info=error,
                    extra={"event": "step_failed", "attempts": attempt},
                )
                raise PipelineError(
                    f"step {label} failed after {attempt} attempt(s): {message}"
                ) from error
            log.warning(
                "step %s attempt %d failed, retrying: %s",
                label,
                attempt,
                message,
                extra={"event": "step_retrying", "attempt": attempt},
            )
            report(label, "retrying")
            time.sleep(min(ctx.settings.step_retry_backoff * 2 ** (attempt - 1), 60.0))
    body = {"status": "succeeded", **result.model_dump(mode="json")}
    recorded = _record(ctx, key, body, started, attempt, digest, whole)
    version = body.get("version") if step.name == "register" else None
    log.info(
        "step %s succeeded in %.3f s",
        label,
        recorded["seconds"],
        extra={
            "event": "step_succeeded",
            "seconds": recorded["seconds"],
            "attempts": attempt,
            "model_version": version,
        },
    )
    return recorded


def _record(
    ctx: StepContext,
    key: str,
    body: dict[str, Any],
    started: float,
    attempts: int,
    digest: str,
    step: str | None = None,
) -> dict[str, Any]:
    """Store a result at `key`; a step's (not a shard's) also goes to the metrics."""
    body.update(
        seconds=round(time.monotonic() - started, 3), attempts=attempts, inputs_digest=digest
    )
    ctx.storage.write_bytes(key, json.dumps(body, indent=2).encode())
    if step is not None:
        telemetry.step_recorded(ctx, step, body)
    return body


def _shard_done(ctx: StepContext, step: Step, shard: Shard) -> bool:
    previous = shard_result(ctx, step.name, shard)
    return bool(
        previous
        and previous.get("status") == "succeeded"
        and previous.get("inputs_digest") == inputs_digest(narrowed(ctx, shard), step)
    )


def run_fan_out(
    ctx: StepContext, step: Step, report: Reporter = _silent, resume: bool = False
) -> dict[str, Any]:
    """Run every shard of a fan-out step (with `resume`, only those that did not succeed on
    the same inputs) on a bounded pool of processes, then record the merged result.

    Raises:
        PipelineError: naming how many shards failed and the first failure.
    """
    started = time.monotonic()
    shards = planned(ctx)
    with logs.bound(**_log_fields(ctx, step.name, None)):
        log.info("step %s started", step.name, extra={"event": "step_started"})
    todo = [s for s in shards if not (resume and _shard_done(ctx, step, s))]
    advance = ctx.progress(step.name, len(shards))
    for _ in range(len(shards) - len(todo)):
        advance()
    workers = min(ctx.settings.fan_out_workers, len(todo))
    if workers <= 1:
        for shard in todo:
            with contextlib.suppress(PipelineError):  # recorded; the fan-in reports it
                run_step(ctx, step, report, shard)
            advance()
    else:
        # spawn, not fork: the runner has threads; each worker re-opens storage itself
        quiet = replace(ctx, progress=no_progress)
        spawn = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(
            max_workers=workers, mp_context=spawn, initializer=logs.configure
        ) as pool:
            futures = [pool.submit(run_step, quiet, step, _silent, s) for s in todo]
            for future in as_completed(futures):
                with contextlib.suppress(PipelineError):
                    future.result()  # a crashed worker raises here: its shards stay missing
                advance()
    merged = fan_in(ctx, step.name) or {"status": "failed", "error": "no shard ran"}
    attempts = int(merged.pop("attempts", 1))
    body = _record(
        ctx,
        layout.step_result(ctx.run_id, step.name),
        merged,
        started,
        attempts,
        inputs_digest(ctx, step),
        step.name,
    )
    with logs.bound(**_log_fields(ctx, step.name, None)):
        if body["status"] != "succeeded":
            log.error(
                "step %s failed: %s", step.name, body["error"], extra={"event": "step_failed"}
            )
            raise PipelineError(f"step {step.name}: {body['error']}")
        log.info(
            "step %s succeeded in %.3f s (%d shards)",
            step.name,
            body["seconds"],
            len(shards),
            extra={"event": "step_succeeded", "seconds": body["seconds"]},
        )
    return body


def run_pipeline(
    ctx: StepContext,
    steps: Sequence[Step],
    until: str | None = None,
    resume: bool = False,
    report: Reporter = _silent,
    parallel: int = 2,
) -> dict[str, Any]:
    """Run `steps` (up to and including `until`) and return the run summary.

    With `resume`, a step whose recorded result succeeded on the same inputs is kept, not
    re-run. On failure the summary holds ``status: failed``, the failed step, the error and the
    command that resumes the run; steps that could not start are listed as ``not_run``.
    """
    with logs.bound(run_id=ctx.run_id, pipeline=ctx.pipeline or None):
        log.info("run %s started", ctx.run_id, extra={"event": "run_started"})
        summary = _run_pipeline(ctx, steps, until, resume, report, parallel)
        level = logging.INFO if summary["status"] == "succeeded" else logging.ERROR
        log.log(
            level,
            "run %s %s in %.3f s",
            ctx.run_id,
            summary["status"],
            summary["seconds"],
            extra={
                "event": "run_finished",
                "status": summary["status"],
                "seconds": summary["seconds"],
                **({"failed_step": summary["failed_step"]} if "failed_step" in summary else {}),
            },
        )
    return summary


def _run_pipeline(
    ctx: StepContext,
    steps: Sequence[Step],
    until: str | None,
    resume: bool,
    report: Reporter,
    parallel: int,
) -> dict[str, Any]:
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
    done: set[str] = set()
    failed: list[tuple[str, PipelineError]] = []
    pending = list(plan)
    running: dict[Future[dict[str, Any]], Step] = {}
    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        while pending or running:
            if not failed:
                for step in [s for s in pending if all(n in done for n in s.needs)]:
                    pending.remove(step)
                    previous = stored_result(ctx, step.name) if resume else None
                    if (
                        previous
                        and previous.get("status") == "succeeded"
                        and previous.get("inputs_digest") == inputs_digest(ctx, step)
                    ):
                        summary["steps"][step.name] = {**previous, "resumed": True}
                        done.add(step.name)
                        log.info(
                            "step %s kept from an earlier attempt",
                            step.name,
                            extra={"event": "step_resumed", "step": step.name},
                        )
                        report(step.name, "resumed")
                        continue
                    report(step.name, "started")
                    if step.fan_out:
                        running[pool.submit(run_fan_out, ctx, step, report, resume)] = step
                    else:
                        running[pool.submit(run_step, ctx, step, report)] = step
                if not running and pending and not failed:
                    continue  # resumed steps unlocked others: schedule again
            if not running:
                break
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                step = running.pop(future)
                try:
                    summary["steps"][step.name] = future.result()
                    done.add(step.name)
                    report(step.name, "succeeded")
                except PipelineError as error:
                    summary["steps"][step.name] = stored_result(ctx, step.name) or {
                        "status": "failed"
                    }
                    failed.append((step.name, error))
                    report(step.name, "failed")
    if failed:
        name, first_error = failed[0]
        summary.update(
            status="failed",
            failed_step=name,
            error=str(first_error),
            resume=f"mlops run --resume {ctx.run_id}",
            not_run=[s.name for s in pending],
        )
    else:
        summary["status"] = "succeeded"
    summary["seconds"] = round(time.monotonic() - started, 3)
    return summary
