"""Local stand-ins for what a build here cannot pull or fetch (docs/deploy.md, "Building images
without a Docker daemon").

- ``python:<3.11.x>-slim-bookworm``: a Debian bookworm rootfs made by ``mmdebstrap`` with
  Debian's python3.11 and pip, shaped like the upstream image (``python``/``pip`` in
  ``/usr/local/bin``, pip may install system-wide), imported under the Dockerfiles' base names.
- ``ghcr.io/astral-sh/uv:<v>``: ``/uv`` and ``/uvx`` from the uv wheel of that version.
- an ``ADD --checksum=… <url>`` (the RDS CA bundle): podman 4.3's buildah has no
  ``--checksum`` and the URL is unreachable here, so the local build copies a stand-in file.

The Dockerfiles stay what real builds use; only the local build sees these.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import tempfile
from pathlib import Path

from pipelines.errors import PipelineError
from pipelines.images.engine import Podman, cache_root, require_tools

MIRROR_ENV = "MLOPS_IMAGES_DEBIAN_MIRROR"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
SUITE = "bookworm"
PACKAGES = ("python3.11", "python3-pip", "ca-certificates", "netbase", "tzdata")
SHAPE = (
    'rm -f "$1"/usr/lib/python3.11/EXTERNALLY-MANAGED',
    'ln -sf /usr/bin/python3.11 "$1"/usr/local/bin/python',
    'ln -sf /usr/bin/python3.11 "$1"/usr/local/bin/python3',
    'ln -sf /usr/bin/pip3 "$1"/usr/local/bin/pip',
)
"""Make the Debian rootfs behave like the upstream python image for the Dockerfiles."""
IMAGE_CONFIG = (
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "ENV LANG=C.UTF-8",
    'CMD ["python3"]',
)
RECIPE_VERSION = 1
"""Bump to rebuild every stand-in (a change here that the recipe text does not show)."""
STANDIN_MARK = "# stand-in (local build only): the real file is not reachable from this machine\n"
_FROM = re.compile(r"^FROM\s+(?:--\S+\s+)*(\S+)(?:\s+AS\s+(\S+))?", re.MULTILINE | re.IGNORECASE)
_COPY_FROM = re.compile(r"^COPY\s+.*?--from=(\S+)", re.MULTILINE)
_ADD_CHECKSUM = re.compile(
    r"^ADD\s+((?:--\S+\s+)*)(https?://\S+)\s+(\S+)\s*$", re.MULTILINE | re.IGNORECASE
)


def mirror() -> str:
    """The Debian mirror the stand-in base is made from (``$MLOPS_IMAGES_DEBIAN_MIRROR``)."""
    return os.environ.get(MIRROR_ENV, DEFAULT_MIRROR)


def mmdebstrap_args() -> list[str]:
    """``mmdebstrap`` arguments except the output path: the stand-in base's whole recipe."""
    return [
        "--variant=minbase",
        "--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr",
        '--aptopt=APT::Install-Recommends "false"',
        "--dpkgopt=path-exclude=/usr/share/man/*",
        "--dpkgopt=path-exclude=/usr/share/locale/*",
        "--dpkgopt=path-exclude=/usr/share/doc/*",
        "--dpkgopt=path-include=/usr/share/doc/*/copyright",
        f"--include={','.join(PACKAGES)}",
        *(f"--customize-hook={hook}" for hook in SHAPE),
        SUITE,
    ]


def recipe_key() -> str:
    """sha256 of everything the stand-in base is made from (its cache key)."""
    recipe = {"v": RECIPE_VERSION, "args": mmdebstrap_args(), "mirror": mirror()}
    recipe["config"] = list(IMAGE_CONFIG)
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()


def dockerfile_refs(text: str) -> tuple[list[str], list[str]]:
    """``(base images, COPY --from images)`` a Dockerfile names, its own stages excluded."""
    stages: set[str] = set()
    bases = []
    for image, stage in _FROM.findall(text):
        if image not in stages and image != "scratch":
            bases.append(image)
        if stage:
            stages.add(stage)
    copies = [ref for ref in _COPY_FROM.findall(text) if ref not in stages]
    return sorted(set(bases)), sorted(set(copies))


