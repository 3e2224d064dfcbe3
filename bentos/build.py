"""Registry version → BentoML model → Bento. Idempotent: the same version and code give the same
tags, and a tag that exists is reused, not rebuilt."""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from bentos.card import ModelCard
from pipelines import layout
from pipelines.errors import PipelineError
from pipelines.settings import Settings
from pipelines.storage import Storage

REPO = Path(__file__).resolve().parent.parent
SERVICE = "bentos.service:MarketDirection"
BENTO_NAME = "market-direction"
"""The API service's name: the Bento (and image) name."""
BENTO_INCLUDE = (
    "bentos/*.py",
    "bentos/requirements.txt",
    # The serving runtime's share of `pipelines`: the foundations and the feature code (the
    # import contract in pyproject.toml keeps the runtime from reaching anything else).
    "pipelines/*.py",
    "pipelines/ml/__init__.py",
    "pipelines/ml/features.py",
    "pipelines/ml/modeling.py",
)
"""What the Bento's code is made of: its digest is part of the Bento version."""


def bentoml_home(settings: Settings) -> Path:
    """``BENTOML_HOME`` when set, else ``$MLOPS_HOME/bentoml`` (all local state in one place)."""
    return Path(os.environ.get("BENTOML_HOME") or settings.home.resolve() / "bentoml")


def use_bentoml_home(settings: Settings) -> Path:
    """Point BentoML (this process and its children) at `bentoml_home`. Call before the first
    use of ``bentoml``: it reads the variable once."""
    home = bentoml_home(settings)
    os.environ["BENTOML_HOME"] = str(home)
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")  # no usage call-home
    return home


def model_tag(settings: Settings, version: int) -> str:
    """BentoML model tag of a registry version."""
    return f"{settings.model_name}:v{version}"


def serving_files(root: Path = REPO) -> list[Path]:
    """The files of the serving code under `root` (`BENTO_INCLUDE`), sorted: what the serving
    image and every Bento contain. The same set exists in a checkout and in the installed wheel
    (the pipeline image), so both compute the same digest."""
    files = {f for pattern in BENTO_INCLUDE for f in root.glob(pattern) if f.is_file()}
    return sorted(files, key=lambda f: f.relative_to(root).as_posix())


