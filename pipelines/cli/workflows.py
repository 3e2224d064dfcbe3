"""``mlops workflows …``: the CronWorkflows rendered from the DAG, and their exit handler."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pipelines.cli.common import JsonFlag, load_settings, open_settings_storage
from pipelines.cli.console import err, out, print_json

workflows_app = typer.Typer(
    help="Argo CronWorkflows rendered from the pipeline DAGs.", no_args_is_help=True
)


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
    from pipelines.orchestration.argo import render_yaml
    from pipelines.orchestration.dag import PIPELINES, get_pipeline
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
    from pipelines.orchestration.exits import record_exit

    record = record_exit(open_settings_storage(load_settings()), run_id, status, failures)
    if json_out:
        print_json(record.model_dump(mode="json"))
    else:
        names = ", ".join(str(f.displayName) for f in record.failures) or "none"
        out.print(f"{run_id}: {status}; failed steps: {names}")
