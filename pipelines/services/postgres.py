"""PostgreSQL from Debian's server package: ``initdb`` under ``$MLOPS_HOME/services/postgres``,
run as an unprivileged account, on 127.0.0.1 only (no Unix socket), password (SCRAM) auth.

MLflow gets its own role and database (``mlflow``), not the superuser.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import stat
import subprocess
import time
from pathlib import Path
from typing import Any

from pipelines.errors import PipelineError
from pipelines.services.config import HOST, Credentials, ServicesPaths, write_private
from pipelines.services.process import PidFile, as_user, spawn

SUPERUSER = "mlops"
MLFLOW_ROLE = "mlflow"
MLFLOW_DB = "mlflow"
SERVICE_USER_ENV = "MLOPS_SERVICES_USER"
DEFAULT_SERVICE_USER = "mlops-services"
BINDIR_ENV = "MLOPS_PG_BINDIR"
STOP_SIGNAL = signal.SIGINT
"""PostgreSQL's "fast" shutdown: SIGTERM ("smart") would wait for every client to leave."""


def bindir() -> Path:
    """The folder of ``initdb`` and ``postgres``: ``$MLOPS_PG_BINDIR``, else the one on PATH,
    else the newest ``/usr/lib/postgresql/*/bin`` (Debian does not put them on PATH).

    Raises:
        PipelineError: if the server binaries are not installed.
    """
    candidates = []
    if os.environ.get(BINDIR_ENV):
        candidates.append(Path(os.environ[BINDIR_ENV]))
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    debian = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    candidates.extend(reversed(debian))
    for folder in candidates:
        if (folder / "initdb").is_file() and (folder / "postgres").is_file():
            return folder
    raise PipelineError(
        "PostgreSQL server binaries (initdb, postgres) not found",
        f"apt-get install postgresql, or set {BINDIR_ENV} to the folder holding them",
    )


def service_user() -> str | None:
    """The account PostgreSQL runs as: None (ourselves) unless we are root, which PostgreSQL
    refuses; then ``$MLOPS_SERVICES_USER`` (default ``mlops-services``), created as a system
    account without a login shell if missing."""
    if os.geteuid() != 0:
        return None
    name = os.environ.get(SERVICE_USER_ENV, DEFAULT_SERVICE_USER)
    try:
        pwd.getpwnam(name)
    except KeyError:
        subprocess.run(
            [
                *("useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent"),
                *("--shell", "/usr/sbin/nologin", name),
            ],
            check=True,
            capture_output=True,
        )
    return name


def _check_reachable(folder: Path, user: str) -> None:
    """Fail clearly if `user` cannot traverse every ancestor of `folder`."""
    account = pwd.getpwnam(user)
    for ancestor in reversed(folder.resolve().parents):
        mode = ancestor.stat()
        ok = (
            mode.st_mode & stat.S_IXOTH
            or (mode.st_uid == account.pw_uid and mode.st_mode & stat.S_IXUSR)
            or (mode.st_gid == account.pw_gid and mode.st_mode & stat.S_IXGRP)
        )
        if not ok:
            raise PipelineError(
                f"PostgreSQL runs as {user!r}, which cannot reach {folder}: {ancestor} is not "
                "searchable by others",
                f"chmod o+x {ancestor}, or set MLOPS_HOME to a folder under a searchable path",
            )


def _prepare_data_folder(folder: Path, user: str | None) -> None:
    """The data folder, owned by the service account, mode 0700; its parents searchable."""
    folder.mkdir(parents=True, exist_ok=True)
    if user is not None:
        folder.parent.chmod(0o711)
        _check_reachable(folder, user)
        account = pwd.getpwnam(user)
        os.chown(folder, account.pw_uid, account.pw_gid)
    folder.chmod(0o700)


