"""``mlops services up | down | status | env``: the cluster's components on 127.0.0.1."""

from __future__ import annotations

import shlex
from typing import Annotated

import typer

from pipelines.cli.common import JsonFlag, load_settings
from pipelines.cli.console import err, out, print_json, progress_bars

services_app = typer.Typer(
    help="Local PostgreSQL, S3 (SeaweedFS) and MLflow server, as the cluster runs them.",
    no_args_is_help=True,
)


@services_app.command("up")
def services_up() -> None:
    """Start the services under $MLOPS_HOME/services (a no-op for those already running)."""
    from pipelines.services.stack import COMPONENTS, up

    home = load_settings().home
    with progress_bars() as add:
        advance = add("services", len(COMPONENTS))

        def report(component: str, message: str) -> None:
            err.print(f"[bold]{component:>10}[/] {message}", highlight=False)
            if message.startswith(("up at", "already running")):
                advance()

        components = up(home, report)
    ready = all(c.running and c.healthy for c in components)
    err.print(
        '[green]services up[/] — load them with: eval "$(mlops services env)"'
        if ready
        else "[yellow]some services are not healthy[/] — see: mlops services status",
        highlight=False,
    )
    if not ready:
        raise typer.Exit(1)


@services_app.command("down")
def services_down() -> None:
    """Stop the services by PID (MLflow, S3, PostgreSQL); their data stays."""
    from pipelines.services.stack import down

    down(load_settings().home, lambda c, m: err.print(f"[bold]{c:>10}[/] {m}", highlight=False))


@services_app.command("restart")
def services_restart(
    component: Annotated[
        str, typer.Argument(help="postgres, seaweedfs or mlflow", show_default=False)
    ],
    json_out: JsonFlag = False,
) -> None:
    """Stop one service by PID and start it again (data and ports kept); exit 1 unless all
    services are then up and healthy."""
    from pipelines.services.stack import restart, status_document

    home = load_settings().home
    restart(home, component, lambda c, m: err.print(f"[bold]{c:>10}[/] {m}", highlight=False))
    document = status_document(home)
    if json_out:
        print_json(document)
    if not document["up"]:
        raise typer.Exit(1)


@services_app.command("status")
def services_status(json_out: JsonFlag = False) -> None:
    """Each service's endpoint, PID and health (exit 1 unless all are up and healthy)."""
    from pipelines.services.stack import status_document

    document = status_document(load_settings().home)
    if json_out:
        print_json(document)
    else:
        for c in document["components"]:  # type: ignore[attr-defined]
            state = "healthy" if c["healthy"] else ("unhealthy" if c["running"] else "stopped")
            colour = {"healthy": "green", "unhealthy": "yellow", "stopped": "red"}[state]
            out.print(f"{c['name']:>10}  [{colour}]{state:<9}[/]  {c['endpoint']}", highlight=False)
    if not document["up"]:
        raise typer.Exit(1)


@services_app.command("env")
def services_env() -> None:
    """Print the exports (credentials included) for: eval "$(mlops services env)"."""
    from pipelines.services.stack import env_exports

    for name, value in env_exports(load_settings().home).items():
        print(f"export {name}={shlex.quote(value)}")
