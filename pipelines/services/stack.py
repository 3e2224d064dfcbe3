"""Start, stop and report the local services in order: PostgreSQL, SeaweedFS S3, MLflow.

``up`` is idempotent (a running component is left alone and reported), ``down`` stops them in
reverse order by PID and checks each process group is gone, and the data stays under
``$MLOPS_HOME/services/`` from one ``up`` to the next.
"""

from __future__ import annotations

import json
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from pipelines.errors import PipelineError
from pipelines.services import mlflow_server, postgres, seaweedfs
from pipelines.services.config import (
    HOST,
    LAYOUT_ROOT,
    PORT_BASE_ENV,
    REGION,
    ServicesPaths,
    load_credentials,
    ports,
    write_private,
)
from pipelines.services.process import PidFile, stop

COMPONENTS = ("postgres", "seaweedfs", "mlflow")
"""In start order; stopped in reverse."""
COMPONENT_PORTS = {
    "postgres": ("postgres",),
    "seaweedfs": (
        "s3",
        "weed_master",
        "weed_master_grpc",
        "weed_volume",
        "weed_volume_grpc",
        "weed_filer",
        "weed_filer_grpc",
        "weed_s3_grpc",
    ),
    "mlflow": ("mlflow",),
}
START_TIMEOUT = {"postgres": 60.0, "seaweedfs": 90.0, "mlflow": 180.0}
"""Seconds each component has to answer after it starts."""


@dataclass(frozen=True)
class ComponentStatus:
    """One component as ``status --json`` reports it (never a secret)."""

    name: str
    endpoint: str
    running: bool
    healthy: bool
    pid: int | None
    log: str


def services_paths(home: Path) -> ServicesPaths:
    """The services folder of `home` (``$MLOPS_HOME``)."""
    return ServicesPaths(home.resolve() / "services")


def _pid_file(paths: ServicesPaths, name: str) -> PidFile:
    return PidFile(paths.run / f"{name}.pid")


def _endpoint(name: str, port_map: dict[str, int]) -> str:
    if name == "postgres":
        return f"postgresql://{HOST}:{port_map['postgres']}/{postgres.MLFLOW_DB}"
    if name == "seaweedfs":
        return seaweedfs.endpoint(port_map)
    return mlflow_server.url(port_map)


def _recorded_ports(paths: ServicesPaths) -> dict[str, int] | None:
    try:
        recorded = json.loads(paths.state.read_text())["ports"]
    except (FileNotFoundError, ValueError, KeyError):
        return None
    return {str(k): int(v) for k, v in recorded.items()}


