"""``mlops backfill``: history fetched and curated in bounded chunks of ordinary runs."""

from __future__ import annotations

import contextlib
import sys
from typing import Annotated

import typer

from pipelines.cli.common import IntervalOpt, JsonFlag, SymbolsOpt, load_settings
from pipelines.cli.console import err, out, print_json, progress_bars


def backfill(
    start: Annotated[str, typer.Option(help="First day of the history (YYYY-MM-DD).")],
    end: Annotated[str, typer.Option(help="Last day of the history (YYYY-MM-DD).")],
    symbols: SymbolsOpt = None,
    interval: IntervalOpt = None,
    source: Annotated[str | None, typer.Option(help="Archive root. (env MLOPS_SOURCE_URL)")] = None,
    chunk_days: Annotated[
        int, typer.Option(min=1, max=3660, help="Days per run; each run fans out per symbol.")
    ] = 31,
    json_out: JsonFlag = False,
) -> None:
    """Fetch and curate history in chunks: one run up to validate per CHUNK_DAYS days.

    Unlike one long `mlops run`, a failure costs one chunk, each run's memory is bounded by its
    chunk, nothing is trained, and running it again resumes (verified zips and curated days are
    kept)."""
    from pipelines.orchestration.backfill import Chunk
    from pipelines.orchestration.backfill import backfill as run_backfill
    from pipelines.orchestration.runs import parse_day

    first, last = parse_day(start, "--start"), parse_day(end, "--end")
    assert first is not None and last is not None  # both options are required
    options = {"source": source, "symbols": symbols, "interval": interval}

    def report(step: str, event: str) -> None:
        err.print(f"[dim]{step}: {event}[/]")

    def done(chunk: Chunk) -> None:
        err.print(f"{chunk.start}..{chunk.end}: {chunk.status} ({chunk.run_id})")

    with progress_bars() as bars, contextlib.redirect_stdout(sys.stderr):
        result = run_backfill(
            load_settings(), options, first, last, chunk_days, report, done, progress=bars
        )
    if json_out:
        print_json(result.model_dump(mode="json"))
    else:
        out.print(
            f"backfill {result.status}: {len(result.chunks)} chunk(s), "
            f"{result.files_downloaded} files downloaded, {result.rows_valid} rows curated"
        )
    if result.status != "succeeded":
        failed = next(c for c in result.chunks if c.status == "failed")
        err.print(f"[red]error:[/] {failed.error}\n  continue with: {result.resume}")
        raise typer.Exit(1)
