"""The local services (`mlops services`) for a test module: the ones CI started
(``MLOPS_TEST_SERVICES_HOME``), else a fresh set on free ports, stopped at the end."""

from __future__ import annotations

import json
import os
import random
import shlex
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pipelines.services.config import PORT_OFFSETS, Credentials
from pipelines.services.process import group_members
from tests.conftest import run_cli

INHERITED = (
    "MLFLOW_TRACKING_URI",
    "MLOPS_STORAGE_URL",
    "MLOPS_RAW_STORAGE_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
)


def _free_base() -> int:
    """A port base with every service port free on 127.0.0.1."""
    for _ in range(200):
        base = random.randrange(20000, 60000)
        try:
            for offset in PORT_OFFSETS.values():
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", base + offset))
        except OSError:
            continue
        return base
    raise RuntimeError("no free port range")


@dataclass
class Services:
    home: Path
    env: dict[str, str]
    up_seconds: float

    def cli(self, *args: str, extra: dict[str, str] | None = None) -> tuple[int, str, str]:
        result = run_cli(list(args), env={**self.env, **(extra or {})})
        return result.returncode, result.stdout, result.stderr

    def status(self) -> dict[str, object]:
        _, out, _ = self.cli("services", "status", "--json")
        return dict(json.loads(out))

    def pids(self) -> dict[str, int]:
        return {c["name"]: c["pid"] for c in self.status()["components"] if c["pid"]}  # type: ignore[attr-defined]

    def credentials(self) -> Credentials:
        return Credentials.model_validate_json(
            (self.home / "services" / "credentials.json").read_text()
        )

    def exports(self) -> dict[str, str]:
        code, out, err = self.cli("services", "env")
        assert code == 0, err
        pairs = {}
        for line in out.splitlines():
            name, _, value = line.removeprefix("export ").partition("=")
            pairs[name] = shlex.split(value)[0]
        return pairs


def running_services() -> Iterator[Services]:
    """The services, up for a module's fixture; stopped (and checked gone) at the end."""
    # .ci/run starts them in its own home (and always stops them); alone, the module makes one
    # under /tmp (searchable), not pytest's 0700 tmp tree: PostgreSQL runs as an unprivileged
    # account that must reach its data folder.
    given = os.environ.get("MLOPS_TEST_SERVICES_HOME")
    home = Path(given) if given else Path(tempfile.mkdtemp(prefix="mlops-svc-", dir="/tmp"))
    home.chmod(0o711)
    base = os.environ.get("MLOPS_SERVICES_PORT_BASE") if given else None
    env = {k: v for k, v in os.environ.items() if k not in INHERITED}
    env.update({"MLOPS_HOME": str(home), "MLOPS_SERVICES_PORT_BASE": base or str(_free_base())})
    svc = Services(home, env, 0.0)
    began = time.monotonic()
    code, _, err = svc.cli("services", "up")
    svc.up_seconds = time.monotonic() - began
    print(f"\nservices up in {svc.up_seconds:.1f}s", file=sys.stderr)
    try:
        assert code == 0, err
        yield svc
    finally:
        pids = svc.pids()
        code, _, err = svc.cli("services", "down")
        left = {name: group_members(pid) for name, pid in pids.items() if group_members(pid)}
        if not given:
            shutil.rmtree(home, ignore_errors=True)
        assert code == 0 and not left, f"{err} / still running: {left}"
