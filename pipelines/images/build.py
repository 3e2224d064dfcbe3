"""Build the repository's three images with podman from their own Dockerfiles, on the local
stand-in bases (`pipelines.images.standins`), never pulling.

Each build reaches the package registries with ``--network=host`` and the machine's CA bundle
(mounted over ``/etc/ssl/certs``, plus a build-time ``/etc/uv/uv.toml`` telling uv to use it),
and mounts the host's uv cache at ``/root/.cache/uv`` (the pipeline image's ``uv sync`` then
installs from it). None of these mounts ends up in an image.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from pipelines.errors import PipelineError
from pipelines.images.engine import Podman, podman_for, require_tools, ulimit_flags
from pipelines.images.standins import (
    dockerfile_refs,
    ensure_python_base,
    ensure_uv,
    local_dockerfile,
    recipe_key,
)

IMAGES = {
    "pipeline": ("Dockerfile", "."),
    "mlflow": ("images/mlflow/Dockerfile", "images/mlflow"),
    "serving": ("images/serving/Dockerfile", "."),
}
"""Each image: its Dockerfile and build context, relative to the repository root."""
CA_CERTS = Path("/etc/ssl/certs")
UV_CONFIG = (
    "# build-time only: uv trusts the CA bundle mounted at /etc/ssl/certs\nsystem-certs = true\n"
)
BUILD_TIMEOUT = 1800.0


@dataclass(frozen=True)
class Built:
    """One image as built: its local tag, id, size and how long the build took."""

    name: str
    tag: str
    image_id: str
    size_bytes: int
    seconds: float


def local_tag(name: str) -> str:
    """The local tag of image `name`; the serving image's is its code digest, as on the
    cluster (the GitOps pin names it)."""
    if name == "serving":
        from pipelines.ml.packaging import serving_digest

        return f"localhost/mlops-serving:{serving_digest()[0]}"
    return f"localhost/mlops-{name}:local"


def engine() -> Podman:
    """The podman storage for the current stand-in recipe."""
    require_tools("podman", "runc")
    return podman_for(recipe_key())


def uv_cache_dir() -> Path:
    """The host's uv cache (``uv cache dir``)."""
    done = subprocess.run(
        ["uv", "cache", "dir"], capture_output=True, text=True, timeout=60, check=False
    )
    if done.returncode != 0 or not done.stdout.strip():
        raise PipelineError("uv cache dir failed: is uv on PATH?", "install uv (see README)")
    return Path(done.stdout.strip())


def build_flags(workdir: Path) -> list[str]:
    """What every build gets: no pulls, host network, the CA bundle, the uv cache, ulimits."""
    uv_config = workdir / "uv.toml"
    uv_config.write_text(UV_CONFIG)
    cache = uv_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    return [
        "--pull=never",
        "--network=host",
        "--layers",
        *ulimit_flags(),
        "--volume",
        f"{CA_CERTS}:/etc/ssl/certs:ro",
        "--volume",
        f"{uv_config}:/etc/uv/uv.toml:ro",
        "--volume",
        f"{cache}:/root/.cache/uv",
    ]


def build(repo: Path, name: str, log: Path, podman: Podman | None = None) -> Built:
    """Build image `name` (`IMAGES`) from `repo`; build output is appended to `log`.

    Raises:
        PipelineError: an unknown name, or a failed step (naming the log).
    """
    if name not in IMAGES:
        raise PipelineError(f"unknown image {name!r}", f"choose from: {', '.join(IMAGES)}")
    podman = podman or engine()
    dockerfile, context = IMAGES[name]
    text = (repo / dockerfile).read_text()
    bases, copies = dockerfile_refs(text)
    ensure_python_base(podman, bases, log)
    for ref in copies:
        ensure_uv(podman, ref, log)
    tag = local_tag(name)
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=f"mlops-build-{name}-") as tmp:
        work = Path(tmp)
        local, standins = local_dockerfile(text)
        where = repo / context
        if standins:  # a small context (images/mlflow): copied, with the stand-in files
            where = work / "context"
            shutil.copytree(repo / context, where)
            for file_name, content in standins.items():
                (where / file_name).write_text(content)
        (work / "Dockerfile").write_text(local)
        args = ["build", *build_flags(work), "-f", str(work / "Dockerfile"), "-t", tag]
        with log.open("a") as sink:
            sink.write(f"\n== podman build {name} -> {tag}\n")
        podman.run(*args, str(where), timeout=BUILD_TIMEOUT, log=log, what=f"build of {name}")
    seconds = time.monotonic() - began
    info = podman.inspect_image(tag)
    return Built(name, tag, str(info["Id"]), int(str(info["Size"])), round(seconds, 1))
