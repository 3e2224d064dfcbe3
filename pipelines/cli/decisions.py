"""``mlops decisions …`` (gate, monitor, rollback) and ``mlops drift …`` (Evidently reports):
the commands that read or write the decision ledger."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer
from pydantic import BaseModel

from pipelines import layout
from pipelines.cli.common import JsonFlag, load_settings, open_settings_storage
from pipelines.cli.console import err, out, print_json

if TYPE_CHECKING:
    from pipelines.decisions.ledger import Decision

drift_app = typer.Typer(help="Evidently drift and quality reports.", no_args_is_help=True)
decisions_app = typer.Typer(
    help="Promotion and rollback: the gate, the live monitor, rollbacks by hand.",
    no_args_is_help=True,
)


def _show_record(record: Decision, json_out: bool) -> None:
    """A ledger record the command wrote: decision, reasons, key, GitOps commit, aliases."""
    _show_decision(
        {
            "decision": record.decision,
            "reasons": record.reasons,
            "record": record.key,
            "gitops_commit": record.gitops_commit,
            "aliases": record.aliases_after,
        },
        json_out,
    )


def _show_decision(decided: BaseModel | dict[str, Any], json_out: bool) -> None:
    result = decided.model_dump(mode="json") if isinstance(decided, BaseModel) else decided
    if json_out:
        print_json(result)
        return
    out.print(
        f"[bold]{result['decision']}[/]" + (" (already decided)" if result.get("reused") else "")
    )
    for reason in result.get("reasons", []):
        out.print(f"  - {reason}", highlight=False)
    if result.get("record"):
        out.print(f"record: {result['record']}", highlight=False)
    if result.get("gitops_commit"):
        out.print(f"GitOps commit: {result['gitops_commit']}", highlight=False)
    if result.get("shadow"):
        out.print("shadow:", highlight=False)
        _show_decision(result["shadow"], json_out)


@decisions_app.command("gate")
def gate(
    run_id: Annotated[str, typer.Option("--run-id", help="The training run to decide on.")],
    json_out: JsonFlag = False,
) -> None:
    """The training DAG's last step for run RUN_ID: challenger vs champion on the run's
    evaluation window plus a drift check; promote (aliases + GitOps commit) or reject."""
    from pipelines.cli.run import step

    step("gate", run_id, None, None, None, None, None, "training", json_out=json_out)


@decisions_app.command("monitor")
def monitor(json_out: JsonFlag = False) -> None:
    """Judge the serving champion now: inference log joined with realized outcomes per window,
    live drift; roll back after N degraded windows in a row. (The hourly CronWorkflow runs
    fetch → validate → monitor: ``mlops run --pipeline monitor``.)"""
    from pipelines.decisions.monitor import monitor as run_monitor

    settings = load_settings()
    with err.status("judging the champion on live evidence …"):
        result = run_monitor(settings, open_settings_storage(settings))
    _show_decision(result, json_out)


@decisions_app.command("analyze")
def analyze(
    version: Annotated[str, typer.Option("--version", help="The canary's model version.")],
    json_out: JsonFlag = False,
) -> None:
    """Judge a canary model VERSION on its own trusted predictions and realized outcomes (the
    serving Rollout's analysis Job). Exit 0: pass; 3: degraded; 4: too little evidence
    (inconclusive); 1: an error. Decides and writes nothing."""
    from pipelines.decisions.canary import analyze as run_analyze

    settings = load_settings()
    with err.status(f"judging version {version} on live evidence …"):
        verdict = run_analyze(settings, open_settings_storage(settings), version)
    if json_out:
        print_json(verdict.model_dump(mode="json"))
    else:
        out.print(f"[bold]{verdict.verdict}[/] (version {version})")
        for reason in verdict.reasons:
            out.print(f"  - {reason}", highlight=False)
    raise typer.Exit(verdict.exit_code)


@decisions_app.command("backtest")
def backtest(
    scenarios: Annotated[
        str | None,
        typer.Option("--scenarios", help="Comma-separated scenario names (default: all)."),
    ] = None,
    seeds: Annotated[
        int, typer.Option("--seeds", min=1, help="Seeds per scenario that trains models.")
    ] = 20,
    drift_seeds: Annotated[
        int | None,
        typer.Option(
            "--drift-seeds",
            min=1,
            help="Seeds per no-change drift-only scenario (4 windows each; default: --seeds).",
        ),
    ] = None,
    markdown: Annotated[
        bool, typer.Option("--markdown", help="Print the figures as Markdown (benchmarks).")
    ] = False,
    label: Annotated[
        str, typer.Option("--label", help="Heading of the Markdown figures.")
    ] = "defaults",
    json_out: JsonFlag = False,
) -> None:
    """Replay the gate and the monitor over a matrix of synthetic-market scenarios and seeds
    with the current MLOPS_GATE_*/MONITOR_*/DRIFT_* settings: promotion, false-promotion,
    false-rollback and missed-rollback rates, detection delay and drift false alarms, each
    with its trial count and 95% upper bound (2 processes at most)."""
    import sys
    from datetime import UTC, datetime

    from pipelines.backtest.matrix import BY_NAME, run_matrix, settings_digest, trial_count
    from pipelines.backtest.targets import markdown as render
    from pipelines.backtest.targets import targets
    from pipelines.cli.console import progress_bars

    settings = load_settings()
    names = [n.strip() for n in scenarios.split(",") if n.strip()] if scenarios else list(BY_NAME)
    with progress_bars() as add:
        advance = add("backtest trials", trial_count(names, seeds, drift_seeds))
        results = run_matrix(settings, names, seeds, drift_seeds, on_trial=advance)
    digest = settings_digest(settings)
    if json_out:
        print_json({"settings_digest": digest, "scenarios": [r.public() for r in results]})
    elif markdown:
        day = datetime.now(UTC).date().isoformat()
        # plain stdout: rich would wrap the table rows at the terminal's width
        sys.stdout.write(render(results, digest, label, day, seeds, drift_seeds or seeds))
    else:
        _show_backtest(results, targets(results), digest)


def _show_backtest(results: list[Any], goals: list[Any], digest: str) -> None:
    from rich.table import Table

    def cell(rate: Any) -> str:
        return "-" if rate is None else f"{rate.value:.1%} ({rate.events}/{rate.trials})"

    table = Table(title=f"decisions backtest (settings {digest})")
    for column in ("scenario", "seeds", "promotion", "false promotion", "false rollback"):
        table.add_column(column)
    for column in ("missed rollback", "missed detection", "delay", "drift false alarm"):
        table.add_column(column)
    for r in results:
        delay = f"{r.detection_delay_windows:.2f}" if r.detection_delay_windows else "-"
        table.add_row(
            r.name,
            str(r.seeds),
            cell(r.promotion),
            cell(r.false_promotion),
            cell(r.false_rollback),
            cell(r.missed_rollback),
            cell(r.missed_detection),
            delay,
            cell(r.drift_false_alarm),
        )
    out.print(table)
    for goal in goals:
        out.print(
            f"{goal.name}: {goal.rate:.1%} of {goal.trials}, 95% upper bound {goal.upper:.1%}"
            f" — {goal.status}",
            highlight=False,
        )


@decisions_app.command("rollback")
def rollback(
    to: Annotated[
        int | None, typer.Option("--to", help="Version to serve (default: the 'previous' alias).")
    ] = None,
    json_out: JsonFlag = False,
) -> None:
    """Roll back by hand: champion ← previous (or --to), the env's serving overlay pinned to its
    Bento in one GitOps commit, recorded in the ledger."""
    from pipelines.decisions.promotion import rollback as do_rollback
    from pipelines.decisions.publish import publish

    settings = load_settings()
    storage = open_settings_storage(settings)
    record = do_rollback(settings, storage, to)
    publish(settings, storage, record.key)
    _show_record(record, json_out)


@decisions_app.command("shadow")
def shadow(
    version: Annotated[
        int | None,
        typer.Option(
            "--version", min=1, help="Registry version to score in shadow beside the champion."
        ),
    ] = None,
    stop: Annotated[bool, typer.Option("--stop", help="Stop shadowing.")] = False,
    json_out: JsonFlag = False,
) -> None:
    """Start (--version) or stop (--stop) shadowing a challenger: the env's serving overlay pins
    it beside the champion and the 'challenger' alias names it, in one GitOps commit, recorded
    in the ledger; each monitor run then judges it (docs/decisions.md)."""
    from pipelines.decisions.shadow_pin import pin_challenger
    from pipelines.errors import PipelineError

    if (version is None) == (not stop):
        raise PipelineError("give exactly one of --version N and --stop", "see --help")
    settings = load_settings()
    storage = open_settings_storage(settings)
    record = pin_challenger(settings, storage, version)
    _show_record(record, json_out)


@drift_app.command("list")
def drift_list(json_out: JsonFlag = False) -> None:
    """Reports of the env, newest first: when, kind, model version, drift share, decision, path."""
    from rich.table import Table

    from pipelines.decisions.ledger import read_all
    from pipelines.reports.store import list_reports

    settings = load_settings()
    storage = open_settings_storage(settings)
    decided = {
        report: record.decision
        for record in read_all(storage, settings.env)
        for report in record.reports
    }
    rows = [
        {
            "when": r["timestamp"],
            "kind": r["kind"],
            "model_version": r.get("model_version"),
            "drift_share": r.get("drift_share"),
            "dataset_drift": r.get("dataset_drift"),
            "metrics": r.get("metrics"),
            "decision": decided.get(r["path"]),
            "path": r["path"],
        }
        for r in list_reports(storage, settings.env)
    ]
    if json_out:
        print_json({"env": settings.env, "reports": rows})
        return
    table = Table(title=f"reports in {settings.env}")
    for column in ("when", "kind", "version", "drift share", "decision", "path"):
        table.add_column(column)
    for row in rows:
        share = row["drift_share"]
        table.add_row(
            row["when"],
            row["kind"],
            str(row["model_version"] or ""),
            "" if share is None else f"{share:.2f}",
            row["decision"] or "",
            row["path"],
        )
    out.print(table)


@drift_app.command("report")
def drift_report(
    reference: Annotated[
        str, typer.Option(help="Reference rows: a dataset prefix (features/…/HASH) or START..END.")
    ],
    current: Annotated[str, typer.Option(help="Current rows: the same forms.")],
    dataset: Annotated[
        str | None,
        typer.Option(
            help="Dataset prefix the date windows are cut from (default: the champion's)."
        ),
    ] = None,
    json_out: JsonFlag = False,
) -> None:
    """An ad hoc data-drift report between two windows of a dataset (``2024-03-01..2024-03-04``)
    or two datasets (their labelled rows), saved and added to the Evidently workspace."""
    import pandas as pd

    from pipelines.errors import PipelineError
    from pipelines.ml.dataset import read_dataset
    from pipelines.ml.registry import list_versions
    from pipelines.reports.drift import data_drift, drift_features, drift_options

    settings = load_settings()
    storage = open_settings_storage(settings)
    if dataset is None and (".." in reference or ".." in current):
        champion = next((v for v in list_versions(settings) if "champion" in v["aliases"]), None)
        if champion is None:
            raise PipelineError("no champion to take the dataset from", "pass --dataset PREFIX")
        dataset = layout.dataset(champion["interval"], champion["dataset_hash"])

    def rows(spec: str) -> Any:
        if ".." in spec:
            first, last = (pd.Timestamp(x, tz="UTC") for x in spec.split(".."))
            frame = read_dataset(storage, str(dataset))
            return frame[
                (frame["open_time"] >= first) & (frame["open_time"] < last + pd.Timedelta(days=1))
            ]
        return read_dataset(storage, spec.rstrip("/"))

    ref, cur = rows(reference), rows(current)
    features = [
        c
        for c in ref.columns
        if c in cur.columns and c not in ("symbol", "open_time", "label", "future_return", "close")
    ]
    report = data_drift(
        ref,
        cur,
        drift_features(features),
        storage=storage,
        env=settings.env,
        kind="adhoc",
        metadata={"reference": reference, "current": current},
        **drift_options(settings),
    )
    if json_out:
        print_json(report.model_dump())
        return
    out.print(
        f"drift share {report.drift_share:.2f} ({len(report.drifted_columns)} of "
        f"{len(report.columns)}): {', '.join(report.drifted_columns) or 'none'}",
        highlight=False,
    )
    out.print(f"report: {storage.url}/{report.html}", highlight=False)
