"""The Helm charts the stacks install, rendered offline with the pinned helm.

- `planned_charts`: each ``helm.v4.Chart`` of a stack plan (chart, version, release, namespace,
  values), with the values made concrete: an output the mocks leave unknown becomes
  `PLACEHOLDER`, and the mocks' floats (protobuf Struct) become integers again;
- `render`: ``helm template`` of a vendored chart (``tests/schemas/charts/<chart>-<version>``)
  with those values, as helm.v4.Chart renders it: CRDs included, objects without a namespace put
  in the release namespace; hook resources are kept so a test can see what helm.v4.Chart drops
  (it renders with hooks disabled and never runs them: `hook_resources`);
- `unknown_value_keys`: every key path the stack sets that the chart's ``values.yaml`` does not
  define (Helm ignores such keys without a word).
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from stacks.config import ClusterConfig
from stacks.offline.harness import SECRET, UNKNOWN
from tests.support.tools import helm

if TYPE_CHECKING:
    from stacks.offline.plan import Plan

CHARTS_DIR = Path(__file__).resolve().parent.parent / "schemas" / "charts"
CHART_TYPE = "kubernetes:helm.sh/v4:Chart"
PLACEHOLDER = "placeholder"
"""What an input the mocks leave unknown (``<unknown>``, None) or masked becomes in the values."""
CLUSTER_TYPE = "eks:index:Cluster"
KUBE_VERSION = str(ClusterConfig.model_fields["version"].default)
"""``.Capabilities.KubeVersion`` when a plan has no EKS cluster (ClusterConfig's default);
helm.v4.Chart renders with the cluster's own version, and so does `render_planned`."""
RENDER_TIMEOUT_S = 120
HOOK_ANNOTATION = "helm.sh/hook"
CLUSTER_SCOPED = frozenset(
    {
        "APIService",
        "ClusterRole",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
        "IngressClass",
        "MutatingWebhookConfiguration",
        "Namespace",
        "PersistentVolume",
        "PriorityClass",
        "StorageClass",
        "ValidatingWebhookConfiguration",
    }
)
"""Kinds that take no namespace (everything else gets the release namespace if it has none)."""


class RenderError(RuntimeError):
    """``helm template`` failed; the message is helm's stderr."""


@dataclass(frozen=True)
class PlannedChart:
    """One ``helm.v4.Chart`` of a plan, as helm.v4.Chart would render it."""

    resource: str
    """The Pulumi resource name."""
    chart: str
    version: str
    release: str
    """``name`` of the Chart, else the resource name (what helm.v4.Chart uses)."""
    namespace: str
    values: dict[str, Any]
    kube_version: str = KUBE_VERSION
    """The Kubernetes version of the plan's EKS cluster."""

    @property
    def directory(self) -> Path:
        """The vendored chart directory of this chart and version."""
        return CHARTS_DIR / f"{self.chart}-{self.version}"


def concrete(value: Any) -> Any:
    """`value` with unknown, null and masked leaves as `PLACEHOLDER`, integral floats as ints."""
    if isinstance(value, Mapping):
        return {str(k): concrete(v) for k, v in value.items()}
    if isinstance(value, list):
        return [concrete(v) for v in value]
    if value is None or value in (UNKNOWN, SECRET):
        return PLACEHOLDER
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def planned_charts(plan: Plan) -> dict[str, PlannedChart]:
    """Every ``helm.v4.Chart`` of `plan`, by chart name."""
    charts: dict[str, PlannedChart] = {}
    clusters = [r.inputs.get("version") for r in plan.resources if r.type == CLUSTER_TYPE]
    kube_version = str(clusters[0]) if len(clusters) == 1 and clusters[0] else KUBE_VERSION
    for resource in plan.resources:
        if resource.type != CHART_TYPE:
            continue
        inputs = resource.inputs
        chart = str(inputs["chart"])
        assert chart not in charts, f"two Charts of {chart} in the plan"
        charts[chart] = PlannedChart(
            resource=resource.name,
            chart=chart,
            version=str(inputs["version"]),
            release=str(inputs.get("name") or resource.name),
            namespace=str(inputs.get("namespace") or "default"),
            values=concrete(inputs.get("values") or {}),
            kube_version=kube_version,
        )
    return charts


def render(
    chart_dir: Path,
    release: str,
    namespace: str,
    values: Mapping[str, Any],
    *,
    kube_version: str = KUBE_VERSION,
    timeout: float = RENDER_TIMEOUT_S,
) -> list[dict[str, Any]]:
    """``helm template RELEASE CHART_DIR -n NAMESPACE -f values.yaml --include-crds``, parsed.

    Offline by construction: helm's homes are a fresh temporary directory and every HTTP(S)
    request would go to a closed local port (a chart dependency missing from ``charts/`` fails
    instead of being fetched).

    Raises:
        RenderError: helm's stderr, when it exits non-zero.
    """
    with tempfile.TemporaryDirectory(prefix="helm-") as tmp:
        home = Path(tmp)
        values_file = home / "values.yaml"
        values_file.write_text(yaml.safe_dump(dict(values), sort_keys=False))
        nowhere = "http://127.0.0.1:9"
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(home),
            "HELM_CACHE_HOME": str(home / "cache"),
            "HELM_CONFIG_HOME": str(home / "config"),
            "HELM_DATA_HOME": str(home / "data"),
            "HTTP_PROXY": nowhere,
            "HTTPS_PROXY": nowhere,
            "NO_PROXY": "",
        }
        done = subprocess.run(
            [
                str(helm()),
                "template",
                release,
                str(chart_dir),
                "--namespace",
                namespace,
                "--values",
                str(values_file),
                "--kube-version",
                kube_version,
                "--include-crds",
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout,
            check=False,
        )
    if done.returncode != 0:
        raise RenderError(done.stderr.strip())
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # argo-cd renders ~2 MB of YAML
    objects = [d for d in yaml.load_all(done.stdout, Loader=loader) if isinstance(d, dict)]
    for obj in objects:
        meta = obj.setdefault("metadata", {})
        if obj.get("kind") not in CLUSTER_SCOPED and not meta.get("namespace"):
            meta["namespace"] = namespace
    return objects


def render_planned(
    chart: PlannedChart,
    *,
    release: str | None = None,
    values: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """`render` of a planned chart: its release, namespace and values (or `release`/`values`)."""
    return render(
        chart.directory,
        release or chart.release,
        chart.namespace,
        chart.values if values is None else values,
        kube_version=chart.kube_version,
    )


def describe(obj: Mapping[str, Any]) -> str:
    """``Kind namespace/name`` of a Kubernetes object."""
    meta = obj.get("metadata") or {}
    namespace = meta.get("namespace")
    return f"{obj.get('kind')} {namespace + '/' if namespace else ''}{meta.get('name')}"


def hook_resources(objects: Iterable[Mapping[str, Any]]) -> list[str]:
    """The Helm hooks among `objects`: helm.v4.Chart renders with hooks disabled, so these are
    never created (and a Job among them never runs)."""
    return [
        f"{describe(obj)} ({annotations[HOOK_ANNOTATION]})"
        for obj in objects
        if HOOK_ANNOTATION in (annotations := (obj.get("metadata") or {}).get("annotations") or {})
    ]


def load_values(chart_values_yaml: Path | Mapping[str, Any]) -> Mapping[str, Any]:
    """A chart's default values (its ``values.yaml``, or an already loaded mapping)."""
    if isinstance(chart_values_yaml, Mapping):
        return chart_values_yaml
    loaded = yaml.safe_load(Path(chart_values_yaml).read_text(encoding="utf-8"))
    return loaded if isinstance(loaded, Mapping) else {}


def unknown_value_keys(
    values: Mapping[str, Any],
    chart_values_yaml: Path | Mapping[str, Any],
    free_form: Iterable[str | tuple[str, ...]] = (),
) -> list[str]:
    """Dotted paths of the keys in `values` that the chart's defaults do not define, sorted.

    A key whose default is an empty map (``{}``, e.g. ``artifactRepository.s3``,
    ``controller.podSecurityContext``) accepts any children. `free_form` names more such maps,
    for a chart that documents a free-form map with non-empty defaults (a dotted path, or a
    tuple of keys when a key holds a dot). Lists are leaves: their items are not checked.
    """
    free = {tuple(p.split(".")) if isinstance(p, str) else tuple(p) for p in free_form}
    unknown: list[str] = []

    def walk(node: Mapping[str, Any], defaults: Any, path: tuple[str, ...]) -> None:
        for key, value in node.items():
            here = (*path, str(key))
            if not isinstance(defaults, Mapping) or key not in defaults:
                unknown.append(".".join(here))
                continue
            default = defaults[key]
            if here in free or (isinstance(default, Mapping) and not default):
                continue
            if isinstance(value, Mapping):
                walk(value, default, here)

    walk(values, load_values(chart_values_yaml), ())
    return sorted(unknown)
