"""Pod Security Standards, profile "restricted", checked offline on the pod templates we author.

The definition is the vendored page ``tests/schemas/kubernetes/pod-security-standards.md``
(kubernetes/website, blob ``72cdc4bc``, CC-BY-4.0): every Baseline control plus every Restricted
control, with the allowed values the page lists. The table below is the page, control by control
(``CONTROLS`` names them in the page's order); each violation is one line::

    <where>: <pod | container NAME | initContainer NAME | ephemeralContainer NAME>: <field> ...;
    allowed: <what the page allows> [<control>]

Baseline: HostProcess; Host Namespaces; Privileged Containers; Capabilities (add only the
Baseline list); HostPath Volumes; Host Ports (undefined or 0: the page's "known list" is not
supported by the admission controller, nor here); Host Probes / Lifecycle Hooks (``host`` of
httpGet/tcpSocket probes and postStart/preStop hooks of containers and init containers); AppArmor
(``appArmorProfile.type`` at pod and container level and the
``container.apparmor.security.beta.kubernetes.io/*`` annotations); SELinux (``type`` from the
allowed list, no ``user``/``role``); ``/proc`` Mount Type; Seccomp (never ``Unconfined``); Sysctls
(the page's safe list only).

Restricted: Volume Types (configMap, csi, downwardAPI, emptyDir, ephemeral,
persistentVolumeClaim, projected, secret); Privilege Escalation (``allowPrivilegeEscalation:
false`` on every container); Running as Non-root (``runAsNonRoot: true`` on the container, or
unset there and ``true`` on the pod; the pod field, when set, must be ``true``); Running as
Non-root user (``runAsUser`` never 0, pod or container); Seccomp (``RuntimeDefault`` or
``Localhost`` on the container, or unset there and set so on the pod; the pod field, when set,
must be one of them); Capabilities (``drop`` includes ``ALL``; ``add`` only
``NET_BIND_SERVICE``).

A value that breaks both a Baseline control and its Restricted counterpart (an added
``SYS_ADMIN``, a ``Unconfined`` seccomp profile) is one line naming both. HostPath volumes also
break Volume Types: two controls, two lines.

Inheritance, as the page states it: a container with ``runAsNonRoot``, ``seccompProfile`` or
``runAsUser`` unset takes the pod's ``securityContext`` value. A bad pod-level value is reported
once, on the pod; a container is reported for its own bad value, or when neither it nor the pod
sets a required field.

"Linux only" (page, "OS-specific policy controls"): Privilege Escalation, the Restricted Seccomp
control and the Restricted Capabilities control are skipped when ``spec.os.name`` is ``windows``
(the Baseline Seccomp and Capabilities controls still apply).

Deliberate differences from the admission controller (kubernetes/pod-security-admission):

- sysctls: the page's list only; the implementation also allows ``net.ipv4.tcp_rmem`` and
  ``net.ipv4.tcp_wmem`` (v1.32+) and two more from v1.37 (see tests/schemas/README.md);
- user namespaces (``hostUsers: false``): the admission controller relaxes the runAsNonRoot and
  runAsUser checks for such pods; the page defers to another page, and this checker does not relax;
- a volume with no source at all is taken as ``emptyDir`` (the API server's defaulting), so it
  passes Volume Types, as it would after defaulting.

Nothing here knows an image's ``USER``: ``runAsNonRoot: true`` on a root image passes admission
and then the kubelet refuses to start the container.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

ENFORCE_LABEL = "pod-security.kubernetes.io/enforce"
CONTAINER_LISTS = ("initContainers", "containers", "ephemeralContainers")
CONTROLS = (
    # Baseline
    "HostProcess",
    "Host Namespaces",
    "Privileged Containers",
    "Capabilities",
    "HostPath Volumes",
    "Host Ports",
    "Host Probes / Lifecycle Hooks",
    "AppArmor",
    "SELinux",
    "/proc Mount Type",
    "Seccomp",
    "Sysctls",
    # Restricted
    "Volume Types",
    "Privilege Escalation",
    "Running as Non-root",
    "Running as Non-root user",
    "Seccomp (Restricted)",
    "Capabilities (Restricted)",
)
BASELINE_CAPABILITIES = frozenset(
    {
        "AUDIT_WRITE",
        "CHOWN",
        "DAC_OVERRIDE",
        "FOWNER",
        "FSETID",
        "KILL",
        "MKNOD",
        "NET_BIND_SERVICE",
        "SETFCAP",
        "SETGID",
        "SETPCAP",
        "SETUID",
        "SYS_CHROOT",
    }
)
RESTRICTED_CAPABILITIES = frozenset({"NET_BIND_SERVICE"})
SAFE_SYSCTLS = frozenset(
    {
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.ip_unprivileged_port_start",
        "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range",
        "net.ipv4.ip_local_reserved_ports",
        "net.ipv4.tcp_keepalive_time",
        "net.ipv4.tcp_fin_timeout",
        "net.ipv4.tcp_keepalive_intvl",
        "net.ipv4.tcp_keepalive_probes",
    }
)
RESTRICTED_VOLUME_TYPES = (
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
)
SELINUX_TYPES = frozenset(
    {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}
)
PROFILE_TYPES = ("RuntimeDefault", "Localhost")
"""Allowed ``seccompProfile.type`` (Restricted) and ``appArmorProfile.type`` (Baseline)."""
APPARMOR_ANNOTATION = "container.apparmor.security.beta.kubernetes.io/"
PROBES = ("livenessProbe", "readinessProbe", "startupProbe")
HOOKS = ("postStart", "preStop")

Obj = Mapping[str, Any]


def _get(obj: Any, *path: str) -> Any:
    """``obj[path[0]][path[1]]...``, None where a step is missing or null."""
    for key in path:
        if not isinstance(obj, Mapping):
            return None
        obj = obj.get(key)
    return obj


def _show(value: Any) -> str:
    return "unset" if value is None else json.dumps(value)


class _Report:
    """Collects the lines for one pod."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.lines: list[str] = []

    def add(self, subject: str, field: str, problem: str, allowed: str, control: str) -> None:
        assert control.split(" (")[0] in {c.split(" (")[0] for c in CONTROLS}, control
        self.lines.append(
            f"{self.where}: {subject}: {field} {problem}; allowed: {allowed} [{control}]"
        )

    def value(self, subject: str, field: str, value: Any, allowed: str, control: str) -> None:
        self.add(subject, field, f"is {_show(value)}", allowed, control)


