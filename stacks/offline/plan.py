"""``mlops infra plan``: run a Pulumi program under mocks and describe what it would create."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from pipelines.errors import PipelineError
from stacks.config import PROJECT, STACKS_DIR, parse_stack_config

if TYPE_CHECKING:
    from policies.engine import Mode

KEY_PROPERTIES = (
    "cidrBlock",
    "availabilityZone",
    "bucket",
    "engine",
    "instanceClass",
    "multiAz",
    "deletionProtection",
    "backupRetentionPeriod",
    "version",
    "instanceTypes",
    "capacityType",
    "chart",
    "kind",
    "name",
    "imageTagMutability",
    "endpointPublicAccess",
    "trafficType",
)
"""Inputs worth a glance in the table (``--json`` has all of them, secrets masked)."""


@dataclass
class PlannedResource:
    """One resource the program registered."""

    type: str
    name: str
    parent: str
    custom: bool
    inputs: dict[str, Any]
    """Inputs with every secret value masked."""


@dataclass
class Plan:
    """What one mocked run of a program registered and exported."""

    stack: str
    mode: str
    resources: list[PlannedResource]
    outputs: dict[str, Any]
    secret_outputs: list[str]
    policy: dict[str, Any] = field(default_factory=dict)

    def document(self) -> dict[str, Any]:
        """The JSON form (``mlops infra plan --json``)."""
        return {
            "stack": self.stack,
            "mode": self.mode,
            "resources": [r.__dict__ for r in self.resources],
            "outputs": self.outputs,
            "secret_outputs": self.secret_outputs,
            **inventory(self.resources),
            **({"policy": self.policy} if self.policy else {}),
        }


def _images(value: Any) -> list[str]:
    """Every container image named anywhere in a Kubernetes resource's inputs."""
    if isinstance(value, dict):
        found = [value["image"]] if isinstance(value.get("image"), str) else []
        return found + [i for k, v in value.items() if k != "image" for i in _images(v)]
    if isinstance(value, list):
        return [i for v in value for i in _images(v)]
    return []


def inventory(resources: list[PlannedResource]) -> dict[str, Any]:
    """What a deploy would run, resolved: the EKS and PostgreSQL versions, each Helm chart's
    version, and every container image the stack's own Kubernetes objects name."""
    versions: dict[str, Any] = {"charts": {}}
    images: dict[str, list[str]] = {}
    for r in resources:
        if r.type == "eks:index:Cluster":
            versions["kubernetes"] = r.inputs.get("version")
        elif r.type == "aws:rds/instance:Instance":
            versions["postgresql"] = r.inputs.get("engineVersion")
        elif r.type == "kubernetes:helm.sh/v4:Chart":
            versions["charts"][r.inputs.get("chart", r.name)] = r.inputs.get("version")
        elif r.type.startswith("kubernetes:"):
            for image in _images(r.inputs):
                images.setdefault(image, []).append(r.name)
    return {"versions": versions, "images": {k: sorted(set(v)) for k, v in images.items()}}


def load_config_file(path: Path) -> dict[str, Any]:
    """The ``config:`` map of a Pulumi stack file.

    Raises:
        PipelineError: if the file is missing or is not a stack config.
    """
    if not path.is_file():
        raise PipelineError(
            f"stack config {path} not found", "pass --config-file or a known --stack"
        )
    document = yaml.safe_load(path.read_text()) or {}
    config = document.get("config")
    if not isinstance(config, dict):
        raise PipelineError(
            f"{path} has no `config:` map", "it must look like stacks/Pulumi.dev.yaml"
        )
    return config


def plan_stack(
    stack: str,
    program: Path | None = None,
    config_file: Path | None = None,
    preview: bool = True,
    policy_mode: Mode = "explore",
) -> Plan:
    """Run `program` (default: this project's ``stacks/``) under mocks for `stack`.

    `policy_mode` is the policy engine's mode (``policies.engine``): ``explore`` (default)
    reports the rules marked for it (placeholders) as warnings, ``pulumi`` as Pulumi enforces.

    Raises:
        PipelineError: on an invalid stack config or when the program fails.
    """
    from stacks.offline.harness import run_program

    directory = (program or STACKS_DIR).resolve()
    if not (directory / "__main__.py").is_file():
        raise PipelineError(
            f"{directory} has no __main__.py", "--program takes a Pulumi Python program's directory"
        )
    config_path = config_file or (directory / f"Pulumi.{stack}.yaml")
    config = load_config_file(config_path)
    if program is None:  # our own program: validate the config up front, with clear errors
        parse_stack_config({"config": config}, config_path.name)
    try:
        result = run_program(
            directory, project=PROJECT, stack=stack, config=config, preview=preview
        )
    except PipelineError:
        raise
    except Exception as error:
        raise PipelineError(
            f"the program failed under mocks: {type(error).__name__}: {error}"
        ) from error
    # Registration order depends on when outputs resolve; sort for a stable plan (components
    # first, so a tree can be built in one pass).
    resources = sorted(
        (
            PlannedResource(r.type, r.name, r.parent_name, r.custom, r.masked_inputs)
            for r in result.resources
        ),
        key=lambda r: (r.custom, r.parent, r.type, r.name),
    )
    plan = Plan(
        stack,
        "preview" if preview else "update",
        resources,
        result.masked_outputs,
        sorted(result.secret_outputs),
    )
    plan.policy = check_policies(stack, result.resources, policy_mode, config)
    return plan


def check_policies(
    stack: str,
    registered: list[Any],
    mode: Mode = "explore",
    stack_config: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The CrossGuard pack's verdict on the captured resources, with the stack's pack config, in
    the engine's `mode`; with the placeholders of `stack_config` a user must replace."""
    from policies.engine import MODES, Resource, assess, load_pack_config
    from policies.rules.placeholders import stack_placeholders

    if mode not in MODES:
        raise PipelineError(f"unknown policy mode {mode!r}", f"use one of {', '.join(MODES)}")
    captured = [
        Resource(r.type, r.name, r.inputs, urn=r.name)
        for r in sorted(registered, key=lambda r: (r.type, r.name))  # registration order varies
        if not r.type.startswith("mlops:")
    ]
    verdict = assess(captured, load_pack_config(stack), mode=mode)
    violations = verdict.violations
    return {
        "mode": verdict.mode,
        "violations": [v.__dict__ for v in violations],
        "mandatory": sum(v.level == "mandatory" for v in violations),
        "advisory": sum(v.level == "advisory" for v in violations),
        "warnings": [v.__dict__ for v in verdict.warnings],
        "notes": [f"{rule}: {note}" for rule, note in verdict.notes.items()],
        "placeholders": stack_placeholders(stack_config or {}),
        "skipped_unknown": verdict.skipped,
    }


def key_properties(inputs: dict[str, Any]) -> str:
    """A short ``k=v`` summary of the inputs worth showing."""
    shown = []
    for key in KEY_PROPERTIES:
        value = inputs.get(key)
        if value is not None and not isinstance(value, dict):
            shown.append(f"{key}={value}")
    return ", ".join(shown)[:90]
