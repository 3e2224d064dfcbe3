"""The GitOps pin: exactly what an env's serving pods run, in two parts.

- the **serving image**: one per code version, tagged with the serving code's digest
  (``images[0].newTag`` of ``platform/envs/<env>/kustomization.yaml``) and, for a candidate
  moved from another env, also by its manifest digest (``images[0].digest``: kustomize renders
  ``name:tag@sha256:…`` and the kubelet pulls exactly those bytes; `pipelines.ml.images`);
- the **model**: its registry version and the sha256 of its exported BentoML model archive
  (``platform/envs/<env>/model.env``, which kustomize turns into the ``serving-model``
  ConfigMap the pods read; a new pin renames the ConfigMap, so the pods roll) — and, while a
  challenger is shadowed, the challenger's version and archive digest beside it
  (``MLOPS_CHALLENGER_*``: `bentos.start` fetches and checks it the same way; it is scored in
  shadow, never served).

At start a pod fetches the archive, checks its digest against the pin and refuses to serve
anything else (`bentos.start`). Promotion and rollback change both parts in one commit.
"""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from pipelines.errors import PipelineError

IMAGE_TAG = re.compile(r"^(?P<indent>[ \t]+)newTag:[ \t]*(?P<tag>\S+)[ \t]*$", re.MULTILINE)
IMAGE_DIGEST = re.compile(r"^[ \t]+digest:[ \t]*(?P<digest>\S+)[ \t]*(?:\n|$)", re.MULTILINE)
MANIFEST_DIGEST = r"^sha256:[0-9a-f]{64}$"
"""An image manifest's digest, as registries and kustomize spell it."""
MODEL_FILE = "model.env"
"""The model half of the pin, next to the overlay's kustomization.yaml."""
UNRELEASED = "unreleased"
"""What a fresh overlay pins until the first promotion (its pods wait, refusing to start)."""
VERSION_KEY = "MLOPS_MODEL_VERSION"
DIGEST_KEY = "MLOPS_MODEL_SHA256"
CHALLENGER_VERSION_KEY = "MLOPS_CHALLENGER_VERSION"
CHALLENGER_DIGEST_KEY = "MLOPS_CHALLENGER_SHA256"
_MODEL_LINE = re.compile(r"^(?P<key>[A-Z0-9_]+)=(?P<value>.*)$")
_HEADER = (
    "# The model this env serves, with the sha256 of its archive: set by promotion and rollback\n"
    "# (one commit each, with the image tag in kustomization.yaml). Pods refuse any other bytes.\n"
)


class ServingPin(BaseModel):
    """What serving runs: the image's code digest (and manifest digest, for a candidate moved
    here), the model version and its archive digest."""

    model_config = ConfigDict(frozen=True)

    image_tag: str = Field(pattern=r"^[0-9a-f]{12}$")
    """The serving code's digest (`bentos.build.code_digest`): the serving image's tag."""
    image_digest: str | None = Field(default=None, pattern=MANIFEST_DIGEST)
    """The serving image's manifest digest (``sha256:…``): the exact image a candidate was
    verified on; None for a pin by tag alone (the gate's in the env that built the image, and
    pins older than image digests)."""
    model_version: int = Field(ge=1)
    model_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    challenger_version: int | None = Field(default=None, ge=1)
    """The version scored in shadow beside the model (`pipelines.decisions.shadow_pin`)."""
    challenger_sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")

    @model_validator(mode="after")
    def _challenger_whole(self) -> ServingPin:
        if (self.challenger_version is None) != (self.challenger_sha256 is None):
            raise ValueError(f"{CHALLENGER_VERSION_KEY} and {CHALLENGER_DIGEST_KEY} come together")
        if self.challenger_version == self.model_version:
            raise ValueError("the challenger is the served model")
        return self

    def describe(self) -> str:
        """One line for messages and the ledger: ``v3 (sha256 1a2b…) on image 0123abcd4567``
        (``…@sha256:9f8e…`` when pinned by digest), with ``, v4 (sha256 …) in shadow`` while a
        challenger is shadowed."""
        image = self.image_tag + (f"@{self.image_digest[:19]}…" if self.image_digest else "")
        line = f"v{self.model_version} (sha256 {self.model_sha256[:12]}…) on image {image}"
        if self.challenger_sha256 is not None:
            line += (
                f", v{self.challenger_version} (sha256 {self.challenger_sha256[:12]}…) in shadow"
            )
        return line

    def model_env(self) -> str:
        """The text of ``model.env``."""
        text = f"{_HEADER}{VERSION_KEY}={self.model_version}\n{DIGEST_KEY}={self.model_sha256}\n"
        if self.challenger_version is not None:
            text += (
                f"{CHALLENGER_VERSION_KEY}={self.challenger_version}\n"
                f"{CHALLENGER_DIGEST_KEY}={self.challenger_sha256}\n"
            )
        return text

    def with_challenger(self, challenger: ServingPin | None) -> ServingPin:
        """This pin with `challenger`'s model in shadow beside it (None: no shadow)."""
        return ServingPin.model_validate(  # validated: not half a challenger, not the model
            {
                **self.model_dump(),
                "challenger_version": challenger.model_version if challenger else None,
                "challenger_sha256": challenger.model_sha256 if challenger else None,
            }
        )


