"""The cluster's MLflow server image (images/mlflow/): what it installs is what it needs.

The upstream ``ghcr.io/mlflow/mlflow`` image installs MLflow alone — no PostgreSQL driver, no
boto3 — so it can use neither the RDS backend store nor S3 artifacts. Ours pins the `mlflow-server`
dependency group of uv.lock with hashes. (Running it against a real PostgreSQL + S3 is the
cluster-on-one-machine work; here the requirement set is checked and its drivers imported.)
"""

from __future__ import annotations

import re
from importlib.metadata import version
from typing import Any

import pytest

from tests.conftest import REPO
from tests.images import locked_requirements

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
    fresh = locked_requirements("mlflow-server")
    assert (IMAGE / "requirements.txt").read_text() == fresh, "run: make golden"


RDS_BUNDLE_URL = "https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem"
_ADD = re.compile(r"^ADD\s+((?:--\S+\s+)*)(\S+)\s+(\S+)\s*$", re.MULTILINE)


def rds_bundle_problems(dockerfile: str) -> list[str]:
    """What keeps the image from carrying the RDS CA bundle where the backend store URI points
    (`stacks.components.database.RDS_CA_BUNDLE`), pinned and readable by the server's user."""
    from stacks.components.database import RDS_CA_BUNDLE

    text = dockerfile.replace("\\\n", " ")
    adds = [m for m in _ADD.finditer(text) if m[2] == RDS_BUNDLE_URL]
    if len(adds) != 1:
        return [f"{len(adds)} ADD lines fetch {RDS_BUNDLE_URL} (need exactly 1)"]
    flags, _, destination = adds[0].groups()
    problems = []
    if destination != RDS_CA_BUNDLE:
        problems.append(f"the bundle lands at {destination}, the URI reads {RDS_CA_BUNDLE}")
    if not re.search(r"--checksum=sha256:[0-9a-f]{64}(\s|$)", flags):
        problems.append("the bundle is not pinned (ADD --checksum=sha256:<digest>)")
    if "--chmod=644" not in flags.split():
        problems.append("the bundle keeps ADD's 0600 from a URL: the server's user cannot read it")
    return problems


def test_the_image_carries_the_pinned_rds_ca_bundle_where_the_uri_reads_it() -> None:
    assert rds_bundle_problems((IMAGE / "Dockerfile").read_text()) == []


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda t: re.sub(r"--checksum=sha256:[0-9a-f]+ ", "", t), "not pinned"),
        (lambda t: t.replace("/etc/ssl/rds/global-bundle.pem", "/tmp/rds.pem"), "lands at"),
        (lambda t: t.replace("--chmod=644 ", ""), "cannot read it"),
        (lambda t: t.replace(RDS_BUNDLE_URL, "https://example.invalid/ca.pem"), "0 ADD lines"),
    ],
)
def test_a_dockerfile_without_the_pinned_bundle_is_caught(change: Any, problem: str) -> None:
    (found,) = rds_bundle_problems(change((IMAGE / "Dockerfile").read_text()))
    assert problem in found
