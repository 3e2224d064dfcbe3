"""Reading the inference log the serving side writes (``inference/{env}/{version}/{date}/``)."""

from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines import layout
from pipelines.storage import Storage


def read_inference(storage: Storage, env: str, model_version: str | None = None) -> pa.Table:
    """Every logged prediction of `env` (optionally one model version), oldest file first."""
    prefix = layout.inference_prefix(env, model_version)
    tables = [
        pq.read_table(io.BytesIO(storage.read_bytes(key)))
        for key in storage.list(prefix)
        if key.endswith(".parquet")
    ]
    return pa.concat_tables(tables, promote_options="default") if tables else pa.table({})