def read_pin(overlay: Path) -> ServingPin | None:
    """The pin of the overlay `overlay` (its kustomization.yaml); None while unreleased.

    Raises:
        PipelineError: the overlay does not hold exactly one image tag and one complete model
            pin, or holds values no pin can have (naming the file).
    """
    text = overlay.read_text()
    tags = [m["tag"] for m in IMAGE_TAG.finditer(text)]
    digests = [m["digest"] for m in IMAGE_DIGEST.finditer(text)]
    if len(tags) != 1 or len(digests) > 1:
        raise PipelineError(
            f"{overlay}: expected exactly one images[].newTag and at most one images[].digest"
        )
    model_path = overlay.with_name(MODEL_FILE)
    if not model_path.is_file():
        raise PipelineError(
            f"{model_path} is missing: the overlay pins an image but no model",
            "add it (see platform/envs/dev/model.env) and list it in configMapGenerator",
        )
    values = {}
    for line in model_path.read_text().splitlines():
        if (match := _MODEL_LINE.match(line.strip())) is not None:
            values[match["key"]] = match["value"].strip()
    version, digest = values.get(VERSION_KEY), values.get(DIGEST_KEY)
    if UNRELEASED in (tags[0], version, digest):
        return None
    shadow = {
        "challenger_version": values.get(CHALLENGER_VERSION_KEY),
        "challenger_sha256": values.get(CHALLENGER_DIGEST_KEY),
    }
    try:
        return ServingPin(
            image_tag=tags[0],
            image_digest=digests[0] if digests else None,
            model_version=version,  # type: ignore[arg-type]
            model_sha256=digest,  # type: ignore[arg-type]
            **shadow,  # type: ignore[arg-type]
        )
    except ValueError as error:
        raise PipelineError(
            f"{overlay.parent}: the pin is not valid ({error.__class__.__name__}): image tag "
            f"{tags[0]!r}, image digest {digests[0] if digests else None!r}, "
            f"{VERSION_KEY}={version!r}, {DIGEST_KEY}={digest!r}, "
            f"{CHALLENGER_VERSION_KEY}={shadow['challenger_version']!r}, "
            f"{CHALLENGER_DIGEST_KEY}={shadow['challenger_sha256']!r}",
            "fix it by hand, or pin a version: mlops decisions rollback --to VERSION",
        ) from None


def write_pin(overlay: Path, pin: ServingPin) -> list[Path]:
    """Write `pin` into the overlay (image tag, the digest line when the pin has one, and
    ``model.env``, each atomically); returns the files changed."""
    from pipelines.storage import write_file_atomic

    def image(match: re.Match[str]) -> str:
        indent = match["indent"]
        digest = f"\n{indent}digest: {pin.image_digest}" if pin.image_digest else ""
        return f"{indent}newTag: {pin.image_tag}{digest}"

    text = IMAGE_TAG.sub(image, IMAGE_DIGEST.sub("", overlay.read_text()))
    write_file_atomic(overlay, text.encode())
    model_path = overlay.with_name(MODEL_FILE)
    write_file_atomic(model_path, pin.model_env().encode())
    return [overlay, model_path]