def initialize(paths: ServicesPaths, credentials: Credentials, user: str | None) -> bool:
    """``initdb`` once (SCRAM auth, superuser password from a 0600 file removed afterwards);
    True if it ran."""
    folder = paths.data("postgres")
    _prepare_data_folder(folder, user)
    data = folder / "data"
    if (data / "PG_VERSION").exists():
        return False
    pwfile = folder / "initdb.pw"
    fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(credentials.postgres_superuser_password + "\n")
    try:
        if user is not None:
            account = pwd.getpwnam(user)
            os.chown(pwfile, account.pw_uid, account.pw_gid)
        result = subprocess.run(
            [
                *(str(bindir() / "initdb"), "-D", str(data), "-U", SUPERUSER),
                *("--pwfile", str(pwfile), "--auth=scram-sha-256", "--encoding=UTF8"),
                "--locale=C.UTF-8",
            ],
            cwd=folder,
            **as_user(user),
            capture_output=True,
            text=True,
        )
    finally:
        pwfile.unlink()
    if result.returncode != 0:
        raise PipelineError(
            f"initdb failed in {data}: {result.stderr.strip()[-400:]}",
            f"remove {data} and run `mlops services up` again",
        )
    return True


def start(paths: ServicesPaths, port: int, pid_file: PidFile, user: str | None) -> int:
    """Start the server detached on 127.0.0.1:`port` (TCP only); returns its PID."""
    folder = paths.data("postgres")
    argv = [str(bindir() / "postgres"), "-D", str(folder / "data"), "-p", str(port)]
    argv += ["-c", f"listen_addresses={HOST}", "-c", "unix_socket_directories="]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
    return spawn(argv, env=env, log=paths.log("postgres"), pid_file=pid_file, cwd=folder, user=user)


def _connect(port: int, user: str, password: str, dbname: str) -> Any:
    """A psycopg connection (the driver of the ``mlflow-server`` dependency group)."""
    try:
        import psycopg
    except ImportError:
        raise PipelineError(
            "psycopg is not installed", "run `uv sync` (the mlflow-server dependency group)"
        ) from None
    return psycopg.connect(
        host=HOST,
        port=port,
        user=user,
        password=password,
        dbname=dbname,
        connect_timeout=3,
        autocommit=True,
    )


def healthy(port: int, credentials: Credentials) -> bool:
    """MLflow's role can log in to its database and run a query."""
    try:
        with _connect(port, MLFLOW_ROLE, credentials.mlflow_db_password, MLFLOW_DB) as conn:
            return bool(conn.execute("SELECT 1").fetchone() == (1,))
    except Exception:
        return False


def wait_ready(port: int, credentials: Credentials, pid_file: PidFile, timeout: float) -> None:
    """Wait until the superuser can log in, then make MLflow's role and database if missing.

    Raises:
        PipelineError: if the server exits or does not answer within `timeout` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            conn = _connect(port, SUPERUSER, credentials.postgres_superuser_password, "postgres")
            break
        except PipelineError:
            raise
        except Exception:
            if pid_file.running() is None or time.monotonic() > deadline:
                raise PipelineError(
                    f"PostgreSQL did not come up on {HOST}:{port}",
                    "see services/logs/postgres.log under MLOPS_HOME",
                ) from None
            time.sleep(0.3)
    with conn:
        _ensure_mlflow_database(conn, credentials.mlflow_db_password)


def _ensure_mlflow_database(conn: Any, password: str) -> None:
    """MLflow's role (its SCRAM verifier computed here: the password never reaches the
    server or its log) and a database it owns."""
    from psycopg import sql

    verifier = conn.pgconn.encrypt_password(
        password.encode(), MLFLOW_ROLE.encode(), b"scram-sha-256"
    ).decode()
    exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (MLFLOW_ROLE,)).fetchone()
    verb = "ALTER" if exists else "CREATE"
    conn.execute(
        sql.SQL(verb + " ROLE {} LOGIN PASSWORD {}").format(
            sql.Identifier(MLFLOW_ROLE), sql.Literal(verifier)
        )
    )
    if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (MLFLOW_DB,)).fetchone():
        with contextlib.suppress(Exception):  # a concurrent `up` made it first
            conn.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(MLFLOW_DB), sql.Identifier(MLFLOW_ROLE)
                )
            )


def backend_uri(port: int) -> str:
    """MLflow's backend store URI, without a password (libpq reads it from ``PGPASSFILE``)."""
    return f"postgresql+psycopg://{MLFLOW_ROLE}@{HOST}:{port}/{MLFLOW_DB}"


def write_passfile(path: Path, port: int, credentials: Credentials) -> None:
    """The ``.pgpass`` file MLflow's server reads its database password from (mode 0600)."""
    line = f"{HOST}:{port}:{MLFLOW_DB}:{MLFLOW_ROLE}:{credentials.mlflow_db_password}\n"
    write_private(path, line)
