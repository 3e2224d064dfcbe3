"""Finding 15, MLflow's half: the backend store URI makes libpq verify RDS (``verify-full``
against the RDS CA bundle the image carries), and the password in it reaches the server and the
schema migration only through the environment, never their command lines."""

from __future__ import annotations

import functools
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from psycopg.conninfo import conninfo_to_dict

from policies.engine import Resource, evaluate, load_pack_config
from stacks.components.database import RDS_CA_BUNDLE, postgres_uri
from stacks.components.mlflow import BACKEND_URI_ENV, UPGRADE_COMMAND
from stacks.config import PROJECT, STACKS_DIR
from tests.conftest import REPO

VERIFYING = {"verify-full"}
"""The only sslmode that checks both the chain and the host name (``verify-ca`` skips the name;
``require`` checks nothing but encrypts)."""


@functools.cache
def mocked_run(env: str) -> Any:
    """One mocked run of the program (update mode), secrets unwrapped."""
    from stacks.offline.harness import run_program
    from stacks.offline.plan import load_config_file

    config = load_config_file(STACKS_DIR / f"Pulumi.{env}.yaml")
    return run_program(STACKS_DIR, project=PROJECT, stack=env, config=config, preview=False)


def backend_uri(env: str) -> str:
    (secret,) = [
        r
        for r in mocked_run(env).resources
        if r.type == "kubernetes:core/v1:Secret"
        and r.inputs["metadata"]["name"] == "mlflow-backend"
    ]
    return str(secret.inputs["stringData"]["backend-store-uri"])


def tls_problems(uri: str) -> list[str]:
    """What is wrong with how libpq would authenticate the server behind `uri` (libpq's own
    parser reads it: ``psycopg.conninfo``)."""
    params = conninfo_to_dict(uri)
    problems = []
    if params.get("sslmode") not in VERIFYING:
        problems.append(f"sslmode is {params.get('sslmode')!r}, not verify-full")
    if params.get("sslrootcert") != RDS_CA_BUNDLE:
        problems.append(
            f"sslrootcert is {params.get('sslrootcert')!r}, not the image's RDS CA bundle"
        )
    return problems


@pytest.mark.parametrize("env", ["dev", "staging", "prod"])
def test_the_backend_store_uri_verifies_the_rds_certificate(env: str) -> None:
    uri = backend_uri(env)
    assert tls_problems(uri) == []
    params = conninfo_to_dict(uri)
    assert str(params["host"]).endswith(".db.local")
    assert str(params["password"]).startswith("mock-password")


def test_sqlalchemy_hands_the_tls_settings_to_the_driver() -> None:
    """MLflow builds its engine with SQLAlchemy: the query parameters reach psycopg as they are."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(backend_uri("prod"))
    _, kwargs = engine.dialect.create_connect_args(engine.url)
    assert kwargs["sslmode"] == "verify-full" and kwargs["sslrootcert"] == RDS_CA_BUNDLE


@pytest.mark.parametrize(
    ("uri", "problem"),
    [
        (f"postgresql://u:p@db:5432/mlflow?sslrootcert={RDS_CA_BUNDLE}", "sslmode is None"),
        (
            f"postgresql://u:p@db:5432/mlflow?sslmode=require&sslrootcert={RDS_CA_BUNDLE}",
            "sslmode is 'require'",
        ),
        (
            f"postgresql://u:p@db:5432/mlflow?sslmode=verify-ca&sslrootcert={RDS_CA_BUNDLE}",
            "sslmode is 'verify-ca'",
        ),
        ("postgresql://u:p@db:5432/mlflow?sslmode=verify-full", "sslrootcert is None"),
        (
            "postgresql://u:p@db:5432/mlflow?sslmode=verify-full&sslrootcert=system",
            "sslrootcert is 'system'",  # the system store holds no RDS CA
        ),
    ],
)
def test_a_uri_that_does_not_verify_the_server_is_caught(uri: str, problem: str) -> None:
    problems = tls_problems(uri)
    assert len(problems) == 1 and problems[0].startswith(problem), problems


def test_the_uri_quotes_what_it_holds() -> None:
    uri = postgres_uri("mlflow", "p@ss:w/rd?", "db.local", 5432, "mlflow", RDS_CA_BUNDLE)
    params = conninfo_to_dict(uri)
    assert params["password"] == "p@ss:w/rd?" and params["host"] == "db.local"
    assert tls_problems(uri) == []


def _containers(resource: Any) -> list[dict[str, Any]]:
    return list(resource.inputs["spec"]["template"]["spec"]["containers"])


def test_the_password_reaches_mlflow_only_through_its_environment() -> None:
    resources = mocked_run("prod").resources
    workloads = [
        r
        for r in resources
        if r.type in ("kubernetes:apps/v1:Deployment", "kubernetes:batch/v1:Job")
        and r.inputs["metadata"].get("namespace") == "mlflow"
    ]
    assert len(workloads) == 2  # the server and its schema upgrade
    password = str(conninfo_to_dict(backend_uri("prod"))["password"])
    for workload in workloads:
        (container,) = _containers(workload)
        argv = " ".join([*container.get("command", []), *container.get("args", [])])
        assert password not in argv and f"$({BACKEND_URI_ENV})" not in argv
        (source,) = [e for e in container["env"] if e["name"] == BACKEND_URI_ENV]
        assert source["valueFrom"]["secretKeyRef"] == {
            "name": "mlflow-backend",
            "key": "backend-store-uri",
        }
    captured = [Resource(r.type, r.name, r.inputs, urn=r.name) for r in workloads]
    violations, _ = evaluate(captured, load_pack_config("prod"))
    assert [v.rule for v in violations if v.rule == "k8s-no-secret-in-argv"] == []


@pytest.mark.integration  # importing mlflow.cli runs `uname -p` (platform.processor)
def test_mlflow_server_reads_the_backend_store_uri_from_that_variable() -> None:
    """The installed MLflow's own CLI definition (the image pins the same version)."""
    from mlflow.cli import server

    (option,) = [p for p in server.params if p.name == "backend_store_uri"]
    assert option.envvar == BACKEND_URI_ENV


@pytest.mark.integration  # starts the migration's own command, as the Job's container does
def test_the_upgrade_command_migrates_the_database_named_only_in_its_environment(
    tmp_path: Path,
) -> None:
    database = tmp_path / "mlflow.db"
    uri = f"sqlite:///{database}"
    assert UPGRADE_COMMAND[0] == "python"
    done = subprocess.run(
        [sys.executable, *UPGRADE_COMMAND[1:]],
        env={**os.environ, BACKEND_URI_ENV: uri, "MLFLOW_DISABLE_TELEMETRY": "true"},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert uri not in " ".join(UPGRADE_COMMAND)
    with sqlite3.connect(database) as connection:
        tables = {row[0] for row in connection.execute("select name from sqlite_master")}
    assert {"experiments", "registered_models", "model_version_tags", "alembic_version"} <= tables
    # and a missing variable is one clear failure, not a migration of some default database
    done = subprocess.run(
        [sys.executable, *UPGRADE_COMMAND[1:]],
        env={k: v for k, v in os.environ.items() if k != BACKEND_URI_ENV},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1
    assert (
        done.stderr.strip() == f"{BACKEND_URI_ENV} is not set: the mlflow-backend Secret is missing"
    )
    assert set(tmp_path.iterdir()) == {database}
