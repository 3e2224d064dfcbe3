"""The one typed model of a stack's configuration (``stacks/Pulumi.<env>.yaml``).

An environment is a value: every per-env difference is a field here, validated once, with an
error that names the key. The rest of the code receives these values, never ``pulumi.Config``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.alias_generators import to_camel

from pipelines.argo import WorkflowSettings
from pipelines.errors import PipelineError

PROJECT = "mlops-platform"
STACKS_DIR = Path(__file__).resolve().parent


class StackConfig(BaseModel):
    """Everything that differs between dev, staging and prod."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, alias_generator=to_camel, populate_by_name=True
    )

    env: str
    """Environment name (dev, staging, prod); tags every resource."""
    owner: str
    """Team owning the stack (the ``owner`` tag)."""
    cost_center: str
    """The ``cost-center`` tag."""
    workflows: WorkflowSettings
    """Argo CronWorkflows of the pipelines in this environment."""


def parse_stack_config(document: dict[str, Any], source: str) -> tuple[StackConfig, dict[str, Any]]:
    """Our namespace's keys as a `StackConfig`, and every other provider's keys as they are.

    Raises:
        PipelineError: naming the first invalid or unknown key, and the file.
    """
    values: dict[str, Any] = {}
    providers: dict[str, Any] = {}
    for key, value in (document.get("config") or {}).items():
        namespace, _, name = str(key).partition(":")
        if namespace == PROJECT:
            values[name] = value
        else:
            providers[str(key)] = value
    try:
        config = StackConfig.model_validate(values)
    except ValidationError as error:
        item = error.errors()[0]
        where = ".".join(str(p) for p in item["loc"])
        raise PipelineError(
            f"{source}: {PROJECT}:{where}: {item['msg']}"
            + (f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""),
            "fix the stack config (see stacks/config.py for every key)",
        ) from None
    return config, providers


def load_stack_config(env: str, directory: Path = STACKS_DIR) -> StackConfig:
    """`StackConfig` of ``Pulumi.<env>.yaml``.

    Raises:
        PipelineError: if the file is missing or invalid.
    """
    path = directory / f"Pulumi.{env}.yaml"
    if not path.is_file():
        known = sorted(
            p.name.removeprefix("Pulumi.").removesuffix(".yaml")
            for p in directory.glob("Pulumi.*.yaml")
        )
        raise PipelineError(
            f"no stack {env!r} ({path} is missing)", f"choose one of {', '.join(known)}"
        )
    document = yaml.safe_load(path.read_text()) or {}
    return parse_stack_config(document, path.name)[0]
