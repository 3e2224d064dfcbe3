"""The ``mlops`` command line (typer + rich)."""

from __future__ import annotations

import contextlib
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from pipelines.console import describe_validation_error, err, out, print_json, progress_bars
from pipelines.errors import PipelineError
from pipelines.runs import parse_day

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
workflows_app = typer.Typer(
    help="Argo CronWorkflows rendered from the pipeline DAGs.", no_args_is_help=True
)
app.add_typer(workflows_app, name="workflows")

JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
SymbolsOpt = Annotated[
    str | None,
    typer.Option("--symbols", help="Comma-separated, e.g. BTCUSDT,ETHUSDT. (env MLOPS_SYMBOLS)"),
]
IntervalOpt = Annotated[
    str | None,
    typer.Option("--interval", help="Kline interval: 1m 5m 15m 1h 4h 1d … (env MLOPS_INTERVAL)"),
]


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
    """The run's context: stored parameters when it exists, else options over settings."""
    from pipelines.runs import open_run

    options = {
        "source": source,
        "symbols": symbols,
        "interval": interval,
        "start": start,
        "end": end,
    }
    return open_run(load_settings(), run_id, options, resume=resume)


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


PipelineOpt = Annotated[
    str, typer.Option("--pipeline", help="training (daily) or monitor (hourly).")
]


def execute(ctx: Any, pipeline: str, until: str | None, resume: bool, json_out: bool) -> None:
    """Run a pipeline with progress bars; print the summary; exit 1 on failure."""
    from pipelines.dag import get_pipeline
    from pipelines.runner import run_pipeline

    def report(step: str, event: str) -> None:
        err.print(f"[dim]{step}: {event}[/]")

    steps = get_pipeline(pipeline).steps
    # Libraries that print go to stderr: stdout carries only our result (one JSON document).
    with progress_bars() as bars, contextlib.redirect_stdout(sys.stderr):
        ctx.progress = bars
        summary = run_pipeline(ctx, steps, until=until, resume=resume, report=report)
    summary["pipeline"] = pipeline
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
    from pipelines.dag import get_pipeline, plan

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


@app.command("step")
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
    json_out: JsonFlag = False,
) -> None:
    """Run one step of a run — what each Argo container executes."""
    from pipelines.dag import get_pipeline, upstream
    from pipelines.runner import run_step, save_params, stored_result

    ctx = build_context(run_id, source, symbols, interval, start, end)
    target = upstream(get_pipeline(pipeline).steps, name)[-1]
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
    execute(ctx, "training", None, False, json_out)


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


@workflows_app.command("render")
def workflows_render(
    stack: Annotated[
        str, typer.Option("--stack", help="Stack (environment): dev, staging or prod.")
    ],
    out_dir: Annotated[
        Path | None,
        typer.Option("--out", help="Write <pipeline>.yaml files here instead of stdout."),
    ] = None,
    pipeline: Annotated[
        str | None, typer.Option("--pipeline", help="Only this pipeline (default: all).")
    ] = None,
) -> None:
    """Render the CronWorkflow of each pipeline for a stack, from stacks/Pulumi.<stack>.yaml."""
    from pipelines.argo import render_yaml
    from pipelines.dag import PIPELINES, get_pipeline
    from pipelines.storage import write_file_atomic
    from stacks.config import load_stack_config  # lazily: pipelines does not import stacks

    config = load_stack_config(stack)
    names = [pipeline] if pipeline else list(PIPELINES)
    documents = {name: render_yaml(get_pipeline(name), config.workflows) for name in names}
    if out_dir is None:
        print("---\n".join(documents.values()), end="")
        return
    for name, text in documents.items():
        write_file_atomic(out_dir / f"{name}.yaml", text.encode())
        err.print(f"wrote {out_dir / (name + '.yaml')}")


