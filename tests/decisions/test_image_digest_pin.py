"""The serving image pinned by its manifest digest: written as the overlay's ``images[].digest``
beside ``newTag``, read back, rendered by kustomize as ``name:tag@sha256:…`` (what the kubelet
pulls), and dropped again by a pin without one (older history keeps working)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from pipelines.decisions.pin import ServingPin, read_pin, write_pin
from pipelines.errors import PipelineError
from pipelines.settings import REPO_ROOT
from tests.support.pins import make_pin
from tests.support.tools import kustomize_build

DIGEST = "sha256:" + "ab" * 32


@pytest.fixture
def platform(tmp_path: Path) -> Path:
    shutil.copytree(REPO_ROOT / "platform", tmp_path / "platform")
    return tmp_path / "platform"


def digest_pin(version: int) -> ServingPin:
    return ServingPin.model_validate({**make_pin(version).model_dump(), "image_digest": DIGEST})


def test_a_pin_with_a_digest_reads_back_and_a_pin_without_drops_it(platform: Path) -> None:
    overlay = platform / "envs" / "staging" / "kustomization.yaml"
    pinned = digest_pin(3)
    write_pin(overlay, pinned)
    text = overlay.read_text()
    assert f"    newTag: {pinned.image_tag}\n    digest: {DIGEST}\n" in text
    assert read_pin(overlay) == pinned
    assert "@sha256:abababababab" in pinned.describe()
    write_pin(overlay, pinned)  # the same pin again: still one digest line
    assert overlay.read_text() == text
    older = make_pin(2)  # a rollback to a version registered before image digests
    write_pin(overlay, older)
    assert "digest:" not in overlay.read_text()
    assert read_pin(overlay) == older and older.image_digest is None


def test_two_digests_or_a_malformed_one_are_refused(platform: Path) -> None:
    overlay = platform / "envs" / "staging" / "kustomization.yaml"
    write_pin(overlay, digest_pin(3))
    text = overlay.read_text()
    overlay.write_text(text.replace(f"digest: {DIGEST}", f"digest: {DIGEST}\n    digest: {DIGEST}"))
    with pytest.raises(PipelineError, match="at most one images"):
        read_pin(overlay)
    overlay.write_text(text.replace(DIGEST, "sha256:nothex"))
    with pytest.raises(PipelineError, match="image digest 'sha256:nothex'"):
        read_pin(overlay)


@pytest.mark.integration  # kubectl (kustomize)
def test_kustomize_renders_the_image_by_tag_and_digest(platform: Path) -> None:
    pinned = digest_pin(3)
    write_pin(platform / "envs" / "staging" / "kustomization.yaml", pinned)
    rendered = list(yaml.safe_load_all(kustomize_build(platform / "envs" / "staging")))
    images = {
        c["image"]
        for d in rendered
        if d and d["kind"] == "Deployment"
        for c in d["spec"]["template"]["spec"].get("containers", [])
    }
    assert images and all(i.endswith(f"/mlops-serving:{pinned.image_tag}@{DIGEST}") for i in images)
