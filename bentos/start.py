"""The serving image's entry point: fetch the pinned model, check it, import it, serve it.

``python -m bentos.start [--host H] [--port P]`` reads the model half of the GitOps pin from
``MLOPS_MODEL_VERSION`` and ``MLOPS_MODEL_SHA256`` (the ``serving-model`` ConfigMap), fetches
``bentos/<model name>/v<version>.bentomodel`` from ``MLOPS_STORAGE_URL``, refuses it unless its
sha256 is the pinned one, imports it into the BentoML store (``$BENTOML_HOME``) and then
becomes ``bentoml serve bentos.service:MarketDirection`` for that model. A pod therefore never
serves bytes other than the ones its commit names; a refusal exits non-zero with one line
saying what differs and how to fix it (the pod shows it in its log and does not become ready).

A challenger pinned by ``MLOPS_CHALLENGER_VERSION`` and ``MLOPS_CHALLENGER_SHA256`` is fetched
and checked the same way and scored in shadow (`bentos.shadow`); if it cannot be, the champion
is served without shadow and a ``warning:`` line says why.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import sys
import tempfile
from pathlib import Path

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from bentos.runtime import ServingSettings
from pipelines import layout
from pipelines.errors import PipelineError

REPO = Path(__file__).resolve().parent.parent
SERVICE = "bentos.service:MarketDirection"
MAX_ARCHIVE_BYTES = 1 << 30
"""Largest model archive a pod accepts (a forest of this project is a few MB; the pod's memory
limit is 1-1.5 GiB, and the archive is held in memory while its digest is checked)."""


class ModelPin(BaseSettings):
    """The model half of the GitOps pin, from the ``serving-model`` ConfigMap."""

    model_config = SettingsConfigDict(env_prefix="MLOPS_", extra="ignore")

    model_name: str = Field(default="market-direction", pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")
    model_version: int = Field(ge=1)
    model_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class ChallengerPin(BaseSettings):
    """The challenger to score in shadow, if any: ``MLOPS_CHALLENGER_VERSION`` and
    ``MLOPS_CHALLENGER_SHA256`` (both or neither), same model name as the champion's."""

    model_config = SettingsConfigDict(env_prefix="MLOPS_CHALLENGER_", extra="ignore")

    version: int | None = Field(default=None, ge=1)
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")


def fetch_challenger(settings: ServingSettings, champion: ModelPin) -> str:
    """The challenger's BentoML tag, fetched and checked like the champion's; empty when none
    is pinned or it cannot be fetched — then one ``warning:`` line on stderr says why, and the
    champion is served without shadow (a challenger never stops serving)."""
    try:
        pin = ChallengerPin()
        if pin.version is None and pin.sha256 is None:
            return ""
        if pin.version is None or pin.sha256 is None:
            raise PipelineError(
                "MLOPS_CHALLENGER_VERSION and MLOPS_CHALLENGER_SHA256 come together; one is "
                "missing",
                "pin both, or neither for no shadow",
            )
        if pin.version == champion.model_version:
            return ""
        return fetch_model(
            settings,
            ModelPin(
                model_name=champion.model_name,
                model_version=pin.version,
                model_sha256=pin.sha256,
            ),
        )
    except (PipelineError, ValidationError) as error:
        shown = (
            "; ".join(
                f"MLOPS_CHALLENGER_{str(e['loc'][0]).upper()} malformed" for e in error.errors()
            )
            if isinstance(error, ValidationError)
            else str(error)
        )
        print(f"warning: challenger not loaded, shadow is off: {shown}", file=sys.stderr)
        return ""
    except Exception as error:  # an unreadable archive, a failed import: serve without shadow
        print(
            f"warning: challenger not loaded, shadow is off: {type(error).__name__}: {error}",
            file=sys.stderr,
        )
        return ""


def read_pin() -> ModelPin:
    """The pin from the environment.

    Raises:
        PipelineError: no model is pinned yet (``unreleased``), or a value is malformed.
    """
    try:
        return ModelPin()  # type: ignore[call-arg]
    except ValidationError as error:
        wrong = ", ".join(f"MLOPS_{str(e['loc'][0]).upper()}" for e in error.errors())
        raise PipelineError(
            f"no valid model pin: {wrong} missing or malformed (an env serves nothing until its "
            "first promotion: 'unreleased')",
            "promote a version (the gate does on its first run) or pin one: "
            "mlops decisions rollback --to VERSION",
        ) from None


