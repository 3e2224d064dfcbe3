"""What the inference log does while its storage is down: back off, and spill to local disk.

- ``Backoff``: the wait before the next write after consecutive failures — exponential from
  the flush interval, capped, with jitter (replicas that lost the same storage do not retry in
  step). Retrying at the flush cadence (and on every full batch) cost a core and half the
  throughput during an outage.
- ``Spill``: rows still unwritten at shutdown are kept as Parquet objects under a local
  directory, each under the storage key it was meant for; the next start sends them to the
  storage and deletes them. Writes are atomic (temporary name, then rename): a spill file is
  whole or absent.
"""

from __future__ import annotations

import io
import logging
import random
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

from pipelines import layout
from pipelines.storage import LocalStorage, Storage

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff: ``initial · 2^(failures-1)`` seconds, at most `cap`, times a
    random factor in [½, 1] (so never less than half the nominal wait)."""

    initial: float
    cap: float

    def nominal(self, failures: int) -> float:
        """The wait after `failures` consecutive failures (≥ 1), before jitter."""
        return min(self.cap, self.initial * 2.0 ** min(max(failures - 1, 0), 60))

    def delay(self, failures: int) -> float:
        """The wait after `failures` consecutive failures, jittered."""
        return self.nominal(failures) * (0.5 + 0.5 * random.random())


class Spill:
    """Inference-log objects kept on local disk under their storage keys (`root`/inference/…)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.disk = LocalStorage(root)

    def save(self, key: str, data: bytes) -> None:
        """Keep one object, atomically (a reader never sees part of it)."""
        self.disk.write_bytes(key, data)

    def keys(self, env: str) -> list[str]:
        """Objects of `env` waiting to be sent."""
        return self.disk.list(layout.inference_prefix(env))

    def resend(self, env: str, storage: Storage) -> int:
        """Send every object of `env` to `storage`, deleting each once it is stored; the number
        of rows sent. Stops at the first failure (the error propagates; what is left stays)."""
        rows = 0
        for key in self.keys(env):
            try:
                data = self.disk.read_bytes(key)
            except FileNotFoundError:  # another worker sent it meanwhile
                continue
            storage.write_bytes(key, data)  # same key, same bytes: a repeat is harmless
            self.disk.delete(key)
            rows += pq.read_metadata(io.BytesIO(data)).num_rows
            log.info("inference log: re-sent %s from the spill at %s", key, self.root)
        return rows
