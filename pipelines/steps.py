"""Step functions: adapt a `StepContext` to each lifecycle stage's typed function."""

from __future__ import annotations

from typing import Any

from pipelines.context import StepContext
from pipelines.fetch import fetch
from pipelines.validate import validate


def fetch_step(ctx: StepContext) -> dict[str, Any]:
    """Download and verify the run's archive files into ``raw/``."""
    p = ctx.params
    days = (p.end - p.start).days + 1
    advance = ctx.progress("fetch", len(p.symbols) * max(days, 0))
    result = fetch(
        ctx.settings, ctx.storage, p.source, p.symbols, p.interval, p.start, p.end, on_file=advance
    )
    return result.model_dump()


def validate_step(ctx: StepContext) -> dict[str, Any]:
    """Check every row of the run's raw files; quarantine rejects; write curated Parquet."""
    p = ctx.params
    result = validate(
        ctx.storage,
        p.symbols,
        p.interval,
        p.start,
        p.end,
        ctx.settings.quarantine_max_share,
        progress=ctx.progress,
    )
    return result.model_dump()