@workflows_app.command("record-exit")
def workflows_record_exit(
    run_id: Annotated[str, typer.Option("--run-id", help="The workflow run ({{workflow.name}}).")],
    status: Annotated[str, typer.Option(help="{{workflow.status}}: Succeeded, Failed or Error.")],
    failures: Annotated[
        str, typer.Option(help="{{workflow.failures}}: JSON list of failed nodes.")
    ] = "",
    json_out: JsonFlag = False,
) -> None:
    """The exit handler: record how a workflow ended (and which steps failed) in storage."""
    import json as json_lib

    from pipelines.storage import open_storage

    try:
        failed = json_lib.loads(failures) if failures.strip().startswith("[") else []
    except ValueError:
        failed = [{"message": failures}]
    record = {
        "run_id": run_id,
        "status": status,
        "failures": [
            {k: f.get(k) for k in ("displayName", "templateName", "message", "phase", "finishedAt")}
            for f in failed
            if isinstance(f, dict)
        ],
        "recorded_at": datetime.now(UTC).isoformat(),
    }
    settings = load_settings()
    storage = open_storage(settings.data_url, settings.raw_storage_url)
    storage.write_bytes(f"runs/{run_id}/exit.json", json_lib.dumps(record, indent=2).encode())
    if json_out:
        print_json(record)
    else:
        failed_steps: list[dict[str, Any]] = record["failures"]  # type: ignore[assignment]
        names = ", ".join(str(f["displayName"]) for f in failed_steps) or "none"
        out.print(f"{run_id}: {status}; failed steps: {names}")


from pipelines.cli_bento import bento_app, serve  # noqa: E402  (a sibling module of commands)

app.add_typer(bento_app, name="bento")
app.command("serve")(serve)

from pipelines.cli_decisions import (  # noqa: E402  (a sibling module of commands)
    drift_app,
    gate,
    models_history,
    monitor,
    rollback,
)

app.command("gate")(gate)
app.command("monitor")(monitor)
app.command("rollback")(rollback)
app.add_typer(drift_app, name="drift")
models_app.command("history")(models_history)

infra_app = typer.Typer(
    help="Pulumi stacks, planned offline under Pulumi's mocks.", no_args_is_help=True
)
app.add_typer(infra_app, name="infra")


@infra_app.command("plan")
def infra_plan(
    stack: Annotated[
        str, typer.Option("--stack", help="dev, staging or prod (stacks/Pulumi.<stack>.yaml).")
    ],
    program: Annotated[
        Path | None, typer.Option(help="Another Pulumi Python program's directory.")
    ] = None,
    config_file: Annotated[
        Path | None,
        typer.Option(
            "--config-file", help="Stack config file (default: <program>/Pulumi.<stack>.yaml)."
        ),
    ] = None,
    update: Annotated[
        bool,
        typer.Option(
            "--update", help="Mock an update instead of a preview (computed values known)."
        ),
    ] = False,
    json_out: JsonFlag = False,
) -> None:
    """Run the Pulumi program in-process under mocks (no CLI, no cloud); list its resources and
    the policy pack's verdict. Exit 1 on a config error or a mandatory violation."""
    from stacks.plan import plan_stack  # lazily: pipelines does not import stacks

    with err.status(f"planning stack {stack} under mocks …"):
        result = plan_stack(stack, program, config_file, preview=not update)
    policy = result.policy
    if json_out:
        print_json(result.document())
    else:
        _show_plan(result, stack)
    if policy.get("mandatory"):
        err.print(
            f"[red]error:[/] {policy['mandatory']} mandatory policy violation(s) in stack {stack}"
        )
        raise typer.Exit(1)


def _show_plan(result: Any, stack: str) -> None:
    from rich.table import Table
    from rich.tree import Tree

    from stacks.plan import key_properties

    root = Tree(f"[bold]{stack}[/] ({result.mode}, {len(result.resources)} resources)")
    nodes: dict[str, Any] = {}
    for resource in result.resources:
        parent = nodes.get(resource.parent, root)
        label = f"{resource.type} [bold]{resource.name}[/]"
        details = key_properties(resource.inputs)
        node = parent.add(f"{label} [dim]{details}[/]" if details else label)
        if not resource.custom:  # only components parent other resources
            nodes[resource.name] = node
    out.print(root)
    out.print(
        "outputs: "
        + ", ".join(
            f"{k}={'[secret]' if k in result.secret_outputs else v}"
            for k, v in result.outputs.items()
        ),
        soft_wrap=True,
        highlight=False,
        markup=False,
    )
    policy = result.policy
    table = Table(
        title=f"policies: {policy['mandatory']} mandatory, {policy['advisory']} advisory "
        f"({policy['skipped_unknown']} checks skipped on unknown values)"
    )
    for column in ("rule", "level", "resource", "message"):
        table.add_column(column)
    for v in policy["violations"]:
        table.add_row(v["rule"], v["level"], v["resource"], v["message"])
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
