"""Pod Security Standards "restricted" (tests/support/pss.py, from the vendored upstream page) on
every pod template the project authors: the serving overlays, the CronWorkflows with the
containers Argo injects into their pods, and the stacks' MLflow Deployment.

The namespaces all these run in are labelled ``pod-security.kubernetes.io/enforce: restricted``
by the stacks, so a violation here is a pod the API server would refuse to create.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import html
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from tests.conftest import REPO
from tests.support.pss import (
    BASELINE_CAPABILITIES,
    CONTROLS,
    PROFILE_TYPES,
    RESTRICTED_VOLUME_TYPES,
    SAFE_SYSCTLS,
    SELINUX_TYPES,
    enforced_namespaces,
    object_violations,
    pod_specs,
    pod_templates,
    restricted_violations,
)
from tests.support.tools import kustomize_build

if TYPE_CHECKING:
    from stacks.offline.plan import Plan, PlannedResource
    from tests.conftest import StackPlans

PAGE = REPO / "tests" / "schemas" / "kubernetes" / "pod-security-standards.md"
PLATFORM = REPO / "platform"
GOLDEN = REPO / "tests" / "golden" / "workflows"
OVERLAYS = ("local", "dev", "staging", "prod")
STACKS = ("dev", "staging", "prod")
WHERE = "Pod test/pod"
RESTRICTED_EXECUTOR = {  # what a restricted executor securityContext looks like
    "runAsNonRoot": True,
    "runAsUser": 8737,
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


# -- the checker against the page ----------------------------------------------------------------


def container(name: str) -> dict[str, Any]:
    """A container that inherits runAsNonRoot and seccompProfile from the pod."""
    return {
        "name": name,
        "image": "registry.example/app:1",
        "ports": [{"name": "http", "containerPort": 8080, "hostPort": 0}],
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": 8080, "host": ""}},
        "livenessProbe": {"tcpSocket": {"port": 8080}},
        "lifecycle": {"preStop": {"httpGet": {"path": "/stop", "port": 8080}}},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "privileged": False,
            "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]},
            "runAsUser": 1000,
            "procMount": "Default",
            "appArmorProfile": {"type": "RuntimeDefault"},
            "seLinuxOptions": {"type": "container_t", "level": "s0:c123,c456"},
            "windowsOptions": {"hostProcess": False},
        },
    }


def compliant_pod() -> dict[str, Any]:
    """A PodSpec that sets every restricted field to an allowed value (and uses every allowed
    volume type), with one container of each kind."""
    return {
        "hostNetwork": False,
        "hostPID": False,
        "hostIPC": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 1000,
            "seccompProfile": {"type": "RuntimeDefault"},
            "appArmorProfile": {"type": "Localhost", "localhostProfile": "k8s-app"},
            "seLinuxOptions": {"type": "container_init_t"},
            "sysctls": [{"name": "net.ipv4.ip_unprivileged_port_start", "value": "0"}],
            "windowsOptions": {"hostProcess": False},
        },
        "initContainers": [container("setup")],
        "containers": [container("app")],
        "ephemeralContainers": [{**container("debug"), "ports": []}],
        "volumes": [
            {"name": "config", "configMap": {"name": "app"}},
            {"name": "csi", "csi": {"driver": "secrets-store.csi.k8s.io"}},
            {"name": "info", "downwardAPI": {"items": []}},
            {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}},
            {"name": "scratch", "ephemeral": {"volumeClaimTemplate": {"spec": {}}}},
            {"name": "data", "persistentVolumeClaim": {"claimName": "data"}},
            {"name": "token", "projected": {"sources": []}},
            {"name": "creds", "secret": {"secretName": "creds"}},
            {"name": "defaulted"},  # the API server defaults a sourceless volume to emptyDir
        ],
    }


COMPLIANT_ANNOTATIONS = {
    "container.apparmor.security.beta.kubernetes.io/app": "runtime/default",
    "container.apparmor.security.beta.kubernetes.io/setup": "localhost/k8s-app",
}


@pytest.mark.parametrize(
    ("name", "blob"),
    [
        ("pod-security-standards.md", "72cdc4bce9c964c36e976b2b92f8ffb810993093"),
        ("LICENSE", "da6ab6cc8f333d7e89a99812866df8f24374d47c"),
    ],
)
def test_the_vendored_page_is_the_upstream_blob(name: str, blob: str) -> None:
    """``git hash-object``, computed here (tests/schemas/README.md has the provenance)."""
    data = (PAGE.parent / name).read_bytes()
    assert hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest() == blob


def test_a_compliant_pod_passes() -> None:
    assert restricted_violations(compliant_pod(), WHERE, annotations=COMPLIANT_ANNOTATIONS) == []


def test_a_container_may_inherit_the_pod_settings_or_set_its_own() -> None:
    pod = compliant_pod()
    own = {"runAsNonRoot": True, "seccompProfile": {"type": "Localhost"}}
    for kind in ("initContainers", "containers", "ephemeralContainers"):
        pod[kind][0]["securityContext"].update(own)
    del pod["securityContext"]["runAsNonRoot"], pod["securityContext"]["seccompProfile"]
    assert restricted_violations(pod, WHERE) == []  # the pod fields may then stay unset


Plant = Callable[[dict[str, Any]], None]


def sc(pod: dict[str, Any], kind: str = "containers") -> dict[str, Any]:
    security: dict[str, Any] = pod[kind][0]["securityContext"]
    return security


def _set(mapping: dict[str, Any], key: str, value: Any) -> None:
    mapping[key] = value


PLANTS: dict[str, tuple[Plant, list[tuple[str, str, str]]]] = {
    # id: (plant, [(subject, field, control) of each expected line])
    "privileged": (
        lambda p: _set(sc(p), "privileged", True),
        [("container app", "securityContext.privileged", "Privileged Containers")],
    ),
    "hostNetwork": (
        lambda p: _set(p, "hostNetwork", True),
        [("pod", "spec.hostNetwork", "Host Namespaces")],
    ),
    "hostPID": (lambda p: _set(p, "hostPID", True), [("pod", "spec.hostPID", "Host Namespaces")]),
    "hostIPC": (lambda p: _set(p, "hostIPC", True), [("pod", "spec.hostIPC", "Host Namespaces")]),
    "hostPath volume": (
        lambda p: p["volumes"].append({"name": "node", "hostPath": {"path": "/var/run"}}),
        [
            ("pod", "spec.volumes[node].hostPath", "HostPath Volumes"),
            ("pod", "spec.volumes[node]", "Volume Types"),
        ],
    ),
    "hostPort": (
        lambda p: _set(p["containers"][0]["ports"][0], "hostPort", 8080),
        [("container app", "ports[http].hostPort", "Host Ports")],
    ),
    "capability beyond Baseline": (
        lambda p: sc(p)["capabilities"]["add"].append("SYS_ADMIN"),
        [
            (
                "container app",
                'securityContext.capabilities.add has "SYS_ADMIN"',
                "Capabilities (Baseline and Restricted)",
            )
        ],
    ),
    "capability beyond NET_BIND_SERVICE": (
        lambda p: sc(p, "initContainers")["capabilities"]["add"].append("CHOWN"),
        [
            (
                "initContainer setup",
                'securityContext.capabilities.add has "CHOWN"',
                "Capabilities (Restricted)",
            )
        ],
    ),
    "drop without ALL": (
        lambda p: _set(sc(p)["capabilities"], "drop", ["NET_RAW"]),
        [("container app", "securityContext.capabilities.drop", "Capabilities (Restricted)")],
    ),
    "no capabilities at all": (
        lambda p: sc(p, "ephemeralContainers").pop("capabilities"),
        [
            (
                "ephemeralContainer debug",
                "securityContext.capabilities.drop is unset",
                "Capabilities (Restricted)",
            )
        ],
    ),
    "allowPrivilegeEscalation true": (
        lambda p: _set(sc(p), "allowPrivilegeEscalation", True),
        [("container app", "securityContext.allowPrivilegeEscalation", "Privilege Escalation")],
    ),
    "allowPrivilegeEscalation unset": (
        lambda p: sc(p, "initContainers").pop("allowPrivilegeEscalation"),
        [
            (
                "initContainer setup",
                "securityContext.allowPrivilegeEscalation is unset",
                "Privilege Escalation",
            )
        ],
    ),
    "runAsNonRoot missing at both levels": (
        lambda p: p["securityContext"].pop("runAsNonRoot"),
        [
            (f"{kind} {name}", "securityContext.runAsNonRoot is unset", "Running as Non-root")
            for kind, name in (
                ("initContainer", "setup"),
                ("container", "app"),
                ("ephemeralContainer", "debug"),
            )
        ],
    ),
    "runAsNonRoot false on a container": (
        lambda p: _set(sc(p), "runAsNonRoot", False),
        [("container app", "securityContext.runAsNonRoot is false", "Running as Non-root")],
    ),
    "runAsNonRoot false on the pod": (
        lambda p: _set(p["securityContext"], "runAsNonRoot", False),
        [("pod", "spec.securityContext.runAsNonRoot is false", "Running as Non-root")],
    ),
    "runAsUser 0 on a container": (
        lambda p: _set(sc(p), "runAsUser", 0),
        [("container app", "securityContext.runAsUser is 0", "Running as Non-root user")],
    ),
    "runAsUser 0 on the pod": (
        lambda p: _set(p["securityContext"], "runAsUser", 0),
        [("pod", "spec.securityContext.runAsUser is 0", "Running as Non-root user")],
    ),
    "seccomp missing": (
        lambda p: p["securityContext"].pop("seccompProfile"),
        [
            (
                f"{kind} {name}",
                "securityContext.seccompProfile.type is unset",
                "Seccomp (Restricted)",
            )
            for kind, name in (
                ("initContainer", "setup"),
                ("container", "app"),
                ("ephemeralContainer", "debug"),
            )
        ],
    ),
    "seccomp Unconfined on a container": (
        lambda p: _set(sc(p), "seccompProfile", {"type": "Unconfined"}),
        [
            (
                "container app",
                'securityContext.seccompProfile.type is "Unconfined"',
                "Seccomp (Baseline and Restricted)",
            )
        ],
    ),
    "seccomp Unconfined on the pod": (
        lambda p: _set(p["securityContext"], "seccompProfile", {"type": "Unconfined"}),
        [
            (
                "pod",
                'spec.securityContext.seccompProfile.type is "Unconfined"',
                "Seccomp (Baseline and Restricted)",
            )
        ],
    ),
    "nfs volume": (
        lambda p: p["volumes"].append({"name": "shared", "nfs": {"server": "nfs", "path": "/"}}),
        [("pod", "spec.volumes[shared] is of type nfs", "Volume Types")],
    ),
    "image volume": (
        lambda p: p["volumes"].append({"name": "bin", "image": {"reference": "argoexec:v4"}}),
        [("pod", "spec.volumes[bin] is of type image", "Volume Types")],
    ),
    "unsafe sysctl": (
        lambda p: p["securityContext"]["sysctls"].append({"name": "kernel.msgmax", "value": "1"}),
        [("pod", 'spec.securityContext.sysctls[].name has "kernel.msgmax"', "Sysctls")],
    ),
    "procMount Unmasked": (
        lambda p: _set(sc(p), "procMount", "Unmasked"),
        [("container app", "securityContext.procMount", "/proc Mount Type")],
    ),
    "AppArmor Unconfined on a container": (
        lambda p: _set(sc(p), "appArmorProfile", {"type": "Unconfined"}),
        [("container app", "securityContext.appArmorProfile.type", "AppArmor")],
    ),
    "AppArmor Unconfined on the pod": (
        lambda p: _set(p["securityContext"], "appArmorProfile", {"type": "Unconfined"}),
        [("pod", "spec.securityContext.appArmorProfile.type", "AppArmor")],
    ),
    "SELinux type": (
        lambda p: _set(sc(p)["seLinuxOptions"], "type", "spc_t"),
        [("container app", 'securityContext.seLinuxOptions.type is "spc_t"', "SELinux")],
    ),
    "SELinux user": (
        lambda p: _set(p["securityContext"]["seLinuxOptions"], "user", "system_u"),
        [("pod", "spec.securityContext.seLinuxOptions.user", "SELinux")],
    ),
    "SELinux role": (
        lambda p: _set(sc(p, "initContainers")["seLinuxOptions"], "role", "system_r"),
        [("initContainer setup", "securityContext.seLinuxOptions.role", "SELinux")],
    ),
    "HostProcess": (
        lambda p: _set(sc(p)["windowsOptions"], "hostProcess", True),
        [("container app", "securityContext.windowsOptions.hostProcess", "HostProcess")],
    ),
    "probe host": (
        lambda p: _set(p["containers"][0]["livenessProbe"]["tcpSocket"], "host", "169.254.169.254"),
        [("container app", "livenessProbe.tcpSocket.host", "Host Probes / Lifecycle Hooks")],
    ),
    "lifecycle hook host": (
        lambda p: _set(p["initContainers"][0]["lifecycle"]["preStop"]["httpGet"], "host", "x"),
        [
            (
                "initContainer setup",
                "lifecycle.preStop.httpGet.host",
                "Host Probes / Lifecycle Hooks",
            )
        ],
    ),
}


@pytest.mark.parametrize("plant", PLANTS)
def test_each_planted_violation_is_reported_alone(plant: str) -> None:
    pod = compliant_pod()
    mutate, expected = PLANTS[plant]
    mutate(pod)
    lines = restricted_violations(pod, WHERE)
    assert len(lines) == len(expected), "\n".join(lines)
    for line, (subject, field, control) in zip(lines, expected, strict=True):
        assert line.startswith(f"{WHERE}: {subject}: {field}"), line
        assert line.endswith(f"[{control}]") and "; allowed: " in line, line


def test_the_apparmor_annotation_is_checked() -> None:
    annotations = {"container.apparmor.security.beta.kubernetes.io/app": "unconfined"}
    (line,) = restricted_violations(compliant_pod(), WHERE, annotations=annotations)
    assert (
        'metadata.annotations[container.apparmor.security.beta.kubernetes.io/app] is "unconf'
        in line
    )
    assert line.endswith("[AppArmor]")


def test_windows_pods_skip_only_the_linux_controls() -> None:
    pod = compliant_pod()
    pod["os"] = {"name": "windows"}
    for kind in ("initContainers", "containers", "ephemeralContainers"):
        for field in ("allowPrivilegeEscalation", "capabilities"):
            pod[kind][0]["securityContext"].pop(field)
    del pod["securityContext"]["seccompProfile"]
    assert restricted_violations(pod, WHERE) == []
    sc(pod)["seccompProfile"] = {"type": "Unconfined"}  # Baseline still applies
    sc(pod)["capabilities"] = {"add": ["SYS_ADMIN"]}
    controls = [line.rsplit("[", 1)[1] for line in restricted_violations(pod, WHERE)]
    assert controls == ["Capabilities]", "Seccomp]"]


def page_rows() -> dict[str, str]:
    """Control name (without "(v1.x+)") -> its table row, in the page's order; a Restricted
    control that repeats a Baseline name gets " (Restricted)"."""
    text = PAGE.read_text()
    rows: dict[str, str] = {}
    for row in re.findall(r"<tr>(.*?)</tr>", text, re.S):
        first = re.search(r"<td[^>]*>(.*?)</td>", row, re.S)
        if first is None or "Restricted Fields" not in row:
            continue  # the header row and "Everything from the Baseline policy"
        name = html.unescape(re.sub(r"<[^>]+>", "", first.group(1))).strip()
        name = re.sub(r"\s*\(v1\.\d+\+\)$", "", name)
        rows[f"{name} (Restricted)" if name in rows else name] = row
    return rows


def allowed_codes(row: str, nth: int = 0) -> list[str]:
    """The ``<code>`` values of the row's `nth` "Allowed Values" list."""
    block = row.split("Allowed Values")[nth + 1].split("<ul>", 1)[1].split("</ul>")[0]
    return re.findall(r"<code>([^<]+)</code>", block)