def qualified(ref: str) -> str:
    """A short Docker Hub name as podman stores it (``python:3`` -> docker.io/library/...)."""
    first = ref.split("/")[0]
    if "/" not in ref:
        return f"docker.io/library/{ref}"
    if "." not in first and ":" not in first and first != "localhost":
        return f"docker.io/{ref}"
    return ref


def base_tarball(log: Path) -> Path:
    """The stand-in rootfs tarball, made once per recipe (written whole, then renamed).

    Raises:
        PipelineError: mmdebstrap failed (its output is in `log`).
    """
    folder = cache_root() / "bases"
    target = folder / f"python-{SUITE}-{recipe_key()[:16]}.tar"
    if target.is_file():
        return target
    require_tools("mmdebstrap")
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        partial = Path(tmp) / target.name
        argv = ["mmdebstrap", "--quiet", *mmdebstrap_args(), str(partial), mirror()]
        env = {**os.environ, "SOURCE_DATE_EPOCH": "1700000000"}
        with log.open("a") as sink:
            done = subprocess.run(
                argv, stdout=sink, stderr=subprocess.STDOUT, env=env, timeout=900, check=False
            )
        if done.returncode != 0:
            raise PipelineError(
                f"mmdebstrap of {SUITE} from {mirror()} failed (exit {done.returncode}); see {log}",
                f"check that the mirror answers, or set {MIRROR_ENV}",
            )
        partial.rename(target)
    return target


def ensure_python_base(podman: Podman, refs: list[str], log: Path) -> None:
    """Import the stand-in rootfs under each base name in `refs` that the storage lacks."""
    missing = [qualified(ref) for ref in refs if not podman.image_exists(qualified(ref))]
    if not missing:
        return
    tarball = base_tarball(log)
    changes = [flag for line in IMAGE_CONFIG for flag in ("--change", line)]
    podman.run("import", *changes, str(tarball), missing[0], log=log, what="podman import")
    for ref in missing[1:]:
        podman.run("tag", missing[0], ref, what="podman tag")


def ensure_uv(podman: Podman, ref: str, log: Path) -> None:
    """Build ``ref`` (``…/uv:<version>``) from the uv wheel of that version: ``/uv``, ``/uvx``.

    Raises:
        PipelineError: the reference names no version, or the wheel cannot be installed.
    """
    if podman.image_exists(ref):
        return
    version = ref.rpartition(":")[2]
    if not re.fullmatch(r"\d+\.\d+\.\d+", version):
        raise PipelineError(f"{ref}: a uv stand-in needs an exact version tag (uv:X.Y.Z)")
    with tempfile.TemporaryDirectory(prefix="mlops-uv-") as tmp:
        target = Path(tmp) / "wheel"
        argv = ["uv", "pip", "install", "--quiet", "--no-deps", "--target", str(target)]
        done = subprocess.run(
            [*argv, "--python", "python3", f"uv=={version}"],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if done.returncode != 0:
            raise PipelineError(f"installing the uv {version} wheel failed: {done.stderr[-400:]}")
        context = Path(tmp) / "context"
        context.mkdir()
        for name in ("uv", "uvx"):
            (target / "bin" / name).rename(context / name)
        (context / "Containerfile").write_text("FROM scratch\nCOPY uv uvx /\n")
        podman.run("build", "--pull=never", "-t", ref, str(context), log=log, what=f"build {ref}")


def local_dockerfile(text: str) -> tuple[str, dict[str, str]]:
    """The Dockerfile as the local build runs it, and the stand-in files it then copies: each
    ``ADD [--checksum=…] [--chmod=…] <url> <dest>`` becomes a ``COPY`` of a stand-in file."""
    files: dict[str, str] = {}

    def substitute(match: re.Match[str]) -> str:
        flags, url, destination = match.groups()
        name = f"standin-{hashlib.sha256(url.encode()).hexdigest()[:12]}"
        files[name] = f"{STANDIN_MARK}# for {url}\n"
        kept = [f for f in flags.split() if f.startswith(("--chmod", "--chown"))]
        return " ".join(["COPY", *kept, name, destination])

    return _ADD_CHECKSUM.sub(substitute, text.replace("\\\n", " ")), files
