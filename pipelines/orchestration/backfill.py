"""Backfill: history curated in bounded chunks, each an ordinary run up to ``validate``.

A backfill differs from one long ``mlops run`` in four ways: each chunk is its own run (its own
run id, parameters and results), so a failure costs one chunk, not the history; memory and time
per run stay bounded by the chunk, not by the history's length; nothing is trained (a model per
chunk would be meaningless — the next daily run trains on what the backfill curated); and a
re-run skips what is already there (fetch keeps verified zips, validate keeps curated days from
the same zip), so running it again after a failure resumes where it stopped.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

from pydantic import BaseModel

from pipelines.errors import PipelineError
from pipelines.orchestration.dag import get_pipeline
from pipelines.orchestration.runner import Reporter, run_pipeline
from pipelines.orchestration.runs import Options, open_run
from pipelines.settings import Settings

LAST_STEP = "validate"
"""A backfill's chunks stop here: curated history, no model."""


class Chunk(BaseModel):
    """One run of a backfill."""

    start: date
    end: date
    run_id: str | None = None
    status: str = "not run"
    seconds: float | None = None
    error: str | None = None


class BackfillResult(BaseModel):
    """What ``mlops backfill --json`` prints."""

    status: str
    chunks: list[Chunk]
    rows_valid: int = 0
    files_downloaded: int = 0
    resume: str | None = None
    """The command that continues a failed backfill."""


def chunks(start: date, end: date, days: int) -> list[Chunk]:
    """Consecutive ranges of at most `days` days covering start..end.

    Raises:
        PipelineError: when `end` is before `start` or `days` is not positive.
    """
    if end < start:
        raise PipelineError(f"--end {end} is before --start {start}", "fix the dates")
    if days < 1:
        raise PipelineError(f"--chunk-days {days} must be at least 1")
    out, first = [], start
    while first <= end:
        last = min(end, first + timedelta(days=days - 1))
        out.append(Chunk(start=first, end=last))
        first = last + timedelta(days=1)
    return out


def backfill(
    settings: Settings,
    options: Options,
    start: date,
    end: date,
    chunk_days: int,
    report: Reporter,
    on_chunk: Callable[[Chunk], None] | None = None,
    progress: Any = None,
) -> BackfillResult:
    """Run the training pipeline up to `LAST_STEP` over each chunk in order; stop at the
    first chunk that fails (later chunks are listed as not run)."""
    plan = chunks(start, end, chunk_days)
    steps = get_pipeline("training").steps
    result = BackfillResult(status="succeeded", chunks=plan)
    for chunk in plan:
        ctx = open_run(
            settings,
            None,
            {**options, "start": chunk.start.isoformat(), "end": chunk.end.isoformat()},
        )
        if progress is not None:
            ctx.progress = progress
        summary = run_pipeline(ctx, steps, until=LAST_STEP, report=report)
        chunk.run_id, chunk.status, chunk.seconds = (
            ctx.run_id,
            summary["status"],
            summary["seconds"],
        )
        validated = summary["steps"].get("validate", {})
        result.rows_valid += int(validated.get("rows_valid", 0))
        result.files_downloaded += int(summary["steps"].get("fetch", {}).get("files_downloaded", 0))
        if on_chunk is not None:
            on_chunk(chunk)
        if summary["status"] != "succeeded":
            chunk.error = summary.get("error")
            result.status = "failed"
            result.resume = (
                f"mlops backfill --start {chunk.start} --end {end} --chunk-days {chunk_days}"
                " (with the same --symbols, --interval and --source)"
            )
            break
    return result