def test_the_checker_knows_every_control_and_allowed_value_of_the_page() -> None:
    rows = page_rows()
    assert tuple(rows) == CONTROLS
    assert set(allowed_codes(rows["Capabilities"])) == BASELINE_CAPABILITIES
    assert allowed_codes(rows["Capabilities (Restricted)"], 1) == ["NET_BIND_SERVICE"]
    assert set(allowed_codes(rows["Sysctls"])) == SAFE_SYSCTLS
    volumes = [c.removeprefix("spec.volumes[*].") for c in allowed_codes(rows["Volume Types"])]
    assert tuple(volumes) == RESTRICTED_VOLUME_TYPES
    assert set(allowed_codes(rows["SELinux"])) == SELINUX_TYPES - {""}
    assert tuple(allowed_codes(rows["Seccomp (Restricted)"])) == PROFILE_TYPES
    assert tuple(allowed_codes(rows["AppArmor"])) == PROFILE_TYPES
    assert allowed_codes(rows["AppArmor"], 1) == ["runtime/default", "localhost/*"]


def restricted_fields() -> list[str]:
    """Every field path the page lists under "Restricted Fields" (and the AppArmor annotation)."""
    text = PAGE.read_text()
    blocks = re.findall(r"(?:Restricted Fields</strong></p>|<hr />)\s*<ul>(.*?)</ul>", text, re.S)
    fields = [html.unescape(f) for b in blocks for f in re.findall(r"<code>([^<]+)</code>", b)]
    return list(dict.fromkeys(fields))