def _port_free(port: int) -> bool:
    """Nothing listens on `port` (connections of a stopped server in TIME_WAIT don't count:
    the servers set SO_REUSEADDR too)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def _check_ports_free(name: str, port_map: dict[str, int]) -> None:
    taken = [port_map[key] for key in COMPONENT_PORTS[name] if not _port_free(port_map[key])]
    if taken:
        raise PipelineError(
            f"{name} cannot start: port(s) {', '.join(map(str, taken))} on {HOST} are in use "
            "by another program",
            f"stop it, or set {PORT_BASE_ENV} to another base (ports base..base+9)",
        )


def up(home: Path, report: Callable[[str, str], None]) -> list[ComponentStatus]:
    """Start every component that is not running; `report(component, message)` tells progress.

    Raises:
        PipelineError: naming the component that could not start (its log has the details).
    """
    paths = services_paths(home)
    paths.root.mkdir(parents=True, exist_ok=True)
    paths.root.chmod(0o711)
    paths.logs.mkdir(mode=0o700, exist_ok=True)
    credentials = load_credentials(paths, create=True)
    running = {name: _pid_file(paths, name).running() for name in COMPONENTS}
    recorded = _recorded_ports(paths)
    port_map = recorded if recorded and any(running.values()) else ports()
    write_private(paths.state, json.dumps({"ports": port_map}, indent=2), mode=0o644)
    for name in COMPONENTS:
        pid_file = _pid_file(paths, name)
        if running[name] is not None:
            report(name, f"already running (pid {running[name]})")
            continue
        pid_file.clear()  # a stale record: its process is gone
        _check_ports_free(name, port_map)
        began = time.monotonic()
        report(name, "starting")
        if name == "postgres":
            user = postgres.service_user()
            if postgres.initialize(paths, credentials, user):
                report(name, "initialized a new cluster (initdb)")
            postgres.start(paths, port_map["postgres"], pid_file, user)
            postgres.wait_ready(port_map["postgres"], credentials, pid_file, START_TIMEOUT[name])
        elif name == "seaweedfs":
            seaweedfs.start(paths, port_map, credentials, pid_file)
            seaweedfs.wait_ready(port_map, credentials, pid_file, START_TIMEOUT[name])
        else:
            mlflow_server.start(paths, port_map, credentials, pid_file)
            mlflow_server.wait_ready(port_map, pid_file, START_TIMEOUT[name])
        report(name, f"up at {_endpoint(name, port_map)} in {time.monotonic() - began:.1f}s")
    return status(home)


def down(home: Path, report: Callable[[str, str], None]) -> list[str]:
    """Stop every running component, MLflow first; returns the names that were running.

    Raises:
        PipelineError: if a process survives SIGKILL.
    """
    stopped = []
    for name in reversed(COMPONENTS):
        was = stop_one(home, name)
        report(name, "stopped" if was else "not running")
        if was:
            stopped.append(name)
    return stopped


def stop_one(home: Path, name: str) -> bool:
    """Stop one component by PID (the others keep running); True if it was running.

    Raises:
        PipelineError: for an unknown component, or if its process survives SIGKILL.
    """
    if name not in COMPONENTS:
        raise PipelineError(f"unknown service {name!r}", f"use one of {', '.join(COMPONENTS)}")
    signal_ = postgres.STOP_SIGNAL if name == "postgres" else signal.SIGTERM
    return stop(name, _pid_file(services_paths(home), name), signal_)


def restart(home: Path, name: str, report: Callable[[str, str], None]) -> list[ComponentStatus]:
    """Stop one component and start it again (on its recorded ports, with its data), then
    start any other that is not running — the way back after a fault.

    Raises:
        PipelineError: as `stop_one` and `up`.
    """
    report(name, "stopped" if stop_one(home, name) else "was not running")
    return up(home, report)


def status(home: Path) -> list[ComponentStatus]:
    """Each component's endpoint, PID and health (a live check against the service)."""
    paths = services_paths(home)
    port_map = _recorded_ports(paths) or ports()
    credentials = load_credentials(paths, create=False) if paths.credentials.exists() else None
    result = []
    for name in COMPONENTS:
        pid = _pid_file(paths, name).running()
        healthy = False
        if pid is not None and credentials is not None:
            if name == "postgres":
                healthy = postgres.healthy(port_map["postgres"], credentials)
            elif name == "seaweedfs":
                healthy = seaweedfs.healthy(port_map, credentials)
            else:
                healthy = mlflow_server.healthy(port_map)
        endpoint = _endpoint(name, port_map)
        log = str(paths.log(name))
        result.append(ComponentStatus(name, endpoint, pid is not None, healthy, pid, log))
    return result


def status_document(home: Path) -> dict[str, object]:
    """``status --json``: the services folder and each component, as plain data."""
    components = status(home)
    return {
        "home": str(services_paths(home).root),
        "up": all(c.running and c.healthy for c in components),
        "components": [asdict(c) for c in components],
    }


def env_exports(home: Path) -> dict[str, str]:
    """The variables that make every ``mlops`` command use the running services.

    Raises:
        PipelineError: if they are not all running.
    """
    paths = services_paths(home)
    port_map = _recorded_ports(paths)
    if port_map is None or any(_pid_file(paths, n).running() is None for n in COMPONENTS):
        raise PipelineError("the local services are not running", "start them: mlops services up")
    credentials = load_credentials(paths, create=False)
    s3 = seaweedfs.endpoint(port_map)
    return {
        "MLOPS_STORAGE_URL": f"s3://curated/{LAYOUT_ROOT}",
        "MLOPS_RAW_STORAGE_URL": f"s3://raw/{LAYOUT_ROOT}",
        "MLFLOW_TRACKING_URI": mlflow_server.url(port_map),
        "AWS_ENDPOINT_URL_S3": s3,
        "MLFLOW_S3_ENDPOINT_URL": s3,
        "AWS_ACCESS_KEY_ID": credentials.s3_access_key,
        "AWS_SECRET_ACCESS_KEY": credentials.s3_secret_key,
        "AWS_DEFAULT_REGION": REGION,
    }
