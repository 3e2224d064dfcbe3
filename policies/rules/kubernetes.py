"""Kubernetes workloads and Argo CronWorkflows: resources, non-root, immutable images, probes,
no Secret on a command line."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from policies.rules.base import Report, as_list, get, rule, who

WORKLOAD_KINDS = {
    "kubernetes:apps/v1:Deployment": ("spec", "template", "spec"),
    "kubernetes:apps/v1:StatefulSet": ("spec", "template", "spec"),
    "kubernetes:apps/v1:DaemonSet": ("spec", "template", "spec"),
    "kubernetes:batch/v1:Job": ("spec", "template", "spec"),
    "kubernetes:batch/v1:CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
    "kubernetes:core/v1:Pod": ("spec",),
}
CRON_WORKFLOW = "kubernetes:argoproj.io/v1alpha1:CronWorkflow"


def _containers(args: Any) -> list[tuple[str, Mapping[str, Any], Mapping[str, Any]]]:
    """(where, container, pod security context) of every container a workload runs."""
    t, p = args.resource_type, args.props
    found: list[tuple[str, Mapping[str, Any], Mapping[str, Any]]] = []
    if t in WORKLOAD_KINDS:
        pod = get(p, *WORKLOAD_KINDS[t], default={}) or {}
        pod_security = get(pod, "securityContext", default={}) or {}
        for group in ("initContainers", "containers"):
            for c in as_list(get(pod, group)):
                found.append((f"{group}[{get(c, 'name')}]", c, pod_security))
    elif t == CRON_WORKFLOW:
        workflow = get(p, "spec", "workflowSpec", default={}) or {}
        pod_security = get(workflow, "securityContext", default={}) or {}
        for template in as_list(get(workflow, "templates")):
            for key in ("container", "script"):
                c = get(template, key)
                if c:
                    found.append((f"templates[{get(template, 'name')}].{key}", c, pod_security))
    return found


@rule("k8s-resources", "Requests and limits on every container", "mandatory")
def k8s_resources(args: Any, report: Report) -> None:
    """CPU and memory requests and limits on every container."""
    for where, c, _ in _containers(args):
        missing = [
            f"{kind}.{r}"
            for kind in ("requests", "limits")
            for r in ("cpu", "memory")
            if not get(c, "resources", kind, r)
        ]
        if missing:
            report(f"{who(args)}: {where} lacks resources {', '.join(missing)}")


@rule("k8s-run-as-non-root", "Containers run as non-root", "mandatory")
def k8s_non_root(args: Any, report: Report) -> None:
    """Containers run as non-root: ``runAsNonRoot`` on the pod or on every container."""
    for where, c, pod in _containers(args):
        if (
            get(c, "securityContext", "runAsNonRoot") is not True
            and get(pod, "runAsNonRoot") is not True
        ):
            report(f"{who(args)}: {where} securityContext.runAsNonRoot is not true")


def _untagged(image: str) -> bool:
    if "@sha256:" in image:
        return False
    name = image.rsplit("/", 1)[-1]
    return ":" not in name or name.endswith(":latest")


@rule("k8s-image-tag", "No :latest or untagged images", "mandatory")
def k8s_image_tags(args: Any, report: Report) -> None:
    """No ``:latest`` or untagged images."""
    for where, c, _ in _containers(args):
        image = str(get(c, "image", default=""))
        if _untagged(image):
            report(f"{who(args)}: {where} image {image!r} has no immutable tag")


@rule("k8s-probes", "Liveness and readiness probes on Deployments", "mandatory")
def k8s_probes(args: Any, report: Report) -> None:
    """Liveness and readiness probes on every Deployment container."""
    if args.resource_type != "kubernetes:apps/v1:Deployment":
        return
    for where, c, _ in _containers(args):
        if where.startswith("initContainers"):
            continue
        missing = [p for p in ("livenessProbe", "readinessProbe") if not get(c, p)]
        if missing:
            report(f"{who(args)}: {where} lacks {' and '.join(missing)}")


@rule("argo-cron-guardrails", "CronWorkflows: Forbid, retries, deadline", "mandatory")
def cron_workflow_guardrails(args: Any, report: Report) -> None:
    """CronWorkflows: concurrencyPolicy Forbid, retries on every step, a workflow deadline.

    A retryStrategy on every container or script template, activeDeadlineSeconds on the workflow.
    """
    if args.resource_type != CRON_WORKFLOW:
        return
    spec = get(args.props, "spec", default={}) or {}
    if get(spec, "concurrencyPolicy") != "Forbid":
        report(f"{who(args)}: spec.concurrencyPolicy must be Forbid")
    workflow = get(spec, "workflowSpec", default={}) or {}
    if not get(workflow, "activeDeadlineSeconds"):
        report(f"{who(args)}: spec.workflowSpec.activeDeadlineSeconds is not set")
    for template in as_list(get(workflow, "templates")):
        if (get(template, "container") or get(template, "script")) and not get(
            template, "retryStrategy"
        ):
            report(f"{who(args)}: templates[{get(template, 'name')}] has no retryStrategy")


_VAR_REFERENCE = re.compile(r"(?<!\$)\$\((?P<name>[A-Za-z_][A-Za-z0-9_]*)\)")
"""Kubernetes' dependent-variable syntax in command/args: ``$(NAME)`` (``$$(NAME)`` escapes)."""
_URL_CREDENTIALS = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]+:[^/\s@]+@")


def _secret_sourced(container: Mapping[str, Any]) -> tuple[set[str], set[str], bool]:
    """(env names from a Secret, env names with a plain value, whether envFrom reads a Secret)."""
    secret, plain = set(), set()
    for item in as_list(get(container, "env")):
        name = get(item, "name")
        if get(item, "valueFrom", "secretKeyRef"):
            secret.add(name)
        elif name is not None:
            plain.add(name)
    whole = any(get(source, "secretRef") for source in as_list(get(container, "envFrom")))
    return secret, plain, whole


@rule("k8s-no-secret-in-argv", "No Secret value on a container's command line", "mandatory")
def k8s_no_secret_in_argv(args: Any, report: Report) -> None:
    """No ``$(VAR)`` of a Secret-sourced variable, and no ``user:password@`` URL, in a container's
    ``command`` or ``args``: the kubelet expands ``$(VAR)`` into the process's argv, which ``ps``
    and /proc show to every process of the pod and of the node. Pass the value as an environment
    variable (``secretKeyRef``) the program reads, or a mounted file."""
    for where, c, _ in _containers(args):
        secret, plain, whole = _secret_sourced(c)
        for field in ("command", "args"):
            for index, word in enumerate(as_list(get(c, field))):
                if not isinstance(word, str):
                    continue
                for match in _VAR_REFERENCE.finditer(word):
                    name = match["name"]
                    if name in secret or (whole and name not in plain):
                        report(
                            f"{who(args)}: {where} {field}[{index}] expands $({name}), a Secret's "
                            "value, onto the command line; have the program read the variable "
                            "from its environment instead"
                        )
                if _URL_CREDENTIALS.search(word):
                    report(
                        f"{who(args)}: {where} {field}[{index}] holds a URL with a password; "
                        "pass it through a Secret-sourced environment variable instead"
                    )