BAD_VALUES: dict[str, Any] = {
    "hostProcess": True,
    "hostNetwork": True,
    "hostPID": True,
    "hostIPC": True,
    "privileged": True,
    "add": ["SYS_ADMIN"],
    "drop": ["NET_RAW"],
    "hostPort": 8080,
    "host": "169.254.169.254",
    "type": "Unconfined",  # appArmorProfile/seccompProfile; seLinuxOptions below
    "user": "system_u",
    "role": "system_r",
    "procMount": "Unmasked",
    "name": "kernel.msgmax",
    "allowPrivilegeEscalation": True,
    "runAsNonRoot": False,
    "runAsUser": 0,
}


def plant_field(pod: dict[str, Any], path: str) -> tuple[dict[str, str], str]:
    """Set the page's field `path` to a disallowed value in `pod`: (pod annotations, the start
    the violation line must have)."""
    if path.startswith("metadata.annotations"):
        key = re.findall(r'"([^"]+)"', path)[0].replace("*", "app")
        return {key: "unconfined"}, f"pod: metadata.annotations[{key}]"
    if path == "spec.volumes[*]":
        pod["volumes"].append({"name": "shared", "nfs": {"server": "nfs", "path": "/"}})
        return {}, "pod: spec.volumes[shared]"
    if path == "spec.volumes[*].hostPath":
        pod["volumes"].append({"name": "node", "hostPath": {"path": "/"}})
        return {}, "pod: spec.volumes[node].hostPath"
    steps = path.removeprefix("spec.").split(".")
    node: Any = pod
    subject, prefix = "pod", "spec."
    if steps[0] in {
        f"{kind}[*]" for kind in ("containers", "initContainers", "ephemeralContainers")
    }:
        kind = steps.pop(0).removesuffix("[*]")
        node = pod[kind][0]
        subject, prefix = f"{kind[:-1]} {node['name']}", ""
    leaf = steps[-1]
    value = "spc_t" if steps[-2:] == ["seLinuxOptions", "type"] else BAD_VALUES[leaf]
    for step in steps[:-1]:
        if step.endswith("[*]"):  # ports[*], sysctls[*]: the first item (made if none)
            items = node.setdefault(step.removesuffix("[*]"), [])
            if not items:
                items.append({"name": "http"})
            node = items[0]
        else:
            node = node.setdefault(step, {})
    node[leaf] = value
    shown = ".".join(steps).replace("ports[*]", "ports[http]").replace("sysctls[*]", "sysctls[]")
    return {}, f"{subject}: {prefix}{shown}"


