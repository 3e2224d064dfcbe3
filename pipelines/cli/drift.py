"""``mlops drift …``: ad hoc Evidently drift reports and the list of the env's reports."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from pipelines import layout
from pipelines.cli.common import JsonFlag, load_settings, open_settings_storage
from pipelines.cli.console import out, print_json

drift_app = typer.Typer(help="Evidently drift and quality reports.", no_args_is_help=True)


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
