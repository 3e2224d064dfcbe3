"""A hostile or compromised archive source (issue 15 #8): the fetcher reads only from the
source itself — a redirect to another host or to ``file://`` and a symlink out of a mirror are
refused, never followed — and never echoes what it read into the errors a run stores."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pipelines import layout
from pipelines.data.fetch import fetch
from pipelines.errors import PipelineError
from pipelines.settings import Settings
from pipelines.storage import LocalStorage
from tests.data.test_fetch import DAY, url_path

pytestmark = pytest.mark.hostile
SECRET = "TOPSECRET-credential-material"


def secret_file(tmp_path: Path) -> Path:
    secret = tmp_path / "outside" / "secret.txt"
    secret.parent.mkdir(parents=True)
    secret.write_text(SECRET)
    return secret


@pytest.mark.integration  # the fault-injecting archive server
@pytest.mark.parametrize("where", ["file", "other-host"])
def test_a_redirect_out_of_the_source_is_refused_not_followed(
    mirror_root: Path, tmp_path: Path, settings: Settings, archive_server, where: str
) -> None:
    target = url_path("BTCUSDT", DAY[0])
    location = (
        secret_file(tmp_path).as_uri()
        if where == "file"
        else f"http://127.0.0.2:9/{target.lstrip('/')}"  # refused before any connection
    )
    server = archive_server(mirror_root, {target: [f"redirect:{location}"] * 5})
    storage = LocalStorage(tmp_path / "data")
    with pytest.raises(PipelineError) as caught:
        fetch(settings, storage, server.url, ["BTCUSDT"], "1m", DAY[0], DAY[0])
    message = str(caught.value)
    assert "outside the source" in message and SECRET not in message
    assert len(server.hits(target)) == 1, "a refused redirect is not retried"
    assert not storage.exists(layout.raw_zip("BTCUSDT", "1m", DAY[0]))


def test_a_symlink_out_of_a_file_mirror_is_refused(
    mirror_root: Path, tmp_path: Path, settings: Settings
) -> None:
    mirror = tmp_path / "mirror"
    shutil.copytree(mirror_root, mirror)
    zip_file = mirror / url_path("BTCUSDT", DAY[0]).lstrip("/")
    zip_file.unlink()
    zip_file.symlink_to(secret_file(tmp_path))
    storage = LocalStorage(tmp_path / "data")
    with pytest.raises(PipelineError) as caught:
        fetch(settings, storage, mirror.as_uri(), ["BTCUSDT"], "1m", DAY[0], DAY[1])
    message = str(caught.value)
    assert "resolves outside the source" in message and SECRET not in message
    assert storage.exists(layout.raw_zip("BTCUSDT", "1m", DAY[1]))  # the rest is fetched
    assert not storage.exists(layout.raw_zip("BTCUSDT", "1m", DAY[0]))


def test_what_a_bad_checksum_file_holds_is_not_echoed(
    mirror_root: Path, tmp_path: Path, settings: Settings
) -> None:
    mirror = tmp_path / "mirror"
    shutil.copytree(mirror_root, mirror)
    checksum = mirror / (url_path("BTCUSDT", DAY[0]).lstrip("/") + ".CHECKSUM")
    checksum.write_text(SECRET * 3)
    with pytest.raises(PipelineError) as caught:
        fetch(
            settings,
            LocalStorage(tmp_path / "d"),
            mirror.as_uri(),
            ["BTCUSDT"],
            "1m",
            DAY[0],
            DAY[0],
        )
    assert "not a sha256sum line" in str(caught.value) and SECRET not in str(caught.value)


def test_a_source_with_a_credential_is_refused_without_echoing_it(
    settings: Settings, tmp_path: Path
) -> None:
    storage = LocalStorage(tmp_path / "data")
    with pytest.raises(PipelineError) as caught:
        fetch(
            settings,
            storage,
            "https://reader:s3cret@127.0.0.1:9/",
            ["BTCUSDT"],
            "1m",
            DAY[0],
            DAY[0],
        )
    assert "user or password" in str(caught.value)
    assert "s3cret" not in str(caught.value) and "reader" not in str(caught.value)
    assert not storage.list("raw/")  # refused before anything was asked of the source