def test_every_restricted_field_of_the_page_is_checked() -> None:
    fields = restricted_fields()
    assert len(fields) > 60 and "spec.initContainers[*].lifecycle.preStop.httpGet.host" in fields
    for path in fields:
        pod = compliant_pod()
        annotations, start = plant_field(pod, path)
        lines = restricted_violations(pod, WHERE, annotations=annotations)
        assert any(line.startswith(f"{WHERE}: {start}") for line in lines), (path, lines)


# -- pod templates -------------------------------------------------------------------------------


def workload(kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    template = {"metadata": {"annotations": COMPLIANT_ANNOTATIONS}, "spec": spec}
    body: dict[str, Any] = {
        "Pod": spec,
        "CronJob": {"jobTemplate": {"spec": {"template": template}}},
    }.get(kind, {"template": template})
    return {
        "apiVersion": "v1",
        "kind": kind,
        "metadata": {"name": "w", "namespace": "ns"},
        "spec": body,
    }


@pytest.mark.parametrize(
    "kind", ["Pod", "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob"]
)
def test_pod_specs_finds_the_template_of_each_workload_kind(kind: str) -> None:
    pod = compliant_pod()
    assert pod_specs(workload(kind, pod)) == [(f"{kind} ns/w", pod)]
    pod["hostPID"] = True
    (line,) = object_violations(workload(kind, pod))
    assert line.startswith(f"{kind} ns/w: pod: spec.hostPID is true")


def test_pod_templates_carry_the_template_annotations() -> None:
    ((_, annotations, _),) = pod_templates(workload("Deployment", compliant_pod()))
    assert annotations == COMPLIANT_ANNOTATIONS
    assert pod_specs({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}) == []


def argo(kind: str, workflow_spec: dict[str, Any]) -> dict[str, Any]:
    spec = {"schedules": ["0 * * * *"], "workflowSpec": workflow_spec}
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": kind,
        "metadata": {"name": "wf", "namespace": "mlops"},
        "spec": spec if kind == "CronWorkflow" else workflow_spec,
    }