def code_digest(root: Path = REPO) -> str:
    """12 hex digits over the serving code and its pinned requirements (paths and contents): the
    serving image's tag, and the second half of every Bento version."""
    digest = hashlib.sha256()
    for file in serving_files(root):
        digest.update(file.relative_to(root).as_posix().encode() + b"\0")
        digest.update(file.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def bento_version(version: int) -> str:
    """Bento version: the registry version it serves, then the code digest."""
    return f"v{version}-{code_digest()}"


def resolve_version(settings: Settings, alias: str | None, version: int | None) -> dict[str, Any]:
    """The registry row of `version`, or of the version `alias` points to.

    Raises:
        PipelineError: the model, alias or version does not exist (with what does).
    """
    from pipelines.ml.registry import list_versions

    rows = list_versions(settings)
    if not rows:
        raise PipelineError(f"no registered model {settings.model_name!r}", "run: mlops run")
    if version is not None:
        for row in rows:
            if row["version"] == version:
                return row
        known = ", ".join(str(r["version"]) for r in rows)
        raise PipelineError(f"{settings.model_name} has no version {version}", f"known: {known}")
    wanted = alias or "champion"
    for row in rows:
        if wanted in row["aliases"]:
            return row
    held = sorted({a for r in rows for a in r["aliases"]})
    raise PipelineError(
        f"{settings.model_name} has no alias {wanted!r}",
        f"aliases set: {', '.join(held) or 'none'}; or pass --version N",
    )


def model_card(settings: Settings, row: dict[str, Any]) -> ModelCard:
    """The card of a registry version: its tags plus the dataset manifest its run logged."""
    import mlflow

    manifest = mlflow.artifacts.load_dict(f"runs:/{row['mlflow_run_id']}/dataset/manifest.json")
    features = list(manifest["features"])
    return ModelCard(
        model_name=settings.model_name,
        model_version=str(row["version"]),
        aliases=list(row["aliases"]),
        features=features,
        feature_types=dict.fromkeys(features, "float64"),
        feature_config=manifest["config"],
        interval=manifest["interval"],
        horizon=int(manifest["horizon"]),
        dataset_hash=manifest["dataset_hash"],
        train_start=manifest["start"],
        train_end=manifest["end"],
        eval_start=row["eval_start"] or "",
        eval_end=row["eval_end"] or "",
        eval_metrics=row["metrics"],
        mlflow_run_id=row["mlflow_run_id"],
        git_commit=row.get("git_commit"),
    )


class BuildResult(BaseModel):
    """What ``mlops bento build`` made (or found already made)."""

    bento: str
    model: str
    model_version: int
    aliases: list[str]
    imported: bool
    built: bool
    path: str


def import_model(settings: Settings, row: dict[str, Any]) -> tuple[str, bool]:
    """Import registry version `row` into the BentoML store (once). Returns (tag, imported)."""
    import bentoml
    from bentoml.exceptions import NotFound

    from pipelines.ml.tracking import configure

    tag = model_tag(settings, row["version"])
    try:
        return str(bentoml.models.get(tag).tag), False
    except NotFound:
        pass
    configure(settings)
    card = model_card(settings, row)
    model = bentoml.mlflow.import_model(
        tag,
        f"models:/{settings.model_name}/{row['version']}",
        labels=card.labels(),
        metadata=card.metadata(),
    )
    return str(model.tag), True


def build(settings: Settings, alias: str | None = None, version: int | None = None) -> BuildResult:
    """Import the version (by alias or number) and build its Bento, unless both exist."""
    use_bentoml_home(settings)
    row = resolve_version(settings, alias, version)
    tag, imported = import_model(settings, row)
    import bentoml
    from bentoml.exceptions import NotFound

    bento_tag = f"{BENTO_NAME}:{bento_version(row['version'])}"
    try:
        bento = bentoml.get(bento_tag)
        built = False
    except NotFound:
        bento = bentoml.bentos.build(
            SERVICE,
            version=bento_tag.split(":")[1],
            labels={"model_version": str(row["version"]), "model": tag},
            include=list(BENTO_INCLUDE),
            build_ctx=str(REPO),
            args={"model": tag},
        )
        built = True
    return BuildResult(
        bento=str(bento.tag),
        model=tag,
        model_version=int(row["version"]),
        aliases=list(row["aliases"]),
        imported=imported,
        built=built,
        path=str(bento.path),
    )


def find_bento(settings: Settings, alias: str | None, version: int | None) -> str:
    """The newest built Bento serving the version `alias` (or `version`) points to.

    Raises:
        PipelineError: none is built for it (with the command that builds one).
    """
    use_bentoml_home(settings)
    row = resolve_version(settings, alias, version)
    import bentoml

    wanted = str(row["version"])
    bentos = [b for b in bentoml.list(BENTO_NAME) if b.info.labels.get("model_version") == wanted]
    if not bentos:
        how = f"--version {version}" if version is not None else f"--alias {alias or 'champion'}"
        raise PipelineError(
            f"no Bento built for {settings.model_name} version {wanted}",
            f"run: mlops bento build {how}",
        )
    return str(max(bentos, key=lambda b: b.info.creation_time).tag)


def export_requirements() -> str:
    """The serving closure pinned from ``uv.lock`` (what ``bentos/requirements.txt`` holds)."""
    done = subprocess.run(
        [
            "uv",
            "export",
            "--only-group",
            "serving",
            "--no-hashes",
            "--no-header",
            "--no-annotate",
            "--frozen",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


def bento_key(tag: str) -> str:
    """Storage key of an exported Bento archive."""
    return layout.bento_archive(tag)


def export_model_archive(storage: Storage, settings: Settings, version: int) -> tuple[str, str]:
    """Export the BentoML model of registry version `version` to storage (once) and return
    ``(key, sha256)`` of the stored archive: the bytes a serving pod fetches and checks."""
    import tempfile

    import bentoml

    key = layout.model_archive(settings.model_name, version)
    if not storage.exists(key):
        with tempfile.TemporaryDirectory() as tmp:
            archive = Path(tmp) / "model.bentomodel"
            bentoml.models.export_model(model_tag(settings, version), str(archive))
            create_once(storage, key, archive.read_bytes())
    return key, hashlib.sha256(storage.read_bytes(key)).hexdigest()


def create_once(storage: Storage, key: str, data: bytes) -> None:
    """Store an archive under ``bentos/`` write-once (`Storage.create`): a concurrent attempt
    that stored it first wins, and its bytes are what the digest is taken of."""
    with contextlib.suppress(FileExistsError):
        storage.create(key, data)


def package(settings: Settings, storage: Storage, version: int) -> dict[str, Any]:
    """The package step: build the version's Bento, export it and the model archive to
    ``bentos/`` in storage, and tag the registry version with what a pin names (serving image,
    archive digest). Idempotent: what exists is reused."""
    import tempfile

    import bentoml

    from pipelines.ml.registry import BENTO_TAG, MODEL_DIGEST_TAG, SERVING_IMAGE_TAG
    from pipelines.ml.tracking import client as mlflow_client

    result = build(settings, version=version)
    key = bento_key(result.bento)
    if not storage.exists(key):
        with tempfile.TemporaryDirectory() as tmp:
            archive = Path(tmp) / "bento.bento"
            bentoml.export_bento(result.bento, str(archive))
            create_once(storage, key, archive.read_bytes())
    model_key, model_sha256 = export_model_archive(storage, settings, version)
    image_tag = code_digest()
    # The registry version remembers what serves it: promotion and rollback pin these.
    client = mlflow_client(settings)
    for name, value in (
        (BENTO_TAG, result.bento),
        (SERVING_IMAGE_TAG, image_tag),
        (MODEL_DIGEST_TAG, model_sha256),
    ):
        client.set_model_version_tag(settings.model_name, str(version), name, value)
    return {
        **result.model_dump(exclude={"path"}),
        "archive": f"{storage.url}/{key}",
        "image_tag": image_tag,
        "model_archive": f"{storage.url}/{model_key}",
        "model_sha256": model_sha256,
    }
