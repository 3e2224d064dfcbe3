"""``mlops models …``: the registry's versions and the history of alias moves."""

from __future__ import annotations

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
        table.add_row(
            row["when"][:19],
            f"{row['kind']}: {row['decision']}",
            moves or "—",
            (row["gitops_commit"] or "")[:10],
            row["record"],
        )
    out.print(table)