def _containers(pod_spec: Obj) -> list[tuple[str, str, Obj]]:
    """(list name, subject for messages, container) for every container of the pod."""
    out = []
    for key in CONTAINER_LISTS:
        for container in pod_spec.get(key) or []:
            out.append((key, f"{key[:-1]} {container.get('name')}", container))
    return out


def restricted_violations(
    pod_spec: Obj, where: str, *, annotations: Obj | None = None
) -> list[str]:
    """Every violation of the Baseline and Restricted profiles by one PodSpec, one line each.

    `where` starts each line (the object and, for Argo, the template); `annotations` are the
    pod's (template's) metadata annotations, for the AppArmor annotation control.
    """
    report = _Report(where)
    pod_sc: Obj = pod_spec.get("securityContext") or {}
    containers = _containers(pod_spec)
    linux = _get(pod_spec, "os", "name") != "windows"
    _host_process(report, pod_sc, containers)
    _host_namespaces(report, pod_spec)
    for _, subject, container in containers:
        _privileged(report, subject, container)
        _capabilities(report, subject, container, linux)
    _volumes(report, pod_spec)
    for _, subject, container in containers:
        _host_ports(report, subject, container)
    for key, subject, container in containers:
        if key != "ephemeralContainers":  # the page lists containers and initContainers only
            _host_probes(report, subject, container)
    _apparmor(report, pod_sc, containers, annotations or {})
    _selinux(report, pod_sc, containers)
    for _, subject, container in containers:
        if (mount := _get(container, "securityContext", "procMount")) not in (None, "Default"):
            report.value(
                subject, "securityContext.procMount", mount, "unset or Default", "/proc Mount Type"
            )
    _seccomp(report, pod_sc, containers, linux)
    for sysctl in pod_sc.get("sysctls") or []:
        if sysctl.get("name") not in SAFE_SYSCTLS:
            report.add(
                "pod",
                "spec.securityContext.sysctls[].name",
                f"has {_show(sysctl.get('name'))}",
                "unset or one of " + ", ".join(sorted(SAFE_SYSCTLS)),
                "Sysctls",
            )
    for _, subject, container in containers:
        escalation = _get(container, "securityContext", "allowPrivilegeEscalation")
        if linux and escalation is not False:
            report.value(
                subject,
                "securityContext.allowPrivilegeEscalation",
                escalation,
                "false",
                "Privilege Escalation",
            )
    _run_as_non_root(report, pod_sc, containers)
    _run_as_user(report, pod_sc, containers)
    return report.lines


