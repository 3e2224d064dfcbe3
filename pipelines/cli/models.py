"""``mlops models …``: the registry's versions, the history of alias moves, a version's
lineage across the envs."""

from __future__ import annotations

from typing import Annotated

import typer

from pipelines.cli.common import JsonFlag, load_settings, open_settings_storage
from pipelines.cli.console import out, print_json

models_app = typer.Typer(
    help="The model registry (MLflow): versions and aliases.", no_args_is_help=True
)


@models_app.command("list")
def models_list(json_out: JsonFlag = False) -> None:
    """Versions of the registered model, newest first: aliases, metrics, dataset hash."""
    from rich.table import Table

    from pipelines.ml.registry import list_versions

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


@models_app.command("history")
def models_history(json_out: JsonFlag = False) -> None:
    """Alias moves over time, from the decision ledger (gate, monitor, rollback)."""
    from rich.table import Table

    from pipelines.decisions.ledger import alias_history

    settings = load_settings()
    rows = alias_history(open_settings_storage(settings), settings.env)
    if json_out:
        print_json({"env": settings.env, "model_name": settings.model_name, "history": rows})
        return
    if not rows:
        out.print(f"no alias moves recorded in env {settings.env!r} yet")
        return
    table = Table(title=f"{settings.model_name} in {settings.env}")
    for column in ("when", "decision", "moves", "commit", "record"):
        table.add_column(column)
    for row in rows:
        moves = ", ".join(f"{a}: {m['from']}→{m['to']}" for a, m in row["moves"].items())
        candidate = f"candidate {row['candidate']}" if row.get("candidate") else ""
        table.add_row(
            row["when"][:19],
            f"{row['kind']}: {row['decision']}",
            moves or candidate or "—",
            (row["gitops_commit"] or "")[:10],
            row["record"],
        )
    out.print(table)


@models_app.command("lineage")
def models_lineage(
    version: Annotated[int, typer.Argument(help="A registry version of this env.")],
    json_out: JsonFlag = False,
) -> None:
    """The whole chain of a version, env by env: the candidate it is, where it was created
    (run, dataset, commit, gate record) and each env it moved to."""
    from pipelines.candidates.views import lineage

    settings = load_settings()
    document = lineage(settings, open_settings_storage(settings), version)
    if json_out:
        print_json(document)
        return
    out.print(
        f"{settings.model_name} v{version} in {settings.env} is candidate {document['id']} "
        f"(model sha256 {document['model_sha256'][:12]}…, image {document['serving_image']})"
    )
    out.print(
        f"  trained: run {document['mlflow_run_id']}, dataset {document['dataset_hash']}, "
        f"commit {document['git_commit']}"
    )
    for link in document["chain"]:
        approved = f", approved by {', '.join(link['approved_by'])}" if link["approved_by"] else ""
        out.print(
            f"  → {link['env']}: v{link['version']} since {link['entered'][:19]} "
            f"({link['state']}{approved}; {link['record']})"
        )
