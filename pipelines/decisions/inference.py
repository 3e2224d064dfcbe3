"""Reading the inference log the serving side writes (``inference/{env}/{version}/{date}/``).

Each row has a ``role``: ``served`` (the answer the caller got, from the version of the
partition) or ``shadow`` (a challenger's answer to the same request, same ``request_id``, never
returned; its ``model_version`` column names the challenger). Files written before shadowing
have no ``role`` column: their rows are ``served``.
"""

from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipelines import layout
from pipelines.storage import Storage

SERVED = "served"
SHADOW = "shadow"


def read_inference(
    storage: Storage, env: str, model_version: str | None = None, role: str | None = SERVED
) -> pa.Table:
    """Logged predictions of `env` (optionally one model version's partition), oldest file
    first: those of `role` (default: the answers served; None: every row)."""
    prefix = layout.inference_prefix(env, model_version)
    tables = [
        pq.read_table(io.BytesIO(storage.read_bytes(key)))
        for key in storage.list(prefix)
        if key.endswith(".parquet")
    ]
    if not tables:
        return pa.table({})
    table = pa.concat_tables(tables, promote_options="default")
    if role is None or "role" not in table.column_names:
        return table if role in (None, SERVED) else table.slice(0, 0)
    return table.filter(pc.equal(pc.fill_null(table["role"], SERVED), role))
