"""The serving image repositories a candidate is resolved and checked in (`pipelines.ml.images`):
ECR read with ``DescribeImages`` (botocore's Stubber: no request leaves the process), the local
stand-in in an env's storage, and the choice between them by ``MLOPS_SERVING_REPOSITORY``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from pipelines import layout
from pipelines.errors import PipelineError
from pipelines.ml import images
from pipelines.settings import Settings
from pipelines.storage import LocalStorage

ACCOUNT, REGION = "222222222222", "eu-west-1"
HOST = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"
DIGEST = "sha256:" + "c" * 64


def ecr(stubbed: list[tuple[dict[str, str], Any]]) -> images.EcrRepository:
    client = boto3.client(
        "ecr", region_name=REGION, aws_access_key_id="AKIATEST", aws_secret_access_key="secret"
    )
    stubber = Stubber(client)
    for image, answer in stubbed:
        params = {"registryId": ACCOUNT, "repositoryName": "mlops-serving", "imageIds": [image]}
        if isinstance(answer, str):
            stubber.add_client_error("describe_images", answer, expected_params=params)
        else:
            stubber.add_response("describe_images", answer, expected_params=params)
    stubber.activate()
    return images.EcrRepository(ACCOUNT, REGION, "mlops-serving", client=client)


def test_ecr_resolves_a_tag_and_checks_a_digest() -> None:
    found = {"imageDetails": [{"imageDigest": DIGEST, "imageTags": ["0123456789ab"]}]}
    repository = ecr(
        [
            ({"imageTag": "0123456789ab"}, found),
            ({"imageDigest": DIGEST}, found),
            ({"imageTag": "fedcba987654"}, "ImageNotFoundException"),
            ({"imageDigest": "sha256:" + "d" * 64}, "ImageNotFoundException"),
        ]
    )
    assert repository.where == f"{HOST}/mlops-serving"
    assert repository.digest_of("0123456789ab") == DIGEST
    assert repository.holds(DIGEST)
    assert repository.digest_of("fedcba987654") is None
    assert not repository.holds("sha256:" + "d" * 64)


@pytest.mark.parametrize(
    ("code", "says"),
    [
        ("RepositoryNotFoundException", "does not exist"),
        ("AccessDeniedException", "needs ecr:DescribeImages"),
    ],
)
def test_ecr_failures_are_one_clear_error_without_credentials(code: str, says: str) -> None:
    repository = ecr([({"imageDigest": DIGEST}, code)])
    with pytest.raises(PipelineError, match=says) as raised:
        repository.holds(DIGEST)
    assert f"{HOST}/mlops-serving" in str(raised.value) and "secret" not in str(raised.value)


def test_the_setting_chooses_ecr_else_the_stand_in(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "data")
    local = images.repository_of(Settings(home=tmp_path), storage)
    assert isinstance(local, images.StandInRepository) and local.storage is storage
    cluster = Settings(home=tmp_path, serving_repository=f"{HOST}/mlops-serving")
    chosen = images.repository_of(cluster, storage)
    assert chosen == images.EcrRepository(ACCOUNT, REGION, "mlops-serving")
    assert images.push_stand_in(cluster, storage, "0123456789ab") is None  # the images job's
    assert storage.list("") == []
    with pytest.raises(ValueError, match="serving_repository"):
        Settings(home=tmp_path, serving_repository="https://user:pw@example.com/mlops-serving")


def test_the_stand_in_is_content_addressed_immutable_and_replicated(tmp_path: Path) -> None:
    dev, staging = LocalStorage(tmp_path / "dev"), LocalStorage(tmp_path / "staging")
    settings = Settings(home=tmp_path)
    digest = images.push_stand_in(settings, dev, "0123456789ab")
    assert digest is not None
    assert digest == images.manifest_digest(dev.read_bytes(layout.serving_image_manifest(digest)))
    assert images.push_stand_in(settings, dev, "0123456789ab") == digest  # a re-push: no-op
    repository = images.StandInRepository(dev)
    assert repository.digest_of("0123456789ab") == digest and repository.holds(digest)
    with pytest.raises(PipelineError, match="tag 0123456789ab already names"):
        repository.push("0123456789ab", b'{"another": "image"}')
    assert len(dev.list(layout.SERVING_IMAGES)) == 2  # refused whole: one manifest, one tag
    target = images.StandInRepository(staging)
    assert not target.holds(digest) and target.digest_of("0123456789ab") is None
    assert images.replicate_stand_in(dev, staging) == [digest]
    assert target.holds(digest) and target.digest_of("0123456789ab") == digest
    assert images.replicate_stand_in(dev, staging) == []  # nothing new to copy


def test_the_replicate_command_copies_into_a_later_env_and_refuses_without_a_stand_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    from typer.testing import CliRunner

    from pipelines.cli import app

    dev, staging = tmp_path / "dev", tmp_path / "staging"
    digest = images.push_stand_in(Settings(home=tmp_path), LocalStorage(dev), "0123456789ab")
    monkeypatch.setenv("MLOPS_HOME", str(tmp_path))
    monkeypatch.setenv("MLOPS_ENV", "dev")
    monkeypatch.setenv("MLOPS_STORAGE_URL", str(dev))
    monkeypatch.setenv(
        "MLOPS_CANDIDATE_STAGES", json.dumps({"dev": str(dev), "staging": str(staging)})
    )
    done = CliRunner().invoke(app, ["images", "replicate", "--to", "staging", "--json"])
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout) == {"from": "dev", "to": "staging", "copied": [digest]}
    assert images.StandInRepository(LocalStorage(staging)).holds(str(digest))
    refused = CliRunner().invoke(app, ["images", "replicate", "--to", "prod"])
    assert isinstance(refused.exception, PipelineError)
    assert "'prod' is not another env" in str(refused.exception)
    monkeypatch.setenv("MLOPS_SERVING_REPOSITORY", f"{HOST}/mlops-serving")
    refused = CliRunner().invoke(app, ["images", "replicate", "--to", "staging"])
    assert isinstance(refused.exception, PipelineError)
    assert "ECR replicates the serving repository" in str(refused.exception)
    assert images.replicate_stand_in(LocalStorage(dev), LocalStorage(staging)) == []
