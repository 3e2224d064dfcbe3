"""Run a container as its manifest runs the pod: the pod's and container's ``securityContext``
(user, group, fsGroup, read-only root filesystem, dropped capabilities, no privilege
escalation) and only the writable mounts the pod declares (each ``emptyDir`` a fresh host
folder, mode 2777 and group fsGroup as the kubelet makes it). Nothing else is writable: podman's
own tmpfs on /tmp, /run and /var/tmp under ``--read-only`` is turned off.

Environment variables reach the container through a 0600 ``--env-file``, never its argv.
"""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from pipelines.errors import PipelineError
from pipelines.images.engine import Podman, ulimit_flags

SERVING_DEPLOYMENT = "platform/base/serving/deployment.yaml"
SERVING_CONTAINER = "server"


def _user(pod: Mapping[str, Any], context: Mapping[str, Any]) -> tuple[int, int]:
    uid = context.get("runAsUser", pod.get("runAsUser"))
    gid = context.get("runAsGroup", pod.get("runAsGroup", uid))
    if uid is None:
        raise PipelineError(
            "the manifest names no runAsUser: the local run would trust the image's USER",
            "set securityContext.runAsUser in the manifest",
        )
    return int(uid), int(gid)


def security_flags(
    pod: Mapping[str, Any], container: Mapping[str, Any], scratch: Path
) -> list[str]:
    """``podman run`` flags for `container` of pod spec `pod`; emptyDir folders go in `scratch`.

    Raises:
        PipelineError: the manifest asks for what a local run cannot give (a privileged
            container, a seccomp profile other than RuntimeDefault, a non-emptyDir volume).
    """
    pod_context = pod.get("securityContext", {})
    context = container.get("securityContext", {})
    uid, gid = _user(pod_context, context)
    fs_group = pod_context.get("fsGroup")
    if fs_group is not None:  # (numbers from a YAML or a Pulumi program may arrive as floats)
        fs_group = int(fs_group)
    flags = ["--user", f"{uid}:{gid}", *ulimit_flags()]
    if fs_group is not None:
        flags += ["--group-add", str(fs_group)]
    if context.get("privileged"):
        raise PipelineError(f"container {container.get('name')} is privileged: not run locally")
    seccomp = context.get("seccompProfile", pod_context.get("seccompProfile", {}))
    if seccomp.get("type", "RuntimeDefault") != "RuntimeDefault":
        raise PipelineError(f"seccomp profile {seccomp.get('type')} is not supported locally")
    if context.get("readOnlyRootFilesystem"):
        flags += ["--read-only", "--read-only-tmpfs=false"]
    if context.get("allowPrivilegeEscalation") is False:
        flags += ["--security-opt", "no-new-privileges"]
    capabilities = context.get("capabilities", {})
    flags += [f"--cap-drop={c.lower()}" for c in capabilities.get("drop", [])]
    flags += [f"--cap-add={c.lower()}" for c in capabilities.get("add", [])]
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    mounts = sorted(container.get("volumeMounts", []), key=lambda m: m["mountPath"].count("/"))
    for mount in mounts:
        volume = volumes.get(mount["name"], {})
        if "emptyDir" not in volume:
            raise PipelineError(
                f"volume {mount['name']} of container {container.get('name')} is not an "
                "emptyDir: only emptyDir volumes are mounted locally"
            )
        folder = scratch / mount["name"]
        folder.mkdir(parents=True, exist_ok=True)
        os.chown(folder, 0, fs_group if fs_group is not None else gid)
        folder.chmod(0o2777)
        read_only = ",ro" if mount.get("readOnly") else ""
        flags += [
            "--mount",
            f"type=bind,source={folder},destination={mount['mountPath']}{read_only}",
        ]
    return flags


def manifest_env(container: Mapping[str, Any]) -> dict[str, str]:
    """The container's literal ``env`` values (``valueFrom`` entries are the caller's)."""
    return {e["name"]: str(e["value"]) for e in container.get("env", []) if "value" in e}


def serving_pod(repo: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The serving Deployment's pod spec and its server container (platform/base/serving/)."""
    deployment = yaml.safe_load((repo / SERVING_DEPLOYMENT).read_text())
    pod = deployment["spec"]["template"]["spec"]
    (container,) = [c for c in pod["containers"] if c["name"] == SERVING_CONTAINER]
    return pod, container


def write_env_file(path: Path, env: Mapping[str, str]) -> Path:
    """A 0600 ``--env-file`` (one ``NAME=value`` a line; podman reads values verbatim).

    Raises:
        PipelineError: a value holds a newline (an env file cannot carry it).
    """
    bad = [name for name, value in env.items() if "\n" in value]
    if bad:
        raise PipelineError(f"environment variable(s) {', '.join(bad)} hold a newline")
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.writelines(f"{name}={value}\n" for name, value in env.items())
    return path


@contextmanager
def container_argv(
    podman: Podman,
    image: str,
    pod: Mapping[str, Any],
    container: Mapping[str, Any],
    env: Mapping[str, str],
    scratch: Path,
    name: str,
    args: list[str] | None = None,
) -> Iterator[list[str]]:
    """The ``podman run`` command line of `container` on the host network, with exactly the
    environment `env` (compose it from `manifest_env`); the env file is removed once the block
    ends (podman reads it when it creates the container)."""
    scratch.mkdir(parents=True, exist_ok=True)
    env_file = write_env_file(scratch / ".env", env)
    entrypoint = (
        [f"--entrypoint={json.dumps(container['command'])}"] if "command" in container else []
    )
    try:
        yield podman.argv(
            "run",
            "--rm",
            "--name",
            name,
            "--replace",
            "--pull=never",
            "--network=host",
            "--env-file",
            str(env_file),
            *security_flags(pod, container, scratch / "volumes"),
            *entrypoint,
            image,
            *(args if args is not None else []),
        )
    finally:
        env_file.unlink(missing_ok=True)


def describe(argv: list[str]) -> str:
    """The command line as a shell would show it."""
    return shlex.join(argv)
