"""``mlops run``, ``mlops step`` and ``mlops quickstart``: the DAG, in-process."""

from __future__ import annotations

import contextlib
import logging
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer

from pipelines import logs
from pipelines.cli.common import IntervalOpt, JsonFlag, PipelineOpt, SymbolsOpt, load_settings
from pipelines.cli.console import err, out, print_json, progress_bars
from pipelines.errors import PipelineError


def build_context(
    run_id: str | None,
    source: str | None,
    symbols: str | None,
    interval: str | None,
    start: str | None,
    end: str | None,
    resume: bool = False,
) -> Any:
    """The run's context: stored parameters when it exists, else options over settings."""
    from pipelines.orchestration.runs import open_run

    options = {
        "source": source,
        "symbols": symbols,
        "interval": interval,
        "start": start,
        "end": end,
    }
    return open_run(load_settings(), run_id, options, resume=resume)


FIGURES: dict[str, tuple[str, ...]] = {
    "shards": ("count", "by_month"),
    "fetch": ("files_downloaded", "files_skipped", "files_missing", "retries"),
    "validate": ("rows_valid", "rows_quarantined", "rows_duplicate", "missing_bars"),
    "features": ("rows", "dataset_hash", "reused"),
    "train": ("train_rows", "mlflow_run_id"),
    "evaluate": (
        "metrics.roc_auc",
        "metrics.log_loss",
        "metrics.accuracy",
        "metrics.strategy_return",
    ),
    "register": ("version", "aliases"),
    "package": ("bento", "built"),
    "gate": ("decision", "record"),
    "monitor": ("decision", "record"),
}
"""What the human-readable summary shows of each step (``--json`` has everything)."""


def _figure(step: dict[str, Any], key: str) -> str | None:
    value: Any = step
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    name = key.split(".")[-1]
    if isinstance(value, float):
        return f"{name}={value:.4f}"
    if isinstance(value, list):
        return (
            f"{name}={len(value)}"
            if name == "files_missing"
            else f"{name}={','.join(map(str, value))}"
        )
    return f"{name}={value}"


def show_summary(summary: dict[str, Any]) -> None:
    """A human-readable run summary on stdout."""
    from rich.table import Table

    table = Table(title=f"{summary['run_id']} — {summary['status']}")
    for column in ("step", "status", "seconds", "figures"):
        table.add_column(column)
    for name, step in summary["steps"].items():
        shown = (_figure(step, key) for key in FIGURES.get(name, ()))
        figures = ", ".join(f for f in shown if f)
        status = step.get("status", "?") + (" (resumed)" if step.get("resumed") else "")
        table.add_row(name, status, str(step.get("seconds", "")), figures)
    out.print(table)


def execute(ctx: Any, pipeline: str, until: str | None, resume: bool, json_out: bool) -> None:
    """Run a pipeline with progress bars; print the summary; exit 1 on failure."""
    from pipelines.orchestration import telemetry
    from pipelines.orchestration.dag import get_pipeline
    from pipelines.orchestration.runner import run_pipeline

    structured = logs.json_enabled()

    def report(step: str, event: str) -> None:
        if not structured:  # the runner's log lines say it otherwise
            err.print(f"[dim]{step}: {event}[/]")

    steps = get_pipeline(pipeline).steps
    ctx.pipeline = pipeline
    with progress_bars() as bars, library_output():
        ctx.progress = bars
        summary = run_pipeline(ctx, steps, until=until, resume=resume, report=report)
    summary["pipeline"] = pipeline
    telemetry.run_recorded(ctx, pipeline, summary)
    if json_out:
        print_json(summary)
    else:
        show_summary(summary)
    if summary["status"] != "succeeded":
        err.print(f"[red]error:[/] {summary['error']}\n  resume with: {summary['resume']}")
        raise typer.Exit(1)


def library_output() -> contextlib.AbstractContextManager[Any]:
    """Where libraries that print go: never stdout, which carries only our result (one JSON
    document); to stderr on a terminal, as log lines where the process logs JSON (the log
    handler keeps the stderr it was given)."""
    if logs.json_enabled():  # what they print to stderr too (MLflow's registry messages)
        lines = logs.LineWriter(logging.getLogger("pipelines.output"))
        both = contextlib.ExitStack()
        both.enter_context(contextlib.redirect_stdout(lines))
        both.enter_context(contextlib.redirect_stderr(lines))
        return both
    return contextlib.redirect_stdout(sys.stderr)


