"""`Storage.create`: write-once keys, refused by the store itself when the key exists.

Locally a hard link names the complete temp (``link`` fails on an existing name, atomically);
on S3 one PUT with ``If-None-Match: *`` (botocore's Stubber checks the request, no server:
that a given S3-compatible server honours the header is NOT shown here).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from pipelines.errors import PipelineError
from pipelines.storage import LocalStorage, S3Storage, open_storage

KEY = "decisions/dev/20261130T000000000000Z-gate.json"


def test_local_create_never_replaces_and_leaves_no_temp(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    storage.create(KEY, b"first")
    with pytest.raises(FileExistsError, match="written once"):
        storage.create(KEY, b"second")
    assert storage.read_bytes(KEY) == b"first"
    assert list((tmp_path / ".tmp").iterdir()) == []  # the refused bytes left nothing behind
    assert storage.list("decisions/") == [KEY]


def test_local_create_has_one_winner_among_racing_writers(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    start = threading.Barrier(8)
    won: list[bytes] = []
    lost: list[bytes] = []

    def writer(n: int) -> None:
        body = f"writer {n}".encode() * 10_000
        start.wait()
        try:
            storage.create(KEY, body)
            won.append(body)
        except FileExistsError:
            lost.append(body)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(won) == 1 and len(lost) == 7
    assert storage.read_bytes(KEY) == won[0]  # whole: the winner's bytes, never a mix


def test_routed_storage_creates_where_the_key_lives(tmp_path: Path) -> None:
    storage = open_storage(str(tmp_path / "main"), str(tmp_path / "raw"))
    storage.create("quarantine/klines/A/1m/d.csv", b"q")
    storage.create(KEY, b"r")
    assert (tmp_path / "raw/quarantine/klines/A/1m/d.csv").read_bytes() == b"q"
    assert (tmp_path / "main" / KEY).read_bytes() == b"r"
    with pytest.raises(FileExistsError):
        storage.create(KEY, b"again")


def stubbed() -> tuple[S3Storage, Stubber]:
    client = boto3.client(
        "s3",
        region_name="eu-west-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",  # a stub: no request leaves the process
    )
    return S3Storage("bucket", "v1", client=client), Stubber(client)


def put(body: bytes) -> dict[str, Any]:
    return {"Bucket": "bucket", "Key": f"v1/{KEY}", "Body": body, "IfNoneMatch": "*"}


def test_s3_create_is_one_conditional_put() -> None:
    storage, stub = stubbed()
    stub.add_response("put_object", {"ETag": '"e"'}, put(b"first"))
    stub.add_client_error(
        "put_object",
        "PreconditionFailed",
        "At least one of the pre-conditions failed",
        412,
        expected_params=put(b"second"),
    )
    with stub:
        storage.create(KEY, b"first")
        with pytest.raises(FileExistsError, match=f"s3://bucket/v1/{KEY} exists"):
            storage.create(KEY, b"second")
    stub.assert_no_pending_responses()


def test_s3_create_retries_a_conflict_and_refuses_a_server_without_the_header() -> None:
    storage, stub = stubbed()
    stub.add_client_error(
        "put_object", "ConditionalRequestConflict", "conflict", 409, expected_params=put(b"x")
    )
    stub.add_client_error(
        "put_object", "PreconditionFailed", "exists", 412, expected_params=put(b"x")
    )
    stub.add_client_error("put_object", "NotImplemented", "no", 501, expected_params=put(b"y"))
    with stub:
        with pytest.raises(FileExistsError):  # the retry met the winner's object
            storage.create(KEY, b"x")
        with pytest.raises(PipelineError, match="does not implement conditional writes"):
            storage.create(KEY, b"y")
    stub.assert_no_pending_responses()