def _host_process(report: _Report, pod_sc: Obj, containers: list[tuple[str, str, Obj]]) -> None:
    allowed = "unset or false"
    if (value := _get(pod_sc, "windowsOptions", "hostProcess")) not in (None, False):
        report.value(
            "pod", "spec.securityContext.windowsOptions.hostProcess", value, allowed, "HostProcess"
        )
    for _, subject, container in containers:
        value = _get(container, "securityContext", "windowsOptions", "hostProcess")
        if value not in (None, False):
            report.value(
                subject, "securityContext.windowsOptions.hostProcess", value, allowed, "HostProcess"
            )


def _host_namespaces(report: _Report, pod_spec: Obj) -> None:
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if (value := pod_spec.get(field)) not in (None, False):
            report.value("pod", f"spec.{field}", value, "unset or false", "Host Namespaces")


def _privileged(report: _Report, subject: str, container: Obj) -> None:
    if (value := _get(container, "securityContext", "privileged")) not in (None, False):
        report.value(
            subject,
            "securityContext.privileged",
            value,
            "unset or false",
            "Privileged Containers",
        )


def _capabilities(report: _Report, subject: str, container: Obj, linux: bool) -> None:
    capabilities = _get(container, "securityContext", "capabilities") or {}
    field = "securityContext.capabilities.add"
    for added in capabilities.get("add") or []:
        if added not in BASELINE_CAPABILITIES:
            baseline = "unset or one of " + ", ".join(sorted(BASELINE_CAPABILITIES))
            if linux:
                allowed = f"NET_BIND_SERVICE only (Baseline alone: {baseline})"
                control = "Capabilities (Baseline and Restricted)"
            else:
                allowed, control = baseline, "Capabilities"
            report.add(subject, field, f"has {_show(added)}", allowed, control)
        elif linux and added not in RESTRICTED_CAPABILITIES:
            report.add(
                subject,
                field,
                f"has {_show(added)}",
                "NET_BIND_SERVICE only",
                "Capabilities (Restricted)",
            )
    if linux and "ALL" not in (capabilities.get("drop") or []):
        report.value(
            subject,
            "securityContext.capabilities.drop",
            capabilities.get("drop"),
            'a list that includes "ALL"',
            "Capabilities (Restricted)",
        )


def _volumes(report: _Report, pod_spec: Obj) -> None:
    for volume in pod_spec.get("volumes") or []:
        name = volume.get("name")
        sources = sorted(k for k, v in volume.items() if k != "name" and v is not None)
        if "hostPath" in sources:
            report.value(
                "pod",
                f"spec.volumes[{name}].hostPath",
                volume["hostPath"],
                "unset",
                "HostPath Volumes",
            )
        other = [s for s in sources if s not in RESTRICTED_VOLUME_TYPES]
        if other:
            report.add(
                "pod",
                f"spec.volumes[{name}]",
                "is of type " + ", ".join(other),
                "one of " + ", ".join(RESTRICTED_VOLUME_TYPES),
                "Volume Types",
            )


def _host_ports(report: _Report, subject: str, container: Obj) -> None:
    for port in container.get("ports") or []:
        if (host_port := port.get("hostPort")) not in (None, 0):
            report.value(
                subject,
                f"ports[{port.get('name') or port.get('containerPort')}].hostPort",
                host_port,
                "unset or 0",
                "Host Ports",
            )


def _host_probes(report: _Report, subject: str, container: Obj) -> None:
    handlers = [(probe, container.get(probe)) for probe in PROBES]
    handlers += [(f"lifecycle.{hook}", _get(container, "lifecycle", hook)) for hook in HOOKS]
    for path, handler in handlers:
        for action in ("httpGet", "tcpSocket"):
            if (host := _get(handler, action, "host")) not in (None, ""):
                report.value(
                    subject,
                    f"{path}.{action}.host",
                    host,
                    'unset or ""',
                    "Host Probes / Lifecycle Hooks",
                )


def _apparmor(
    report: _Report, pod_sc: Obj, containers: list[tuple[str, str, Obj]], annotations: Obj
) -> None:
    allowed = "unset, " + " or ".join(PROFILE_TYPES)
    levels = [("pod", "spec.securityContext", pod_sc)]
    levels += [(s, "securityContext", c.get("securityContext") or {}) for _, s, c in containers]
    for subject, prefix, security in levels:
        if (kind := _get(security, "appArmorProfile", "type")) not in (None, *PROFILE_TYPES):
            report.value(subject, f"{prefix}.appArmorProfile.type", kind, allowed, "AppArmor")
    for key, value in annotations.items():
        if not key.startswith(APPARMOR_ANNOTATION):
            continue
        if value is not None and value != "runtime/default" and not value.startswith("localhost/"):
            report.value(
                "pod",
                f"metadata.annotations[{key}]",
                value,
                "unset, runtime/default or localhost/*",
                "AppArmor",
            )


