"""Streamed writes (`Storage.open_writer`): the object appears whole when the block ends, and
never in part — not while it is written, not after a failure (locally and on a stubbed S3; the
real multipart path is tested against the local S3 in tests/services/test_streamed_upload.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from botocore.stub import Stubber

from pipelines.errors import PipelineError
from pipelines.storage import LocalStorage, S3Storage, open_storage
from tests.support.s3_stub import ENDPOINT, KEY_ID, SECRET, stub_s3

KEY = "features/1m/abc/labelled.parquet"


def test_a_local_object_appears_whole_only_when_the_block_ends(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    with storage.open_writer(KEY) as out:
        out.write(b"first half ")
        out.flush()
        assert not storage.exists(KEY) and storage.list("features/") == []
        out.write(b"second half")
    assert storage.read_bytes(KEY) == b"first half second half"
    assert list((tmp_path / LocalStorage.TMP).iterdir()) == []


def test_a_local_write_failing_midway_keeps_the_old_object_and_leaves_no_temp(
    tmp_path: Path,
) -> None:
    storage = LocalStorage(tmp_path)
    storage.write_bytes(KEY, b"old")
    with pytest.raises(RuntimeError, match="killed"), storage.open_writer(KEY) as out:
        out.write(b"half of the new one")
        raise RuntimeError("killed")
    assert storage.read_bytes(KEY) == b"old"
    assert list((tmp_path / LocalStorage.TMP).iterdir()) == []


def test_a_routed_writer_writes_where_the_key_lives(tmp_path: Path) -> None:
    storage = open_storage(str(tmp_path / "main"), str(tmp_path / "raw"))
    for key in (KEY, "raw/klines/A/1m/x.zip"):
        with storage.open_writer(key) as out:
            out.write(key.encode())
    assert (tmp_path / "main" / KEY).read_bytes() == KEY.encode()
    assert (tmp_path / "raw" / "raw/klines/A/1m/x.zip").exists()
    assert not (tmp_path / "main" / "raw").exists()


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> S3Storage:
    return stub_s3(monkeypatch)


def _capture_puts(storage: S3Storage) -> list[dict[str, Any]]:
    """The PutObject requests the client builds (key and body bytes)."""
    puts: list[dict[str, Any]] = []

    def capture(params: dict[str, Any], **_: Any) -> None:
        puts.append({"Key": params["Key"], "Body": params["Body"].read()})
        params["Body"].seek(0)

    storage.client.meta.events.register("provide-client-params.s3.PutObject", capture)
    return puts


def test_an_s3_object_is_uploaded_from_the_spool_once_the_block_ends(s3: S3Storage) -> None:
    puts = _capture_puts(s3)
    with Stubber(s3.client) as stub:
        stub.add_response("put_object", {})
        with s3.open_writer(KEY) as out:
            out.write(b"rows")
            spooled = Path(out.name)
            assert spooled.exists() and puts == []  # nothing is sent while writing
        stub.assert_no_pending_responses()
    assert puts == [{"Key": f"v1/{KEY}", "Body": b"rows"}]
    assert not spooled.exists()


def test_an_s3_write_failing_midway_sends_nothing_and_leaves_no_spool_file(
    s3: S3Storage,
) -> None:
    puts = _capture_puts(s3)
    with (
        Stubber(s3.client),  # no response queued: any request would fail the test
        pytest.raises(RuntimeError, match="killed"),
        s3.open_writer(KEY) as out,
    ):
        out.write(b"half")
        spooled = Path(out.name)
        raise RuntimeError("killed")
    assert puts == [] and not spooled.exists()


def test_a_refused_upload_names_the_endpoint_and_key_id_never_the_secret(s3: S3Storage) -> None:
    with Stubber(s3.client) as stub:
        stub.add_client_error("put_object", "SignatureDoesNotMatch", http_status_code=403)
        with pytest.raises(PipelineError) as caught, s3.open_writer(KEY) as out:
            out.write(b"rows")
    message = str(caught.value)
    assert ENDPOINT in message and KEY_ID in message and "SignatureDoesNotMatch" in message
    assert f"s3://curated/v1/{KEY}" in message and SECRET not in message
