"""``mlops images build``: the pipeline, MLflow and serving images with podman, no daemon."""

from __future__ import annotations

import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from pipelines.cli.common import JsonFlag
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