def _selinux(report: _Report, pod_sc: Obj, containers: list[tuple[str, str, Obj]]) -> None:
    levels = [("pod", "spec.securityContext", pod_sc)]
    levels += [(s, "securityContext", c.get("securityContext") or {}) for _, s, c in containers]
    for subject, prefix, security in levels:
        options = security.get("seLinuxOptions") or {}
        if (kind := options.get("type")) not in (None, *SELINUX_TYPES):
            report.value(
                subject,
                f"{prefix}.seLinuxOptions.type",
                kind,
                'unset, "" or one of ' + ", ".join(sorted(SELINUX_TYPES - {""})),
                "SELinux",
            )
        for field in ("user", "role"):
            if (value := options.get(field)) not in (None, ""):
                report.value(
                    subject, f"{prefix}.seLinuxOptions.{field}", value, 'unset or ""', "SELinux"
                )


def _seccomp_control(kind: Any) -> str:
    return "Seccomp (Baseline and Restricted)" if kind == "Unconfined" else "Seccomp (Restricted)"


def _seccomp(
    report: _Report, pod_sc: Obj, containers: list[tuple[str, str, Obj]], linux: bool
) -> None:
    pod_field = "spec.securityContext.seccompProfile.type"
    field = "securityContext.seccompProfile.type"
    pod_type = _get(pod_sc, "seccompProfile", "type")
    if not linux:  # Baseline only: never Unconfined
        allowed = "unset, " + " or ".join(PROFILE_TYPES)
        if pod_type == "Unconfined":
            report.value("pod", pod_field, pod_type, allowed, "Seccomp")
        for _, subject, container in containers:
            if (
                own := _get(container, "securityContext", "seccompProfile", "type")
            ) == "Unconfined":
                report.value(subject, field, own, allowed, "Seccomp")
        return
    allowed = " or ".join(PROFILE_TYPES) + " (a container may leave it unset if the pod sets it)"
    if pod_type is not None and pod_type not in PROFILE_TYPES:
        report.value("pod", pod_field, pod_type, allowed, _seccomp_control(pod_type))
    for _, subject, container in containers:
        own = _get(container, "securityContext", "seccompProfile", "type")
        if own is not None and own not in PROFILE_TYPES:
            report.value(subject, field, own, allowed, _seccomp_control(own))
        elif own is None and pod_type is None:
            report.add(
                subject,
                field,
                "is unset here and in the pod's securityContext",
                allowed,
                "Seccomp (Restricted)",
            )


def _run_as_non_root(report: _Report, pod_sc: Obj, containers: list[tuple[str, str, Obj]]) -> None:
    control = "Running as Non-root"
    allowed = "true (a container may leave it unset if the pod sets true)"
    pod_value = pod_sc.get("runAsNonRoot")
    if pod_value is not None and pod_value is not True:
        report.value(
            "pod", "spec.securityContext.runAsNonRoot", pod_value, "unset or true", control
        )
    for _, subject, container in containers:
        own = _get(container, "securityContext", "runAsNonRoot")
        if own is not None and own is not True:
            report.value(subject, "securityContext.runAsNonRoot", own, allowed, control)
        elif own is None and pod_value is None:
            report.add(
                subject,
                "securityContext.runAsNonRoot",
                "is unset here and in the pod's securityContext",
                allowed,
                control,
            )


def _run_as_user(report: _Report, pod_sc: Obj, containers: list[tuple[str, str, Obj]]) -> None:
    control = "Running as Non-root user"
    allowed = "unset or any non-zero value"
    if (pod_value := pod_sc.get("runAsUser")) is not None and pod_value == 0:
        report.value("pod", "spec.securityContext.runAsUser", pod_value, allowed, control)
    for _, subject, container in containers:
        if (own := _get(container, "securityContext", "runAsUser")) is not None and own == 0:
            report.value(subject, "securityContext.runAsUser", own, allowed, control)