def main_container() -> dict[str, Any]:
    return {
        "image": "registry.example/pipeline:1",
        "command": ["mlops"],
        "securityContext": copy.deepcopy(RESTRICTED_EXECUTOR),
        "volumeMounts": [{"name": "shared", "mountPath": "/data"}],
    }


def workflow_spec() -> dict[str, Any]:
    return {
        "entrypoint": "dag",
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
        "volumes": [{"name": "shared", "emptyDir": {}}, {"name": "unused", "nfs": {"path": "/"}}],
        "podMetadata": {"annotations": {"a": "wf"}},
        "templates": [
            {"name": "dag", "dag": {"tasks": [{"name": "run", "template": "run"}]}},
            {"name": "run", "container": main_container(), "metadata": {"annotations": {"b": "t"}}},
            {
                "name": "code",
                "script": {**main_container(), "source": "print(1)"},
                "securityContext": {"runAsUser": 1000},  # replaces the workflow's, no merge
            },
        ],
    }


@pytest.mark.parametrize("kind", ["CronWorkflow", "Workflow", "WorkflowTemplate"])
def test_argo_pods_get_init_and_wait_with_the_executor_security_context(kind: str) -> None:
    executor = {"runAsUser": 8737}
    pods = pod_templates(argo(kind, workflow_spec()), executor)
    assert [where for where, _, _ in pods] == [
        f"{kind} mlops/wf template run",
        f"{kind} mlops/wf template code",
    ]
    (_, annotations, run), (_, _, code) = pods
    assert annotations == {"a": "wf", "b": "t"}
    assert [c["name"] for c in run["initContainers"]] == ["init"]
    assert [c["name"] for c in run["containers"]] == ["wait", "main"]
    assert run["initContainers"][0]["securityContext"] == executor
    assert run["containers"][0]["securityContext"] == executor
    assert run["securityContext"] == workflow_spec()["securityContext"]
    assert code["securityContext"] == {"runAsUser": 1000}
    assert "source" not in code["containers"][1]
    assert [v["name"] for v in run["volumes"]] == ["var-run-argo", "tmp-dir-argo", "shared"]
    assert [v["name"] for v in code["volumes"]][-2:] == ["argo-staging", "shared"]
    no_executor = pod_templates(argo(kind, workflow_spec()))[0][2]
    assert "securityContext" not in no_executor["containers"][0]  # nil, as upstream


