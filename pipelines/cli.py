"""The ``mlops`` command line (typer + rich)."""

from __future__ import annotations

import contextlib
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from pipelines.console import describe_validation_error, err, out, print_json, progress_bars
from pipelines.errors import PipelineError

app = typer.Typer(
    help="MLOps platform: Binance USD-M klines -> daily model -> MLflow -> BentoML.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
data_app = typer.Typer(help="Synthetic archive and data utilities.", no_args_is_help=True)
app.add_typer(data_app, name="data")
models_app = typer.Typer(
    help="The model registry (MLflow): versions and aliases.", no_args_is_help=True
)
app.add_typer(models_app, name="models")

JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
SymbolsOpt = Annotated[
    str | None,
    typer.Option("--symbols", help="Comma-separated, e.g. BTCUSDT,ETHUSDT. (env MLOPS_SYMBOLS)"),
]
IntervalOpt = Annotated[
    str | None,
    typer.Option("--interval", help="Kline interval: 1m 5m 15m 1h 4h 1d … (env MLOPS_INTERVAL)"),
]


def parse_day(value: str | None, option: str) -> date | None:
    """A YYYY-MM-DD option value, or a clear error naming the option."""
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise PipelineError(f"{option} {value!r} is not a date", "use YYYY-MM-DD") from None


def load_settings() -> Any:
    """Settings from the environment, with a one-line error on a bad MLOPS_* value."""
    from pipelines.settings import Settings

    try:
        return Settings()
    except ValidationError as error:
        raise PipelineError(describe_validation_error(error, "MLOPS_")) from None


@data_app.command("mirror")
def data_mirror(
    directory: Annotated[
        Path, typer.Argument(help="Where to write the archive (created if absent).")
    ],
    symbols: SymbolsOpt = None,
    interval: IntervalOpt = None,
    start: Annotated[
        str | None,
        typer.Option(help="First day, YYYY-MM-DD. Default: DAYS days ending yesterday (UTC)."),
    ] = None,
    days: Annotated[int, typer.Option(min=1, help="Number of daily files per symbol.")] = 60,
    seed: Annotated[
        int, typer.Option(help="Random seed; same arguments give the same bytes.")
    ] = 42,
    shift_at: Annotated[
        str | None,
        typer.Option(
            "--shift-at", help="Regime change (volatility, volume, trend) from this day on."
        ),
    ] = None,
    json_out: JsonFlag = False,
) -> None:
    """Write a deterministic synthetic archive in the data.binance.vision layout."""
    from pipelines.intervals import interval_ms
    from pipelines.mirror import write_mirror
    from pipelines.settings import split_symbols

    settings = load_settings()
    chosen = split_symbols(symbols) if symbols else settings.symbols
    chosen_interval = interval or settings.interval
    interval_ms(chosen_interval)
    first = parse_day(start, "--start") or (datetime.now(UTC).date() - timedelta(days=days))
    shift = parse_day(shift_at, "--shift-at")
    with progress_bars() as bars:
        advance = bars("mirror", days * len(chosen))
        summary = write_mirror(
            directory, chosen, chosen_interval, first, days, seed, shift, advance
        )
    document = {
        **summary.__dict__,
        "source": directory.resolve().as_uri(),
        "interval": chosen_interval,
    }
    document["start"], document["end"] = summary.days[0], summary.days[-1]
    del document["days"]
    if json_out:
        print_json(document)
    else:
        first_day, last_day = summary.days[0], summary.days[-1]
        out.print(
            f"wrote {summary.files} files ({summary.rows:,} rows, {summary.with_header} with a "
            f"header) for {first_day} .. {last_day} under {directory}",
            soft_wrap=True,
        )
        out.print(
            f"use it with: mlops run --source {document['source']} "
            f"--start {first_day} --end {last_day}",
            soft_wrap=True,
        )


def build_context(
    run_id: str | None,
    source: str | None,
    symbols: str | None,
    interval: str | None,
    start: str | None,
    end: str | None,
    resume: bool = False,
) -> Any:
    """The run's context: stored parameters when resuming, else options over settings."""
    from pipelines.context import RunParams, StepContext, default_dates, new_run_id
    from pipelines.keys import run_params
    from pipelines.settings import split_symbols
    from pipelines.storage import open_storage

    settings = load_settings()
    storage = open_storage(settings.data_url)
    if run_id and storage.exists(run_params(run_id)):
        params = RunParams.model_validate_json(storage.read_bytes(run_params(run_id)))
        given = {
            k: v
            for k, v in dict(
                source=source, symbols=symbols, interval=interval, start=start, end=end
            ).items()
            if v is not None
        }
        if given:
            raise PipelineError(
                f"run {run_id} already has parameters; --{', --'.join(given)} cannot change them",
                "drop those options, or start a new run",
            )
        return StepContext(run_id, params, settings, storage)
    if resume:
        raise PipelineError(
            f"no run {run_id!r} under {storage.url}", "check the run id (mlops run prints it)"
        )
    default_start, default_end = default_dates(settings)
    try:
        params = RunParams(
            source=source or settings.source_url,
            symbols=split_symbols(symbols) if symbols else settings.symbols,
            interval=interval or settings.interval,
            start=parse_day(start, "--start") or default_start,
            end=parse_day(end, "--end") or default_end,
        )
    except ValidationError as error:
        raise PipelineError(describe_validation_error(error, "--")) from None
    if params.end < params.start:
        raise PipelineError(f"--end {params.end} is before --start {params.start}", "fix the dates")
    return StepContext(run_id or new_run_id(), params, settings, storage)


FIGURES: dict[str, tuple[str, ...]] = {
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


def execute(ctx: Any, until: str | None, resume: bool, json_out: bool) -> None:
    """Run the training pipeline with progress bars; print the summary; exit 1 on failure."""
    from pipelines.dag import training_pipeline
    from pipelines.runner import run_pipeline

    def report(step: str, event: str) -> None:
        err.print(f"[dim]{step}: {event}[/]")

    # Libraries that print go to stderr: stdout carries only our result (one JSON document).
    with progress_bars() as bars, contextlib.redirect_stdout(sys.stderr):
        ctx.progress = bars
        summary = run_pipeline(ctx, training_pipeline(), until=until, resume=resume, report=report)
    if json_out:
        print_json(summary)
    else:
        show_summary(summary)
    if summary["status"] != "succeeded":
        err.print(f"[red]error:[/] {summary['error']}\n  resume with: {summary['resume']}")
        raise typer.Exit(1)


@app.command("run")
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
            help="Resume RUN_ID: keep its succeeded steps, re-run from the first failed one."
        ),
    ] = None,
    json_out: JsonFlag = False,
) -> None:
    """Run the training DAG locally, in-process."""
    ctx = build_context(resume, source, symbols, interval, start, end, resume=resume is not None)
    execute(ctx, until, resume is not None, json_out)