def run(
    source: Annotated[
        str | None,
        typer.Option(help="Archive root: https://, http:// or file://. (env MLOPS_SOURCE_URL)"),
    ] = None,
    symbols: SymbolsOpt = None,
    interval: IntervalOpt = None,
    start: Annotated[
        str | None,
        typer.Option(help="First day (YYYY-MM-DD). Default: MLOPS_LOOKBACK_DAYS before --end."),
    ] = None,
    end: Annotated[
        str | None, typer.Option(help="Last day (YYYY-MM-DD). Default: yesterday, UTC.")
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="Stop after this step (and what it needs).")
    ] = None,
    resume: Annotated[
        str | None,
        typer.Option(
            help="Resume RUN_ID: keep steps that succeeded on the same inputs, re-run the rest."
        ),
    ] = None,
    pipeline: PipelineOpt = "training",
    plan_only: Annotated[
        bool, typer.Option("--plan", help="Print the DAG and each step's command; run nothing.")
    ] = False,
    json_out: JsonFlag = False,
) -> None:
    """Run a pipeline's DAG locally, in-process (default: training)."""
    from pipelines.orchestration.dag import get_pipeline, plan

    ctx = build_context(resume, source, symbols, interval, start, end, resume=resume is not None)
    if plan_only:
        params = ctx.params.model_dump(mode="json")
        document = plan(
            get_pipeline(pipeline), ctx.run_id, {**params, "symbols": ",".join(ctx.params.symbols)}
        )
        if json_out:
            print_json(document)
        else:
            for item in document["steps"]:
                needs = f" (after {', '.join(item['needs'])})" if item["needs"] else ""
                out.print(
                    f"[bold]{item['name']}[/]{needs}: {' '.join(item['command'])}", soft_wrap=True
                )
        return
    execute(ctx, pipeline, until, resume is not None, json_out)


def step(
    name: Annotated[str, typer.Argument(help="Step to run, e.g. fetch or validate.")],
    run_id: Annotated[
        str,
        typer.Option("--run-id", help="Run the step belongs to (Argo passes {{workflow.name}})."),
    ],
    source: Annotated[
        str | None, typer.Option(help="Archive root; must agree with the run's.")
    ] = None,
    symbols: SymbolsOpt = None,
    interval: IntervalOpt = None,
    start: Annotated[
        str | None, typer.Option(help="First day; empty = default (a new run only).")
    ] = None,
    end: Annotated[
        str | None, typer.Option(help="Last day; empty = default (a new run only).")
    ] = None,
    pipeline: PipelineOpt = "training",
    shard: Annotated[
        str | None,
        typer.Option(
            help="One shard (SYMBOL:START:END) of a fan-out step (Argo passes {{item}}); "
            "without it a fan-out step runs every shard."
        ),
    ] = None,
    output_file: Annotated[
        Path | None,
        typer.Option(help="Write the step's output parameter here (Argo reads it from there)."),
    ] = None,
    json_out: JsonFlag = False,
) -> None:
    """Run one step of a run — what each Argo container executes."""
    from pipelines.orchestration.dag import get_pipeline, upstream
    from pipelines.orchestration.fanout import parse_shard
    from pipelines.orchestration.runner import run_fan_out, run_step, save_params, stored_result

    ctx = build_context(run_id, source, symbols, interval, start, end)
    target = upstream(get_pipeline(pipeline).steps, name)[-1]
    if shard is not None and not target.fan_out:
        raise PipelineError(f"step {name} does not fan out", "drop --shard")
    if output_file is not None and target.output is None:
        raise PipelineError(f"step {name} has no output parameter", "drop --output-file")
    for need in target.needs:
        previous = stored_result(ctx, need)
        if not previous or previous.get("status") != "succeeded":
            raise PipelineError(
                f"step {name} needs {need}, which has not succeeded in run {run_id}",
                f"run: mlops step {need} --run-id {run_id}",
            )
    one = parse_shard(shard, ctx.params) if shard is not None else None
    save_params(ctx)
    ctx.pipeline = pipeline
    with progress_bars() as bars, library_output():
        ctx.progress = bars
        if target.fan_out and one is None:
            result = run_fan_out(ctx, target)
        else:
            result = run_step(ctx, target, shard=one)
    if output_file is not None and target.output is not None:
        write_output(output_file, result[target.output])
    label = f"{name} {shard}" if shard else name
    if json_out:
        extra = {"shard": shard} if shard else {}
        print_json({"run_id": run_id, "step": name, **extra, **result})
    elif not logs.json_enabled():  # else the step's log lines said it
        out.print(f"{label}: {result['status']} in {result['seconds']}s")


def write_output(path: Path, value: Any) -> None:
    """An output parameter as JSON, written whole (a temporary file renamed into place)."""
    import json
    import os
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as handle:
        json.dump(value, handle)
    os.replace(tmp, path)


def quickstart(
    json_out: JsonFlag = False,
    days: Annotated[int, typer.Option(min=1, help="Days of synthetic data.")] = 60,
) -> None:
    """The embedded default: write a synthetic mirror under $MLOPS_HOME/mirror, then run on it."""
    from pipelines.synthetic.mirror import write_mirror

    settings = load_settings()
    root = settings.home / "mirror"
    end = datetime.now(UTC).date() - timedelta(days=1)
    first = end - timedelta(days=days - 1)
    with progress_bars() as bars:
        advance = bars("mirror", days * len(settings.symbols))
        write_mirror(root, settings.symbols, settings.interval, first, days, on_file=advance)
    ctx = build_context(
        None, root.resolve().as_uri(), None, None, first.isoformat(), end.isoformat()
    )
    execute(ctx, "training", None, False, json_out)
