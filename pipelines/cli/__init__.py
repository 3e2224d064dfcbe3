"""The ``mlops`` command line (typer + rich): thin commands, one module per group.

mlops quickstart | run | step           the DAG, in-process (cli/run.py)
mlops backfill                          history in bounded chunks of runs (cli/backfill.py)
mlops data mirror                       the synthetic archive (cli/data.py)
mlops models list | history | lineage   the registry, alias moves, a version's chain (cli/models.py)
mlops candidates list | show | promote | approve | reject   dev → staging → prod (cli/candidates.py)
mlops decisions gate | monitor | rollback | shadow | analyze | backtest | backtest-shadow
                                        decisions (cli/decisions.py)
mlops drift report | list               Evidently reports (cli/drift.py)
mlops bento build | requirements, mlops serve   packaging and serving (cli/bento.py)
mlops workflows render | run-local | record-exit   Argo CronWorkflows (cli/workflows.py)
mlops infra plan                        the Pulumi stacks offline (cli/infra.py)
mlops services up | down | status | env local PostgreSQL, S3, MLflow server (cli/services.py)
mlops monitoring render                 alert rules and dashboards (cli/monitoring.py)
mlops images build                      the images with podman, no daemon (cli/images.py)
"""

from __future__ import annotations

import logging
import sys

import typer

from pipelines.cli.backfill import backfill
from pipelines.cli.bento import bento_app, serve
from pipelines.cli.candidates import candidates_app
from pipelines.cli.console import err
from pipelines.cli.data import data_app
from pipelines.cli.decisions import decisions_app
from pipelines.cli.drift import drift_app
from pipelines.cli.images import images_app
from pipelines.cli.infra import infra_app
from pipelines.cli.models import models_app
from pipelines.cli.monitoring import monitoring_app
from pipelines.cli.run import quickstart, run, step
from pipelines.cli.services import services_app
from pipelines.cli.workflows import workflows_app
from pipelines.errors import PipelineError

app = typer.Typer(
    help="MLOps platform: Binance USD-M klines -> daily model -> MLflow -> BentoML.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command("quickstart")(quickstart)
app.command("run")(run)
app.command("step")(step)
app.command("backfill")(backfill)
app.command("serve")(serve)
app.add_typer(data_app, name="data")
app.add_typer(models_app, name="models")
app.add_typer(candidates_app, name="candidates")
app.add_typer(decisions_app, name="decisions")
app.add_typer(drift_app, name="drift")
app.add_typer(bento_app, name="bento")
app.add_typer(workflows_app, name="workflows")
app.add_typer(infra_app, name="infra")
app.add_typer(services_app, name="services")
app.add_typer(monitoring_app, name="monitoring")
app.add_typer(images_app, name="images")


def main() -> None:
    """Console-script entry point: one clear line and exit 1 on a user-facing error. Log
    records go out as JSON lines where stderr is no terminal (`pipelines.logs`)."""
    from pydantic import ValidationError

    from pipelines import logs
    from pipelines.errors import describe_validation_error

    try:
        structured = logs.configure()
    except ValidationError as error:
        err.print(f"[red]error:[/] {describe_validation_error(error, 'MLOPS_LOG_')}")
        sys.exit(2)
    try:
        app()
    except (PipelineError, ValueError) as error:  # ValueError: e.g. a bad symbol list
        if structured:
            logging.getLogger("pipelines.cli").error("error: %s", error, extra={"event": "error"})
        else:
            err.print(f"[red]error:[/] {error}", highlight=False, soft_wrap=True)
        sys.exit(1 if isinstance(error, PipelineError) else 2)