def test_argo_pods_pass_only_with_a_restricted_executor() -> None:
    spec = workflow_spec()
    del spec["templates"][2]["securityContext"]
    cron = argo("CronWorkflow", spec)
    assert object_violations(cron, RESTRICTED_EXECUTOR) == []
    unrestricted: tuple[dict[str, Any] | None, ...] = (None, {})
    for executor in unrestricted:
        lines = object_violations(cron, executor)
        containers = {line.split(": ")[1] for line in lines}
        assert containers == {"initContainer init", "container wait"}, lines
    cron["spec"]["workflowSpec"]["hostNetwork"] = True
    lines = object_violations(cron, RESTRICTED_EXECUTOR)
    assert lines and all(": pod: spec.hostNetwork is true" in line for line in lines)


def test_argo_templates_that_are_not_modelled_are_refused() -> None:
    spec = workflow_spec()
    spec["templates"].append({"name": "apply", "resource": {"action": "create"}})
    with pytest.raises(ValueError, match="template apply: this template type is not modelled"):
        pod_specs(argo("Workflow", spec))


def test_enforced_namespaces_reads_the_enforce_label() -> None:
    objects = [
        {"kind": "Namespace", "metadata": {"name": n, "labels": labels}}
        for n, labels in (
            ("a", {"pod-security.kubernetes.io/enforce": "restricted"}),
            ("b", {"pod-security.kubernetes.io/enforce": "baseline"}),
            ("c", {"pod-security.kubernetes.io/warn": "restricted"}),
            ("d", None),
        )
    ]
    objects.append({"kind": "ConfigMap", "metadata": {"name": "e", "labels": objects[0]}})
    assert enforced_namespaces(objects) == {"a"}