def enforced_namespaces(objects: Iterable[Obj]) -> set[str]:
    """Names of the Namespaces labelled ``pod-security.kubernetes.io/enforce: restricted``."""
    return {
        obj["metadata"]["name"]
        for obj in objects
        if obj.get("kind") == "Namespace"
        and _get(obj, "metadata", "labels", ENFORCE_LABEL) == "restricted"
    }


# -- pod templates ---------------------------------------------------------------------------

TEMPLATE_PATHS: dict[str, tuple[str, ...]] = {
    "Deployment": ("spec", "template"),
    "StatefulSet": ("spec", "template"),
    "DaemonSet": ("spec", "template"),
    "ReplicaSet": ("spec", "template"),
    "ReplicationController": ("spec", "template"),
    "Job": ("spec", "template"),
    "CronJob": ("spec", "jobTemplate", "spec", "template"),
    "PodTemplate": ("template",),
}
"""Where each built-in workload keeps its pod template (metadata + spec)."""
ARGO_KINDS = {
    "Workflow": ("spec",),
    "WorkflowTemplate": ("spec",),
    "ClusterWorkflowTemplate": ("spec",),
    "CronWorkflow": ("spec", "workflowSpec"),
}
"""Where each Argo kind keeps its WorkflowSpec."""
ARGO_POD_TEMPLATES = ("container", "script", "containerSet")
ARGO_NO_POD = ("steps", "dag", "suspend")
ARGO_VOLUMES = (
    {"name": "var-run-argo", "emptyDir": {}},
    {"name": "tmp-dir-argo", "emptyDir": {}},
)
"""The two volumes `createVolumes` puts in every workflow pod (workflowpod.go)."""

PodTemplate = tuple[str, dict[str, Any], dict[str, Any]]
"""(where, pod annotations, PodSpec)."""


def _describe(obj: Obj) -> str:
    meta = obj.get("metadata") or {}
    namespace = meta.get("namespace")
    return f"{obj.get('kind')} {namespace + '/' if namespace else ''}{meta.get('name')}"


def pod_templates(obj: Obj, executor_security: Obj | None = None) -> list[PodTemplate]:
    """The pods `obj` makes, each as (where, pod annotations, PodSpec); [] for other kinds.

    Argo kinds (Workflow, WorkflowTemplate, ClusterWorkflowTemplate, CronWorkflow) yield one pod
    per template that runs one (see `argo_pods`); `executor_security` is the workflow
    controller's ``executor.securityContext`` (None: not configured, the chart's default).
    """
    kind = str(obj.get("kind"))
    if kind == "Pod":
        return [
            (_describe(obj), dict(_get(obj, "metadata", "annotations") or {}), dict(obj["spec"]))
        ]
    if kind in TEMPLATE_PATHS:
        template = _get(obj, *TEMPLATE_PATHS[kind]) or {}
        annotations = dict(_get(template, "metadata", "annotations") or {})
        return [(_describe(obj), annotations, dict(template.get("spec") or {}))]
    if kind in ARGO_KINDS and str(obj.get("apiVersion", "")).startswith("argoproj.io/"):
        return argo_pods(obj, executor_security)
    return []


def pod_specs(obj: Obj, executor_security: Obj | None = None) -> list[tuple[str, dict[str, Any]]]:
    """(where, PodSpec) for every pod template in `obj` (see `pod_templates`)."""
    return [(where, spec) for where, _, spec in pod_templates(obj, executor_security)]


def object_violations(obj: Obj, executor_security: Obj | None = None) -> list[str]:
    """`restricted_violations` of every pod `obj` makes (with its pod annotations)."""
    return [
        line
        for where, annotations, spec in pod_templates(obj, executor_security)
        for line in restricted_violations(spec, where, annotations=annotations)
    ]


def _without(container: Obj, *keys: str) -> dict[str, Any]:
    return {k: v for k, v in container.items() if k not in keys}