def fetch_model(settings: ServingSettings, pin: ModelPin) -> str:
    """Fetch the pinned archive, check its digest, import it; returns the BentoML model tag.

    Raises:
        PipelineError: the archive is missing, too large, or its sha256 is not the pin's.
    """
    import bentoml
    from bentoml.exceptions import NotFound

    from bentos.card import ModelCard

    storage = settings.open_storage()
    key = layout.model_archive(pin.model_name, pin.model_version)
    where = f"{storage.url}/{key}"
    try:
        data = storage.read_bytes(key)
    except FileNotFoundError:
        raise PipelineError(
            f"model archive {where} does not exist",
            f"re-run the package step of the run that registered version {pin.model_version}",
        ) from None
    if len(data) > MAX_ARCHIVE_BYTES:
        raise PipelineError(
            f"model archive {where} is {len(data)} bytes, over the {MAX_ARCHIVE_BYTES} limit",
            "check what wrote it: the package step's archives are a few MB",
        )
    digest = hashlib.sha256(data).hexdigest()
    if digest != pin.model_sha256:
        raise PipelineError(
            f"model archive {where} has sha256 {digest}, but the pin names {pin.model_sha256}: "
            "refusing to serve it",
            "the archive was replaced after packaging: re-package the version, or pin the "
            "right one (mlops decisions rollback --to VERSION)",
        )
    tag = f"{pin.model_name}:v{pin.model_version}"
    # a restarted container may hold an earlier import: replace it with the checked bytes
    with contextlib.suppress(NotFound):
        bentoml.models.delete(tag)
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / "model.bentomodel"
        archive.write_bytes(data)
        model = bentoml.models.import_model(str(archive))
    card = ModelCard.from_metadata(model.info.metadata)
    if str(model.tag) != tag or card.model_version != str(pin.model_version):
        raise PipelineError(
            f"model archive {where} holds {model.tag} (card version {card.model_version}), "
            f"not {tag}",
            "re-package the version",
        )
    return tag


def serve_argv(tag: str, host: str, port: int, challenger: str = "") -> list[str]:
    """The ``bentoml serve`` command this process becomes."""
    bentoml = str(Path(sys.executable).with_name("bentoml"))
    where = ["--host", host, "--port", str(port), "--working-dir", str(REPO)]
    shadow = ["--arg", f"challenger={challenger}"] if challenger else []
    return [bentoml, "serve", SERVICE, *where, "--arg", f"model={tag}", *shadow]


def main(argv: list[str] | None = None) -> int:
    """Fetch, check, import, then exec ``bentoml serve``; 1 with one line on a refusal."""
    parser = argparse.ArgumentParser(
        prog="python -m bentos.start",
        description="Serve the model the GitOps pin names (MLOPS_MODEL_VERSION, "
        "MLOPS_MODEL_SHA256), fetched from MLOPS_STORAGE_URL and checked; a challenger pinned "
        "by MLOPS_CHALLENGER_VERSION and MLOPS_CHALLENGER_SHA256 is scored in shadow.",
    )
    parser.add_argument("--host", default="0.0.0.0", help="interface to bind (default: all)")
    parser.add_argument("--port", type=int, default=3000, help="port (default: 3000)")
    args = parser.parse_args(argv)
    settings = ServingSettings()
    try:
        pin = read_pin()
        tag = fetch_model(settings, pin)
    except PipelineError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    challenger = fetch_challenger(settings, pin)
    shadow = f", {challenger} in shadow" if challenger else ""
    print(f"serving {tag} (sha256 checked){shadow} on {args.host}:{args.port}", file=sys.stderr)
    command = serve_argv(tag, args.host, args.port, challenger)
    os.execv(command[0], command)
    return 0  # pragma: no cover (execv does not return)


if __name__ == "__main__":
    sys.exit(main())