# -- what the project authors ----------------------------------------------------------------------


@functools.cache
def overlay(env: str) -> tuple[dict[str, Any], ...]:
    return tuple(d for d in yaml.safe_load_all(kustomize_build(PLATFORM / "envs" / env)) if d)


@pytest.mark.integration
@pytest.mark.parametrize("env", OVERLAYS)
def test_every_serving_overlay_passes_restricted(plans: StackPlans, env: str) -> None:
    documents = overlay(env)
    pods = [d for d in documents if pod_templates(d)]
    assert pods, f"{env}: no pod template rendered"
    violations = [line for d in documents for line in object_violations(d)]
    assert violations == [], "\n".join(violations)
    if env in STACKS:  # and the stack makes the API server enforce it there
        namespaces = {d["metadata"]["namespace"] for d in pods}
        assert namespaces <= enforced_namespaces(kubernetes_manifests(plans[env]))


def manifest(resource: PlannedResource) -> dict[str, Any]:
    """A planned Kubernetes resource as the manifest it would apply."""
    _, api_version, kind = resource.type.split(":")
    api_version = api_version.removeprefix("core/")
    return {"apiVersion": api_version, "kind": kind, **resource.inputs}


def kubernetes_manifests(plan: Plan) -> list[dict[str, Any]]:
    """The plan's Kubernetes objects (not the Helm charts: they are rendered on the cluster)."""
    return [
        manifest(r)
        for r in plan.resources
        if r.type.startswith("kubernetes:") and isinstance(r.inputs.get("metadata"), dict)
    ]


