"""``mlops workflows …``: the CronWorkflows rendered from the DAG, and their exit handler."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from pipelines.cli.common import JsonFlag, load_settings, open_settings_storage
from pipelines.cli.console import err, out, print_json
from pipelines.errors import PipelineError

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


def _parameters(defaults: dict[str, str], given: list[str]) -> dict[str, str]:
    values = dict(defaults)
    for item in given:
        name, sep, value = item.partition("=")
        if not sep or name not in defaults:
            raise PipelineError(
                f"-p {item[:80]!r}: not NAME=VALUE for a workflow parameter",
                f"the parameters are {', '.join(defaults)}",
            )
        values[name] = value
    return values


def _reporter() -> Callable[[str, str], None]:
    """How run-local tells a pod's progress: a log line where the process logs JSON."""
    from pipelines import logs

    if not logs.json_enabled():
        return lambda node, event: err.print(f"[dim]{node}: {event}[/]", highlight=False)
    log = logging.getLogger("pipelines.orchestration.argo_local")
    return lambda node, event: log.info(
        "pod %s %s", node, event, extra={"event": "pod", "pod": node, "phase": event}
    )


@workflows_app.command("run-local")
def workflows_run_local(
    stack: Annotated[
        str, typer.Option("--stack", help="Stack whose rendered CronWorkflow to run.")
    ] = "dev",
    pipeline: Annotated[str, typer.Option("--pipeline", help="training or monitor.")] = "training",
    parameter: Annotated[
        list[str] | None,
        typer.Option("-p", "--parameter", help="NAME=VALUE over a workflow parameter's default."),
    ] = None,
    file: Annotated[
        Path | None,
        typer.Option("--file", help="Run this rendered manifest instead of rendering --stack's."),
    ] = None,
    parallel: Annotated[
        int, typer.Option(min=1, max=16, help="Pods at once (and at most spec.parallelism).")
    ] = 2,
    json_out: JsonFlag = False,
) -> None:
    """Run a rendered CronWorkflow here as Argo would: every task a process of its own with a
    fresh sandbox and only its container's env, cluster endpoints replaced by this shell's
    (eval "$(mlops services env)"); retries, deadlines, fan-out and the exit handler honoured."""
    import os
    import shutil
    import sys
    import time

    import yaml

    from pipelines.orchestration.argo_local import Pods, node_document, run_workflow
    from pipelines.orchestration.argo_spec import MAX_MANIFEST_BYTES, parse_workflow
    from pipelines.orchestration.runs import read_summary

    if file is not None:
        if file.stat().st_size > MAX_MANIFEST_BYTES:
            raise PipelineError(f"{file} is larger than {MAX_MANIFEST_BYTES} bytes")
        text = file.read_text()
    else:
        from pipelines.orchestration.argo import render_yaml
        from pipelines.orchestration.dag import get_pipeline
        from stacks.config import load_stack_config

        text = render_yaml(get_pipeline(pipeline), load_stack_config(stack).workflows)
    document = yaml.safe_load(text)
    spec = parse_workflow(document)
    name = f"{spec.name}-{int(time.time())}"  # Argo names a cron run <cronworkflow>-<unix time>
    found = shutil.which("mlops") or str(Path(sys.executable).parent / "mlops")
    settings = load_settings()
    pods = Pods(
        root=(settings.home / "run-local" / name).resolve(),
        mlops=Path(found).resolve(),
        endpoints=dict(os.environ),
        report=_reporter(),
    )
    values = _parameters(spec.parameters, parameter or [])
    result = run_workflow(spec, name, values, pods, parallel)
    labels = document.get("metadata", {}).get("labels", {})
    summary = read_summary(name, labels.get("mlops/pipeline", pipeline))
    if json_out:
        print_json(
            {
                "workflow": name,
                "status": result.status,
                "seconds": result.seconds,
                "nodes": [node_document(n) for n in result.nodes],
                "exit_handler": node_document(result.exit_handler) if result.exit_handler else None,
                "summary": summary,
            }
        )
    else:
        for node in result.nodes:
            out.print(f"{node.phase:10} {node.name} ({node.attempts} attempt(s), {node.seconds}s)")
        out.print(f"{name}: {result.status} in {result.seconds}s; logs under {pods.root}")
    if result.status != "Succeeded":
        raise typer.Exit(1)
