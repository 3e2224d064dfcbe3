"""The one adapter through which ``pipelines`` reaches ``bentos`` (the package step and the
``mlops bento`` commands): imported lazily, so the pipeline image's CLI starts fast and the
dependency stays one declared edge (checked by the import contract in ``pyproject.toml``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel

from pipelines.settings import Settings
from pipelines.storage import Storage

if TYPE_CHECKING:
    from bentos.build import BuildResult


class PackageResult(BaseModel):
    """The package step's result: the Bento built for the version and where it was exported."""

    bento: str
    """``market-direction:v<version>-<code digest>``: what the GitOps pin names."""
    model: str
    model_version: int
    aliases: list[str]
    imported: bool
    built: bool
    archive: str
    """Storage URL of the exported ``.bento`` archive."""
    image_tag: str
    """The serving image this version runs on: the serving code's digest."""
    model_archive: str
    """Storage URL of the exported BentoML model archive (what a serving pod fetches)."""
    model_sha256: str
    """Its sha256: the GitOps pin names it, and a pod refuses an archive that differs."""


def build_bento(settings: Settings, alias: str | None, version: int | None) -> BuildResult:
    """Import a registry version into BentoML and build its Bento (idempotent)."""
    from bentos.build import build

    return build(settings, alias, version)


def find_bento(settings: Settings, alias: str | None, version: int | None) -> str:
    """The tag of the built Bento of a registry version."""
    from bentos.build import find_bento as find

    return find(settings, alias, version)


def serving_digest() -> tuple[str, list[str]]:
    """The serving code's digest (the serving image's tag) and the files it covers."""
    from bentos.build import REPO, code_digest, serving_files

    return code_digest(), [f.relative_to(REPO).as_posix() for f in serving_files()]


def export_requirements() -> tuple[Path, str]:
    """``(path, fresh text)`` of the serving image's pinned requirements, from ``uv.lock``."""
    from bentos.build import export_requirements as export
    from bentos.runtime import REQUIREMENTS

    return REQUIREMENTS, export()


def package(settings: Settings, storage: Storage, version: int) -> PackageResult:
    """The package step: build the version's Bento and export it to storage. Where no ECR
    repository is configured, it also pushes the serving image's local stand-in
    (`pipelines.ml.images`), which the images job's push is on the clusters."""
    from bentos.build import package as package_bento
    from pipelines.ml.images import push_stand_in

    result = PackageResult.model_validate(package_bento(settings, storage, version))
    push_stand_in(settings, storage, result.image_tag)
    return result