@app.command("step")
def step(
    name: Annotated[str, typer.Argument(help="Step to run, e.g. fetch or validate.")],
    run_id: Annotated[
        str,
        typer.Option("--run-id", help="Run the step belongs to (Argo passes {{workflow.name}})."),
    ],
    source: Annotated[
        str | None, typer.Option(help="Archive root (first step of a new run only).")
    ] = None,
    symbols: SymbolsOpt = None,
    interval: IntervalOpt = None,
    start: Annotated[
        str | None, typer.Option(help="First day (first step of a new run only).")
    ] = None,
    end: Annotated[
        str | None, typer.Option(help="Last day (first step of a new run only).")
    ] = None,
    json_out: JsonFlag = False,
) -> None:
    """Run one step of a run — what each Argo container executes."""
    from pipelines.dag import training_pipeline, upstream
    from pipelines.runner import run_step, save_params, stored_result

    ctx = build_context(run_id, source, symbols, interval, start, end)
    plan = upstream(training_pipeline(), name)
    target = plan[-1]
    for need in target.needs:
        previous = stored_result(ctx, need)
        if not previous or previous.get("status") != "succeeded":
            raise PipelineError(
                f"step {name} needs {need}, which has not succeeded in run {run_id}",
                f"run: mlops step {need} --run-id {run_id}",
            )
    save_params(ctx)
    with progress_bars() as bars, contextlib.redirect_stdout(sys.stderr):
        ctx.progress = bars
        result = run_step(ctx, target)
    if json_out:
        print_json({"run_id": run_id, "step": name, **result})
    else:
        out.print(f"{name}: {result['status']} in {result['seconds']}s")


@app.command("quickstart")
def quickstart(
    json_out: JsonFlag = False,
    days: Annotated[int, typer.Option(min=1, help="Days of synthetic data.")] = 60,
) -> None:
    """The embedded default: write a synthetic mirror under $MLOPS_HOME/mirror, then run on it."""
    from pipelines.mirror import write_mirror

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
    execute(ctx, None, False, json_out)


@models_app.command("list")
def models_list(json_out: JsonFlag = False) -> None:
    """Versions of the registered model, newest first: aliases, metrics, dataset hash."""
    from rich.table import Table

    from pipelines.registry import list_versions

    settings = load_settings()
    versions = list_versions(settings)
    if json_out:
        print_json({"model_name": settings.model_name, "versions": versions})
        return
    if not versions:
        out.print(f"no versions of {settings.model_name!r} yet — run: mlops run")
        return
    table = Table(title=f"{settings.model_name}")
    for column in ("ver", "aliases", "roc_auc", "log_loss", "strategy", "dataset", "eval window"):
        table.add_column(column, no_wrap=column != "eval window")
    for v in versions:
        m = v["metrics"]
        table.add_row(
            str(v["version"]),
            ", ".join(v["aliases"]),
            f"{m.get('roc_auc') or float('nan'):.4f}",
            f"{m.get('log_loss') or float('nan'):.4f}",
            f"{m.get('strategy_return') or 0:+.4f}",
            str(v["dataset_hash"])[:8],
            f"{str(v['eval_start'])[:16]} → {str(v['eval_end'])[:16]}",
        )
    out.print(table)


def main() -> None:
    """Console-script entry point: one clear line and exit 1 on a user-facing error."""
    try:
        app()
    except PipelineError as error:
        err.print(f"[red]error:[/] {error}", highlight=False, soft_wrap=True)
        sys.exit(1)
    except ValueError as error:  # e.g. a bad symbol list from split_symbols
        err.print(f"[red]error:[/] {error}", highlight=False, soft_wrap=True)
        sys.exit(2)
