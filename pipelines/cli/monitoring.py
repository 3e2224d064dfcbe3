"""``mlops monitoring …``: alert rules and dashboards generated from the metric catalogue."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pipelines.cli.common import JsonFlag
from pipelines.cli.console import err, print_json

monitoring_app = typer.Typer(
    help="Prometheus rules and Grafana dashboards, generated from pipelines/metrics.py.",
    no_args_is_help=True,
)


@monitoring_app.command("render")
def monitoring_render(
    out_dir: Annotated[
        Path,
        typer.Option("--out", help="Directory to write into (the repo's: platform/monitoring)."),
    ] = Path("platform/monitoring"),
    json_out: JsonFlag = False,
) -> None:
    """Write the PrometheusRule and the dashboards' ConfigMaps (needs the dev dependencies)."""
    from pipelines.errors import PipelineError

    try:
        from pipelines.observability.render import write

        written = write(out_dir)
    except ModuleNotFoundError as error:
        raise PipelineError(
            f"{error.name} is not installed: rendering dashboards needs the dev dependencies",
            "run: uv sync (the dev group is installed by default)",
        ) from None
    if json_out:
        print_json({"written": [str(p) for p in written]})
    else:
        for path in written:
            err.print(f"wrote {path}")
