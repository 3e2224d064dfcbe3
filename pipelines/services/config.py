"""Where the local services keep their state, which ports they use, and their credentials.

Everything lives under ``$MLOPS_HOME/services/``: ``credentials.json`` (mode 0600, generated
at the first ``up``), ``run/*.pid``, ``logs/*.log`` and one data folder per component.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import uuid
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ValidationError

from pipelines.errors import PipelineError

HOST = "127.0.0.1"
"""Every service binds this address only."""
PORT_BASE_ENV = "MLOPS_SERVICES_PORT_BASE"
DEFAULT_PORT_BASE = 15400
PORT_OFFSETS = {
    "postgres": 0,
    "s3": 1,
    "mlflow": 2,
    "weed_master": 3,
    "weed_master_grpc": 4,
    "weed_volume": 5,
    "weed_volume_grpc": 6,
    "weed_filer": 7,
    "weed_filer_grpc": 8,
    "weed_s3_grpc": 9,
}
"""Each port is ``$MLOPS_SERVICES_PORT_BASE`` (default 15400) plus its offset."""
BUCKETS = ("raw", "curated", "artifacts")
"""The buckets the stack creates; made at every ``up`` (idempotent)."""
LAYOUT_ROOT = "v1"
"""Where the storage layout starts in each data bucket, as on the cluster."""
REGION = "us-east-1"


def ports() -> dict[str, int]:
    """Every service port, from ``MLOPS_SERVICES_PORT_BASE``.

    Raises:
        PipelineError: if the variable is not a number leaving room for every port.
    """
    raw = os.environ.get(PORT_BASE_ENV, str(DEFAULT_PORT_BASE))
    top = 65535 - max(PORT_OFFSETS.values())
    if not raw.isdigit() or not 1024 <= int(raw) <= top:
        raise PipelineError(
            f"{PORT_BASE_ENV}={raw!r} is not a port base",
            f"use a number from 1024 to {top}; ports base..base+{max(PORT_OFFSETS.values())} "
            "are used",
        )
    return {name: int(raw) + offset for name, offset in PORT_OFFSETS.items()}


@dataclass(frozen=True)
class ServicesPaths:
    """The folders and files of ``$MLOPS_HOME/services/``."""

    root: Path

    @property
    def credentials(self) -> Path:
        """The generated credentials (mode 0600)."""
        return self.root / "credentials.json"

    @property
    def state(self) -> Path:
        """The ports of the running services, written by ``up`` for ``status`` and ``env``."""
        return self.root / "state.json"

    @property
    def logs(self) -> Path:
        """One log file per component."""
        return self.root / "logs"

    @property
    def run(self) -> Path:
        """PID files."""
        return self.root / "run"

    def data(self, component: str) -> Path:
        """The data folder of `component` (``postgres``, ``seaweedfs``, ``mlflow``)."""
        return self.root / component

    def log(self, component: str) -> Path:
        """The log of `component`."""
        return self.logs / f"{component}.log"


class Credentials(BaseModel):
    """Secrets of the local services; generated once, never printed except by ``env``."""

    s3_access_key: str
    s3_secret_key: str
    postgres_superuser_password: str
    mlflow_db_password: str
    weed_jwt_write: str
    weed_jwt_read: str
    filer_jwt_write: str
    filer_jwt_read: str

    @classmethod
    def generate(cls) -> Credentials:
        """Fresh random credentials."""
        return cls(
            s3_access_key="MLOPS" + secrets.token_hex(8).upper(),
            s3_secret_key=secrets.token_urlsafe(30),
            postgres_superuser_password=secrets.token_urlsafe(24),
            mlflow_db_password=secrets.token_urlsafe(24),
            weed_jwt_write=secrets.token_urlsafe(24),
            weed_jwt_read=secrets.token_urlsafe(24),
            filer_jwt_write=secrets.token_urlsafe(24),
            filer_jwt_read=secrets.token_urlsafe(24),
        )


def write_private(path: Path, data: str, mode: int = 0o600) -> None:
    """Write `path` whole with `mode` from its creation (never readable by others, even
    briefly): an exclusive temp file beside it, then rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(data)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def load_credentials(paths: ServicesPaths, create: bool) -> Credentials:
    """The stored credentials; with `create`, generated and stored on first use.

    Raises:
        PipelineError: if there are none yet (and not `create`) or the file is not valid.
    """
    if not paths.credentials.exists():
        if not create:
            raise PipelineError(
                f"no local services under {paths.root}", "start them: mlops services up"
            )
        credentials = Credentials.generate()
        write_private(paths.credentials, credentials.model_dump_json(indent=2))
        return credentials
    try:
        return Credentials.model_validate_json(paths.credentials.read_text())
    except ValidationError:
        raise PipelineError(
            f"{paths.credentials} is not a valid credentials file",
            "stop the services, remove the services folder and run: mlops services up",
        ) from None