def argo_pods(obj: Obj, executor_security: Obj | None = None) -> list[PodTemplate]:
    """The pods the Argo workflow controller creates for the templates of an Argo object.

    Verified against argoproj/argo-workflows ``workflow/controller/workflowpod.go`` at tag
    ``v4.0.6`` (commit ``277e9cef0ad16d7eaaab253573d0695951a65dbd``, blob ``1293098b``; the
    app version of the pinned argo-workflows chart 1.0.18). ``newExecContainer`` builds both
    injected containers with ``SecurityContext: Config.GetExecutor().SecurityContext``: the same
    value for ``init`` and ``wait``, as-is (a nil one stays nil, except for resource templates);
    ``GetExecutor()`` (``config/config.go``) is an empty Container when ``executor`` is not
    configured. ``createWorkflowPod`` appends ``wait`` to ``containers`` before the main
    container(s) (for every template but resource/data), and ``newInitContainers`` always
    makes ``init`` the first init container (artifact-plugin init containers follow; none here).
    ``addSchedulingConstraints`` sets the pod's ``securityContext`` to the template's
    ``securityContext`` if set, else the WorkflowSpec's (whole replacement, no merge);
    ``hostNetwork`` comes from the WorkflowSpec; ``createVolumes`` adds the emptyDirs
    ``var-run-argo`` and ``tmp-dir-argo`` and the template's ``volumes``,
    ``addVolumeReferences`` the WorkflowSpec ``volumes`` a container mounts,
    ``addScriptStagingVolume`` the emptyDir ``argo-staging`` for script templates;
    ``addInitContainers``/``addSidecars`` append the template's own ``initContainers`` and
    ``sidecars``; ``addMetadata`` copies ``podMetadata`` then the template's ``metadata``
    annotations onto the pod. The main container is named ``main`` (containerSet keeps names).

    Not modelled: ``podSpecPatch`` (WorkflowSpec's and template's; applied last upstream, so a
    patch can change what is checked here), the controller's ``mainContainer`` defaults (merged
    into main containers) and ``workflowDefaults``, a ``kubeConfig`` secret volume, artifact
    volumes (all emptyDir/secret), and the opt-in ``initlessPod`` layout of argo-workflows main
    after v4.1.2 (it mounts argoexec from an ``image`` volume, which Restricted does not allow).
    Resource, data, http and plugin templates raise ValueError: their pods are built differently
    (resource/data run argoexec as main; http/plugin run in the agent pod).
    """
    kind = str(obj.get("kind"))
    spec: Obj = _get(obj, *ARGO_KINDS[kind]) or {}
    executor = None if executor_security is None else dict(executor_security)
    pod_annotations = dict(_get(spec, "podMetadata", "annotations") or {})
    global_volumes = {v["name"]: v for v in spec.get("volumes") or []}
    for claim in spec.get("volumeClaimTemplates") or []:
        claim_name = claim["metadata"]["name"]
        global_volumes[claim_name] = {"name": claim_name, "persistentVolumeClaim": {}}
    pods: list[PodTemplate] = []
    for template in spec.get("templates") or []:
        name = template.get("name")
        where = f"{_describe(obj)} template {name}"
        types = [t for t in ARGO_POD_TEMPLATES if template.get(t) is not None]
        if not types:
            if any(template.get(t) is not None for t in ARGO_NO_POD):
                continue
            raise ValueError(
                f"{where}: this template type is not modelled (only container, script and "
                "containerSet templates, and steps/dag/suspend, which make no pod)"
            )
        if types == ["containerSet"]:
            mains = [dict(c) for c in template["containerSet"].get("containers") or []]
        else:
            mains = [{**_without(template[types[0]], "source"), "name": "main"}]
        user_inits = [
            _without(c, "mirrorVolumeMounts") for c in template.get("initContainers") or []
        ]
        sidecars = [_without(c, "mirrorVolumeMounts") for c in template.get("sidecars") or []]
        init: dict[str, Any] = {"name": "init", "image": "argoexec"}
        wait: dict[str, Any] = {"name": "wait", "image": "argoexec"}
        if executor is not None:
            init["securityContext"] = executor
            wait["securityContext"] = executor
        pod: dict[str, Any] = {
            "initContainers": [init, *user_inits],
            "containers": [wait, *mains, *sidecars],
            "volumes": [dict(v) for v in ARGO_VOLUMES] + list(template.get("volumes") or []),
        }
        security = template.get("securityContext")  # the template's, if set, replaces the spec's
        if security is None:
            security = spec.get("securityContext")
        if security is not None:
            pod["securityContext"] = security
        if spec.get("hostNetwork") is not None:
            pod["hostNetwork"] = spec["hostNetwork"]
        if types == ["script"]:
            pod["volumes"].append({"name": "argo-staging", "emptyDir": {}})
        present = {v.get("name") for v in pod["volumes"]}
        for container in [*mains, *user_inits, *sidecars]:
            for mount in container.get("volumeMounts") or []:
                if mount.get("name") not in present and mount.get("name") in global_volumes:
                    pod["volumes"].append(global_volumes[mount["name"]])
                    present.add(mount["name"])
        annotations = {**pod_annotations, **(_get(template, "metadata", "annotations") or {})}
        pods.append((where, annotations, pod))
    return pods
