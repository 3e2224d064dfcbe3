"""``mlops decisions …`` (gate, monitor, rollback) and ``mlops drift …`` (Evidently reports):
the commands that read or write the decision ledger."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from pydantic import BaseModel

from pipelines import layout
from pipelines.cli.common import JsonFlag, load_settings, open_settings_storage
from pipelines.cli.console import err, out, print_json

drift_app = typer.Typer(help="Evidently drift and quality reports.", no_args_is_help=True)
decisions_app = typer.Typer(
    help="Promotion and rollback: the gate, the live monitor, rollbacks by hand.",
    no_args_is_help=True,
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