def argo_executor_security(plan: Plan) -> tuple[bool, dict[str, Any] | None]:
    """Whether the argo-workflows chart values set ``executor.securityContext``, and its value."""
    (chart,) = [
        r
        for r in plan.resources
        if r.type == "kubernetes:helm.sh/v4:Chart" and "argo-workflows" in r.name
    ]
    executor = (chart.inputs.get("values") or {}).get("executor") or {}
    return "securityContext" in executor, executor.get("securityContext")


def cron_workflows(env: str, plan: Plan) -> list[tuple[str, dict[str, Any]]]:
    """(source, CronWorkflow) from the goldens and from the plan."""
    out = [
        (str(path.relative_to(REPO)), yaml.safe_load(path.read_text()))
        for path in sorted((GOLDEN / env).glob("*.yaml"))
    ]
    out += [(f"plan {env}", m) for m in kubernetes_manifests(plan) if m["kind"] == "CronWorkflow"]
    return out


@pytest.mark.parametrize("env", STACKS)
def test_every_cron_workflow_passes_restricted_with_argo_s_injected_containers(
    plans: StackPlans, env: str
) -> None:
    plan = plans[env]
    is_set, executor = argo_executor_security(plan)
    crons = cron_workflows(env, plan)
    assert {source for source, _ in crons} >= {f"plan {env}"} and len(crons) >= 4
    violations = [
        f"{source}: {line}" for source, cron in crons for line in object_violations(cron, executor)
    ]
    setting = (
        f"executor.securityContext = {executor}"
        if is_set
        else "executor.securityContext is not set (Argo's init and wait containers run with no "
        "securityContext)"
    )
    assert violations == [], (
        f"{env}: in the argo-workflows chart values (stacks/components/cluster_services.py), "
        f"{setting}; Pod Security restricted refuses these pods:\n" + "\n".join(violations)
    )


@pytest.mark.parametrize("executor", [None, {}])
def test_a_cron_workflow_with_an_unrestricted_executor_fails_on_the_wait_container(
    plans: StackPlans, executor: dict[str, Any] | None
) -> None:
    crons = cron_workflows("dev", plans["dev"])
    assert len(crons) == 4  # training and monitor, golden and planned: not a vacuous loop
    for _, cron in crons:
        lines = object_violations(cron, executor)
        assert any(": container wait: securityContext.allowPrivilegeEscalation" in x for x in lines)
        assert any(": initContainer init: " in x for x in lines)
        assert all(": container main: " not in x for x in lines), lines  # ours are restricted
        assert object_violations(cron, RESTRICTED_EXECUTOR) == []


@pytest.mark.parametrize("env", STACKS)
def test_the_stack_pods_pass_restricted_in_every_restricted_namespace(
    plans: StackPlans, env: str
) -> None:
    plan = plans[env]
    objects = kubernetes_manifests(plan)
    enforced = enforced_namespaces(objects)
    assert {"mlflow", "mlops", "serving"} <= enforced
    _, executor = argo_executor_security(plan)
    checked = []
    violations = []
    for obj in objects:
        if obj["metadata"].get("namespace") in enforced and obj["kind"] != "CronWorkflow":
            checked += [where for where, _ in pod_specs(obj, executor)]
            violations += object_violations(obj, executor)
    assert "Deployment mlflow/mlflow" in checked
    assert violations == [], "\n".join(violations)
