"""Serving pins for tests: a valid two-part pin per model version."""

from __future__ import annotations

import hashlib

from pipelines.decisions.pin import ServingPin


def make_pin(version: int, image: str = "0123456789ab") -> ServingPin:
    """A pin of model `version` (its digest derived from the version) on serving image `image`."""
    digest = hashlib.sha256(f"model v{version}".encode()).hexdigest()
    return ServingPin(image_tag=image, model_version=version, model_sha256=digest)
