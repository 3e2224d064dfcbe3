"""Reading the inference log the serving side writes (``inference/{env}/{version}/{date}/``)."""

from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.storage import Storage


def read_inference(storage: Storage, env: str, model_version: str | None = None) -> pa.Table:
    """Every logged prediction of `env` (optionally one model version), oldest file first."""
    prefix = f"inference/{env}/" + (f"{model_version}/" if model_version else "")
    tables = [
        pq.read_table(io.BytesIO(storage.read_bytes(key)))
        for key in storage.list(prefix)
        if key.endswith(".parquet")
    ]
    return pa.concat_tables(tables, promote_options="default") if tables else pa.table({})
