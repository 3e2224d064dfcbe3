"""``mlops images build``: the pipeline, MLflow and serving images with podman, no daemon.
``mlops images replicate``: the local stand-in of ECR replication of the serving image."""

from __future__ import annotations

import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from pipelines.cli.common import JsonFlag, load_settings, open_settings_storage
from pipelines.cli.console import err, out, print_json

images_app = typer.Typer(
    help="Container images built with podman on local stand-in bases (docs/deploy.md).",
    no_args_is_help=True,
)


@images_app.command("build")
def images_build(
    names: Annotated[
        list[str] | None,
        typer.Argument(help="pipeline, mlflow, serving (default: all three)."),
    ] = None,
    log: Annotated[
        Path | None, typer.Option("--log", help="Build output file (default: a temp file).")
    ] = None,
    json_out: JsonFlag = False,
) -> None:
    """Build images from their Dockerfiles (cache: $MLOPS_IMAGES_CACHE, ~/.cache/mlops-images)."""
    from pipelines.images.build import IMAGES, build, engine
    from pipelines.settings import REPO_ROOT

    chosen = names or list(IMAGES)
    podman = engine()
    log = log or Path(tempfile.mkstemp(prefix="mlops-images-", suffix=".log")[1])
    err.print(f"build output: {log}", highlight=False)
    built = []
    for name in chosen:
        result = build(REPO_ROOT, name, log, podman)
        built.append(result)
        err.print(
            f"[green]{name}[/] {result.tag} {result.size_bytes / 1e6:.0f} MB in {result.seconds}s",
            highlight=False,
        )
    if json_out:
        print_json(
            {"storage": str(podman.root), "log": str(log), "images": [asdict(b) for b in built]}
        )
    else:
        for b in built:
            out.print(b.tag, highlight=False)


@images_app.command("replicate")
def images_replicate(
    to: Annotated[str, typer.Option("--to", help="The env of MLOPS_CANDIDATE_STAGES to copy to.")],
    json_out: JsonFlag = False,
) -> None:
    """Copy this env's stand-in serving images into env TO's storage: what ECR replication does
    between the accounts (local only: with MLOPS_SERVING_REPOSITORY set there is nothing to do)."""
    from pipelines.errors import PipelineError
    from pipelines.ml.images import replicate_stand_in
    from pipelines.storage import open_storage

    settings = load_settings()
    if settings.serving_repository:
        raise PipelineError(
            f"MLOPS_SERVING_REPOSITORY is set ({settings.serving_repository}): ECR replicates "
            "the serving repository between the accounts, not this command",
            "see docs/deploy.md, 'Promoting a candidate through the environments'",
        )
    stages = settings.candidate_stages
    if to == settings.env or to not in stages:
        raise PipelineError(
            f"{to!r} is not another env of MLOPS_CANDIDATE_STAGES ({', '.join(stages) or 'unset'})",
            "name the env to copy to, and run this with the source env's settings",
        )
    copied = replicate_stand_in(open_settings_storage(settings), open_storage(stages[to]))
    if json_out:
        print_json({"from": settings.env, "to": to, "copied": copied})
        return
    out.print(f"{len(copied)} serving image(s) copied from {settings.env} to {to}", highlight=False)
