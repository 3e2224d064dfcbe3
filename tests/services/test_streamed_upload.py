"""A streamed write to the local S3 (SeaweedFS): a multipart upload's object appears only when
every part is in, and an upload failing after its first part leaves no object and no open
multipart upload behind."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from pipelines.storage import S3Storage
from tests.services.cluster import Services, shared_services

pytestmark = pytest.mark.integration  # starts the local services

PART = 5 * 2**20  # S3's smallest part


@pytest.fixture(scope="module")
def services() -> Iterator[Services]:
    with shared_services() as running:
        yield running


@pytest.fixture
def storage(services: Services, monkeypatch: pytest.MonkeyPatch) -> S3Storage:
    for name in ("AWS_ENDPOINT_URL_S3", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, services.exports[name])
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    stored = S3Storage("curated", f"t-{uuid.uuid4().hex[:8]}")
    stored.UPLOAD_PART_BYTES = PART  # a 12 MiB object is three parts
    return stored


def _open_uploads(storage: S3Storage) -> list[Any]:
    answer = storage.client.list_multipart_uploads(Bucket="curated", Prefix=storage.prefix)
    return list(answer.get("Uploads", []))


def test_a_multipart_upload_appears_whole_and_a_failed_one_not_at_all(
    storage: S3Storage,
) -> None:
    body = os.urandom(12 * 2**20)
    parts: list[int] = []
    hook = "provide-client-params.s3.UploadPart"
    storage.client.meta.events.register(
        hook, lambda params, **_: parts.append(params["PartNumber"])
    )
    with storage.open_writer("features/1m/a/labelled.parquet") as out:
        out.write(body)
    assert len(parts) == 3  # it was a multipart upload
    assert storage.read_bytes("features/1m/a/labelled.parquet") == body

    def fail_after_the_first(params: dict[str, Any], **_: Any) -> None:
        if params["PartNumber"] > 1:
            raise ConnectionAbortedError("the writer's pod was evicted")

    storage.client.meta.events.register("provide-client-params.s3.UploadPart", fail_after_the_first)
    with (
        pytest.raises(ConnectionAbortedError),
        storage.open_writer("features/1m/b/labelled.parquet") as out,
    ):
        out.write(body)
    assert not storage.exists("features/1m/b/labelled.parquet")
    assert storage.list("features/") == ["features/1m/a/labelled.parquet"]
    assert _open_uploads(storage) == []  # the failed upload was aborted
