"""The shadow half of the GitOps pin: the challenger's version and archive digest in
``model.env`` beside the champion's — written and read back by the pipelines, parsed by the
serving entry point, rendered by kustomize into the pods' ``serving-model`` ConfigMap."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from pipelines.decisions.pin import (
    CHALLENGER_DIGEST_KEY,
    CHALLENGER_VERSION_KEY,
    ServingPin,
    read_pin,
    write_pin,
)
from pipelines.errors import PipelineError
from tests.conftest import REPO

CHAMPION = ServingPin(image_tag="0123456789ab", model_version=3, model_sha256="a" * 64)
CHALLENGER = ServingPin(image_tag="0123456789ab", model_version=4, model_sha256="b" * 64)


@pytest.fixture
def overlay(tmp_path: Path) -> Path:
    """A copy of the checked-in platform/, its dev overlay's kustomization.yaml."""
    shutil.copytree(REPO / "platform", tmp_path / "platform")
    return tmp_path / "platform" / "envs" / "dev" / "kustomization.yaml"


def model_env(overlay: Path) -> dict[str, str]:
    lines = overlay.with_name("model.env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))


def test_a_challenger_pinned_beside_the_champion_reads_back_and_is_dropped_by_a_plain_pin(
    overlay: Path,
) -> None:
    shadowed = CHAMPION.with_challenger(CHALLENGER)
    write_pin(overlay, shadowed)
    assert read_pin(overlay) == shadowed
    assert model_env(overlay) == {
        "MLOPS_MODEL_VERSION": "3",
        "MLOPS_MODEL_SHA256": "a" * 64,
        CHALLENGER_VERSION_KEY: "4",
        CHALLENGER_DIGEST_KEY: "b" * 64,
    }
    assert "v4 (sha256 bbbbbbbbbbbb…) in shadow" in shadowed.describe()
    write_pin(overlay, CHAMPION)  # a promotion or rollback pins one model
    assert read_pin(overlay) == CHAMPION and CHALLENGER_VERSION_KEY not in model_env(overlay)
    assert shadowed.with_challenger(None) == CHAMPION


def test_the_serving_entry_point_reads_the_challenger_keys_the_pin_writes(
    overlay: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bentos.start import ChallengerPin

    write_pin(overlay, CHAMPION.with_challenger(CHALLENGER))
    for key, value in model_env(overlay).items():
        monkeypatch.setenv(key, value)
    read = ChallengerPin()
    assert (read.version, read.sha256) == (4, "b" * 64)


def test_half_a_challenger_pin_or_the_champion_as_its_own_challenger_is_refused(
    overlay: Path,
) -> None:
    write_pin(overlay, CHAMPION)
    path = overlay.with_name("model.env")
    path.write_text(path.read_text() + f"{CHALLENGER_VERSION_KEY}=4\n")
    with pytest.raises(PipelineError, match=CHALLENGER_DIGEST_KEY):
        read_pin(overlay)
    with pytest.raises(ValueError, match="the challenger is the served model"):
        CHAMPION.with_challenger(CHAMPION)


@pytest.mark.integration
def test_kustomize_renders_the_challenger_into_the_pods_configmap(overlay: Path) -> None:
    from tests.support.tools import kustomize_build

    write_pin(overlay, CHAMPION.with_challenger(CHALLENGER))
    docs = [d for d in yaml.safe_load_all(kustomize_build(overlay.parent)) if d]
    (config,) = [
        d
        for d in docs
        if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("serving-model")
    ]
    assert config["data"][CHALLENGER_VERSION_KEY] == "4"
    assert config["data"][CHALLENGER_DIGEST_KEY] == "b" * 64
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert {"configMapRef": {"name": config["metadata"]["name"]}} in container["envFrom"]
