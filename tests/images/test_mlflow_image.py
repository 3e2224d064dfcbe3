"""The cluster's MLflow server image (images/mlflow/): what it installs is what it needs.

The upstream ``ghcr.io/mlflow/mlflow`` image installs MLflow alone — no PostgreSQL driver, no
boto3 — so it can use neither the RDS backend store nor S3 artifacts. Ours pins the `mlflow-server`
dependency group of uv.lock with hashes. (Running it against a real PostgreSQL + S3 is the
cluster-on-one-machine work; here the requirement set is checked and its drivers imported.)
"""

from __future__ import annotations

import re
import subprocess
from importlib.metadata import version

import pytest

from tests.conftest import REPO

IMAGE = REPO / "images" / "mlflow"


def pins() -> dict[str, str]:
    text = (IMAGE / "requirements.txt").read_text()
    return {m[0].lower(): m[1] for m in re.findall(r"^([A-Za-z0-9_.-]+)==([^\s;\\]+)", text, re.M)}


def test_the_server_is_the_clients_mlflow_with_the_drivers_it_needs() -> None:
    pinned = pins()
    assert pinned["mlflow"] == version("mlflow"), "server and client MLflow must be one version"
    for needed in ("psycopg", "psycopg-binary", "boto3", "sqlalchemy"):
        assert needed in pinned, f"{needed} missing from the MLflow image"
    text = (IMAGE / "requirements.txt").read_text()
    blocks = re.split(r"\n(?=[A-Za-z0-9])", text.strip())
    unhashed = [b.split()[0] for b in blocks if "--hash=sha256:" not in b]
    # (a package may be pinned twice, under different environment markers)
    assert len(blocks) >= len(pinned) and unhashed == [], "every pin carries its hash"


def test_the_requirement_set_reaches_postgresql_and_s3() -> None:
    import boto3
    import sqlalchemy

    # SQLAlchemy 2 maps a bare postgresql:// URI (what the stack's backend Secret holds) to
    # psycopg 3; creating the engine loads the driver without connecting.
    # the drivers imported here are the very versions the image pins
    pinned = pins()
    for name in ("sqlalchemy", "psycopg", "boto3"):
        assert version(name) == pinned[name], name
    engine = sqlalchemy.create_engine("postgresql://mlflow@127.0.0.1:5432/mlflow")
    assert engine.dialect.driver == "psycopg"
    assert boto3.session.Session(region_name="eu-west-1").client("s3").meta.region_name


def test_the_dockerfile_is_pinned_hashed_and_non_root() -> None:
    text = (IMAGE / "Dockerfile").read_text()
    (base,) = re.findall(r"^FROM (\S+)", text, flags=re.MULTILINE)
    assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+", base), base
    assert "--require-hashes -r /tmp/requirements.txt" in text
    assert re.search(r"^USER 10001", text, flags=re.MULTILINE)
    assert re.search(r'^ENTRYPOINT \["mlflow"\]', text, flags=re.MULTILINE)


@pytest.mark.integration  # runs `uv export`
def test_the_image_requirements_are_fresh_from_the_lock() -> None:
    fresh = subprocess.run(
        [
            "uv",
            "export",
            "--only-group",
            "mlflow-server",
            "--frozen",
            "--no-header",
            "--no-annotate",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    assert (IMAGE / "requirements.txt").read_text() == fresh, "run: make golden"
