"""``mlops bento …`` and ``mlops serve``: package a registry version as a Bento and serve it.

``bentos`` is reached only through `pipelines.ml.packaging`, lazily, so ``mlops --help`` stays
fast.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Annotated

import typer

from pipelines import logs
from pipelines.cli.common import load_settings
from pipelines.cli.console import err, out, print_json

bento_app = typer.Typer(
    help="BentoML packaging of registry versions (the serving image).", no_args_is_help=True
)

AliasOpt = Annotated[
    str | None,
    typer.Option("--alias", help="Registry alias to package/serve (default: champion)."),
]
VersionOpt = Annotated[
    int | None, typer.Option("--version", help="Registry version number (instead of an alias).")
]


@bento_app.command("build")
def bento_build(
    alias: AliasOpt = None,
    version: VersionOpt = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
) -> None:
    """Import a registry version from MLflow into BentoML and build its Bento; print the tag.

    Idempotent: the Bento version is ``v<registry version>-<code digest>``, and an existing tag is
    reused. Local state goes to ``$BENTOML_HOME`` (default ``$MLOPS_HOME/bentoml``).
    """
    from pipelines.ml.packaging import build_bento

    if alias is not None and version is not None:
        raise typer.BadParameter("give --alias or --version, not both")
    settings = load_settings()
    with err.status("importing the model and building the Bento …"):
        result = build_bento(settings, alias, version)
    if json_out:
        print_json(result.model_dump())
        return
    what = "built" if result.built else "already built"
    err.print(f"{what}: model {result.model} (aliases: {', '.join(result.aliases) or 'none'})")
    out.print(result.bento, highlight=False)


@bento_app.command("digest")
def bento_digest(
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
) -> None:
    """Print the serving code's digest: the serving image's tag (images/serving/Dockerfile).

    CI builds and pushes ``<ecr>/mlops-serving:<digest>`` in dev whenever it changes (ECR
    replicates it to the later accounts); the package step tags every registry version with
    it, and the GitOps pin names it (with the manifest digest, for a candidate moved on).
    """
    from pipelines.ml.packaging import serving_digest

    digest, files = serving_digest()
    if json_out:
        print_json({"digest": digest, "files": files})
        return
    out.print(digest, highlight=False)


@bento_app.command("requirements")
def bento_requirements(
    check: Annotated[
        bool, typer.Option("--check", help="Exit 1 if the file is stale instead of writing it.")
    ] = False,
) -> None:
    """Regenerate ``bentos/requirements.txt`` (the image's pinned packages) from ``uv.lock``."""
    from pipelines.ml.packaging import export_requirements

    REQUIREMENTS, fresh = export_requirements()  # noqa: N806
    current = REQUIREMENTS.read_text() if REQUIREMENTS.exists() else ""
    if check:
        if fresh != current:
            err.print(f"[red]stale:[/] {REQUIREMENTS}; run: mlops bento requirements")
            raise typer.Exit(1)
        err.print(f"{REQUIREMENTS} is up to date")
        return
    from pipelines.storage import write_file_atomic

    write_file_atomic(REQUIREMENTS, fresh.encode())
    err.print(f"wrote {REQUIREMENTS} ({len(fresh.splitlines())} pins)")


def serve(
    alias: AliasOpt = None,
    version: VersionOpt = None,
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 3000,
    host: Annotated[str, typer.Option("--host", help="Interface to bind.")] = "127.0.0.1",
    container: Annotated[
        bool,
        typer.Option(
            "--container",
            help="Run the serving image (mlops images build serving) as the serving Deployment "
            "runs it, on the version's pin, with the storage this env names.",
        ),
    ] = False,
) -> None:
    """Serve the built Bento of a registry version (``bentoml serve`` underneath).

    Endpoints: POST /predict, /predict_batch, /predict_klines; GET /metadata, /livez, /readyz,
    /metrics; Swagger UI at /. Stops cleanly on Ctrl-C/SIGTERM (the inference log is flushed).
    """
    settings = load_settings()
    if container:
        from pipelines.images.build import engine
        from pipelines.images.serve import resolve_pin, run_serving
        from pipelines.settings import REPO_ROOT

        pin = resolve_pin(settings, alias, version)
        raise typer.Exit(run_serving(REPO_ROOT, engine(), pin, host, port, err.print))
    from pipelines.ml.packaging import find_bento

    tag = find_bento(settings, alias, version)
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")
    env["MLOPS_HOME"] = str(settings.home.resolve())
    if logs.json_enabled():
        logging.getLogger(__name__).info(
            "serving %s on http://%s:%d", tag, host, port, extra={"event": "serve"}
        )
    else:
        err.print(f"serving {tag} on http://{host}:{port}")
    bentoml = os.path.join(os.path.dirname(sys.executable), "bentoml")
    os.execve(bentoml, [bentoml, "serve", tag, "--host", host, "--port", str(port)], env)
