"""``mlops serve --container``: the serving image as the cluster runs it, on this machine.

The pin is the registry version's own (the tags its package step set: the serving image's code
digest and the model archive's sha256, `pipelines.decisions.promotion.pin_of`), the container
is the serving Deployment's (platform/base/serving/deployment.yaml: user, read-only root, no
capabilities, its emptyDir mounts), and the storage is the one this shell's env names (e.g. the
local services: ``eval "$(mlops services env)"``).
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

from pipelines.decisions.pin import DIGEST_KEY, VERSION_KEY, ServingPin
from pipelines.errors import PipelineError
from pipelines.images.containers import container_argv, manifest_env, serving_pod
from pipelines.images.engine import Podman
from pipelines.settings import Settings

FORWARDED_PREFIXES = ("MLOPS_", "AWS_")
"""What of this shell's environment the container gets (the ``serving-env`` ConfigMap's part
and the S3 credentials IRSA gives a pod); the manifest's own values win."""


def resolve_pin(settings: Settings, alias: str | None, version: int | None) -> ServingPin:
    """The pin of `version`, or of the version `alias` (default champion) points to.

    Raises:
        PipelineError: no such version or alias, or the version was never packaged.
    """
    from pipelines.decisions.promotion import pin_of
    from pipelines.ml.registry import list_versions
    from pipelines.ml.tracking import client

    rows = list_versions(settings)
    wanted = alias or "champion"
    chosen = [r for r in rows if (r["version"] == version if version else wanted in r["aliases"])]
    if not chosen:
        what = f"version {version}" if version else f"alias {wanted!r}"
        known = ", ".join(str(r["version"]) for r in rows) or "none"
        raise PipelineError(f"{settings.model_name} has no {what}", f"versions: {known}")
    return pin_of(client(settings), settings.model_name, int(chosen[0]["version"]))


def container_env(pin: ServingPin, environ: Mapping[str, str]) -> dict[str, str]:
    """The serving container's environment: the forwarded settings and the model pin."""
    env = {k: v for k, v in environ.items() if k.startswith(FORWARDED_PREFIXES)}
    env.pop("MLOPS_HOME", None)  # the manifest's (/tmp/mlops, on the emptyDir)
    env[VERSION_KEY] = str(pin.model_version)
    env[DIGEST_KEY] = pin.model_sha256
    return env


def image_of(pin: ServingPin) -> str:
    """The local serving image the pin names."""
    return f"localhost/mlops-serving:{pin.image_tag}"


def run_serving(
    repo: Path,
    podman: Podman,
    pin: ServingPin,
    host: str,
    port: int,
    announce: Callable[[str], None],
) -> int:
    """Run the serving container in the foreground (Ctrl-C/SIGTERM stop it); its exit code.

    Raises:
        PipelineError: the image the pin names is not built.
    """
    image = image_of(pin)
    if not podman.image_exists(image):
        raise PipelineError(
            f"the pin names the serving image {image}, which is not built here",
            "build it from the commit whose serving code has that digest: "
            "mlops images build serving",
        )
    pod, container = serving_pod(repo)
    env = {**container_env(pin, os.environ), **manifest_env(container)}
    with tempfile.TemporaryDirectory(prefix="mlops-serving-") as tmp:
        scratch = Path(tmp)
        scratch.chmod(0o755)
        name = f"mlops-serving-{port}"
        args = ["--host", host, "--port", str(port)]
        with container_argv(podman, image, pod, container, env, scratch, name, args) as argv:
            announce(f"serving {pin.describe()} from {image} on http://{host}:{port}")
            return subprocess.run(argv, check=False).returncode
