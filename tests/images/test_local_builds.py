"""What the daemonless local build substitutes (docs/deploy.md, "Building images without a
Docker daemon") and how a container's manifest becomes its podman flags — in-process checks;
tests/images/test_built_images.py builds and runs the images."""

from __future__ import annotations

import os
import resource
import stat
from pathlib import Path
from typing import Any

import pytest

from pipelines.errors import PipelineError
from pipelines.images.containers import security_flags, serving_pod
from pipelines.images.engine import ulimit_flags
from pipelines.images.standins import dockerfile_refs, local_dockerfile, qualified
from tests.conftest import REPO
from tests.images.test_mlflow_image import rds_bundle_problems

BASE = "python:3.11.15-slim-bookworm"


def test_the_stand_ins_are_exactly_what_the_dockerfiles_name() -> None:
    assert dockerfile_refs((REPO / "Dockerfile").read_text()) == (
        [BASE],
        ["ghcr.io/astral-sh/uv:0.13.9"],
    )
    for image in ("mlflow", "serving"):
        text = (REPO / "images" / image / "Dockerfile").read_text()
        assert dockerfile_refs(text) == ([BASE], [])
    assert qualified(BASE) == f"docker.io/library/{BASE}"
    assert qualified("ghcr.io/astral-sh/uv:0.13.9") == "ghcr.io/astral-sh/uv:0.13.9"


def test_the_local_mlflow_build_copies_a_stand_in_for_the_rds_bundle_and_changes_nothing_else():
    real = (REPO / "images/mlflow/Dockerfile").read_text()
    local, files = local_dockerfile(real)
    (name,) = files
    assert f"COPY --chmod=644 {name} /etc/ssl/rds/global-bundle.pem" in local
    assert "stand-in" in files[name] and "truststore.pki.rds.amazonaws.com" in files[name]
    # the real Dockerfile keeps its pinned ADD; only the local text lost it
    assert rds_bundle_problems(real) == []
    assert rds_bundle_problems(local) == [
        "0 ADD lines fetch https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem "
        "(need exactly 1)"
    ]
    joined = real.replace("\\\n", " ").splitlines()
    changed = [a for a, b in zip(joined, local.splitlines(), strict=True) if a != b]
    assert len(changed) == 1 and changed[0].startswith("ADD --checksum=sha256:")
    # the pipeline and serving Dockerfiles need no substitution
    for dockerfile in ("Dockerfile", "images/serving/Dockerfile"):
        assert local_dockerfile((REPO / dockerfile).read_text())[1] == {}


def test_ulimits_stay_at_or_below_the_hard_limits() -> None:
    flags = dict(f.split("=", 1) for f in ulimit_flags() if "=" in f)
    for name, which in (("nofile", resource.RLIMIT_NOFILE), ("nproc", resource.RLIMIT_NPROC)):
        soft, hard = (int(v) for v in flags[name].split(":"))
        limit = resource.getrlimit(which)[1]
        assert soft == hard and (limit == resource.RLIM_INFINITY or hard <= limit)
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    assert int(flags["nproc"].split(":")[0]) <= pid_max


@pytest.mark.skipif(os.geteuid() != 0, reason="chowning an emptyDir folder needs root")
def test_the_serving_container_gets_its_manifests_user_read_only_root_and_mounts_only(
    tmp_path: Path,
) -> None:
    pod, container = serving_pod(REPO)
    flags = security_flags(pod, container, tmp_path)
    assert flags[:2] == ["--user", "1034:1034"]
    assert "--read-only" in flags and "--read-only-tmpfs=false" in flags
    assert "--cap-drop=all" in flags and not any(f.startswith("--cap-add") for f in flags)
    assert flags[flags.index("--security-opt") + 1] == "no-new-privileges"
    mounts = [flags[i + 1] for i, f in enumerate(flags) if f == "--mount"]
    assert mounts == [f"type=bind,source={tmp_path / 'tmp'},destination=/tmp"]
    for name in ("tmp",):  # an emptyDir as the kubelet makes it for fsGroup 1034
        info = (tmp_path / name).stat()
        assert stat.S_IMODE(info.st_mode) == 0o2777 and info.st_gid == 1034


def _pod() -> tuple[dict[str, Any], dict[str, Any]]:
    return serving_pod(REPO)


@pytest.mark.parametrize(
    ("plant", "message"),
    [
        (
            lambda p, c: (
                p["volumes"].append({"name": "x", "hostPath": {"path": "/"}})
                or c["volumeMounts"].append({"name": "x", "mountPath": "/host"})
            ),
            "not an emptyDir",
        ),
        (lambda p, c: c["securityContext"].update(privileged=True), "is privileged"),
        (lambda p, c: p["securityContext"].pop("runAsUser"), "names no runAsUser"),
        (
            lambda p, c: p["securityContext"].update(seccompProfile={"type": "Unconfined"}),
            "Unconfined",
        ),
    ],
)
def test_a_manifest_a_local_run_cannot_honour_is_refused(
    plant: Any, message: str, tmp_path: Path
) -> None:
    pod, container = _pod()
    plant(pod, container)
    with pytest.raises(PipelineError, match=message):
        security_flags(pod, container, tmp_path)
