"""The rule registry and the helpers every domain module shares.

A rule is a pure function ``(args, report_violation)`` declared with `rule`, which records it,
with its name, description, default level, kind and config schema, under its module. Each rule
reads only ``args.resource_type``, ``args.name``, ``args.props`` (Pulumi's camelCase property
names) and ``args.get_config()``. This module imports nothing of the project.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

Report = Callable[..., None]
Level = Literal["mandatory", "advisory", "disabled"]
Kind = Literal["resource", "stack"]
Validate = Callable[[Any, Report], None]
V = TypeVar("V", bound=Validate)

WORLD = {"0.0.0.0/0", "::/0"}
"""The CIDRs that mean "the whole internet"."""


@dataclass(frozen=True)
class Rule:
    """One policy: its name, what it enforces, its default level and its function."""

    name: str
    description: str
    level: Level
    validate: Callable[[Any, Report], None]
    kind: Kind = "resource"
    config_schema: dict[str, Any] = field(default_factory=dict)


_REGISTRY: dict[str, list[Rule]] = {}
"""The declared rules, by the module that declares them, in declaration order."""


def rule(
    name: str,
    description: str,
    level: Level,
    *,
    kind: Kind = "resource",
    config_schema: Mapping[str, Any] | None = None,
) -> Callable[[V], V]:
    """Declare the decorated function as the rule `name` (the function itself is unchanged)."""

    def declare(validate: V) -> V:
        rule_ = Rule(name, description, level, validate, kind, dict(config_schema or {}))
        _REGISTRY.setdefault(validate.__module__, []).append(rule_)
        return validate

    return declare


def collect(modules: Iterable[str]) -> list[Rule]:
    """The rules declared in `modules`, module by module, each in declaration order."""
    order = list(modules)
    unlisted = sorted(set(_REGISTRY) - set(order))
    if unlisted:
        raise RuntimeError(f"rules declared in modules outside the pack: {unlisted}")
    rules = [r for module in order for r in _REGISTRY.get(module, [])]
    names = [r.name for r in rules]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise RuntimeError(f"rules declared more than once: {duplicates}")
    return rules


def get(mapping: Any, *path: str, default: Any = None) -> Any:
    """The value at `path` in nested mappings, or `default` where the path stops."""
    value = mapping
    for key in path:
        if not isinstance(value, Mapping) or key not in value:
            return default
        value = value[key]
    return value


def as_list(value: Any) -> list[Any]:
    """`value` as a list: ``[]`` for None, itself for a list or tuple, else ``[value]``."""
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


def statements(document: Any) -> Iterator[Mapping[str, Any]]:
    """The statements of an IAM policy document (a mapping or its JSON text)."""
    if isinstance(document, str):
        try:
            document = json.loads(document)
        except ValueError:
            return
    if isinstance(document, Mapping):
        yield from (s for s in as_list(document.get("Statement")) if isinstance(s, Mapping))


def config_of(args: Any) -> Mapping[str, Any]:
    """The rule's config from ``args.get_config()``, or ``{}``."""
    getter = getattr(args, "get_config", None)
    config = getter() if callable(getter) else None
    return config or {}


def who(args: Any) -> str:
    """How a violation names the resource: its type and name."""
    return f"{args.resource_type} {args.name!r}"
