"""The storage foundation: one layout over a main and a raw root."""

from __future__ import annotations

from pathlib import Path


def test_routed_storage_keeps_raw_keys_apart(tmp_path: Path) -> None:
    from pipelines.storage import open_storage

    storage = open_storage(str(tmp_path / "main"), str(tmp_path / "raw"))
    storage.write_bytes("raw/klines/A/1m/x.zip", b"z")
    storage.write_bytes("quarantine/klines/A/1m/d.csv", b"q")
    storage.write_bytes("curated/klines/1m/symbol=A/date=d/part-0.parquet", b"c")
    assert (tmp_path / "raw" / "raw/klines/A/1m/x.zip").read_bytes() == b"z"
    assert (tmp_path / "raw" / "quarantine/klines/A/1m/d.csv").exists()
    assert (tmp_path / "main" / "curated/klines/1m/symbol=A/date=d/part-0.parquet").exists()
    assert not (tmp_path / "main" / "raw").exists()
    assert storage.exists("raw/klines/A/1m/x.zip") and storage.list("raw/") == [
        "raw/klines/A/1m/x.zip"
    ]
