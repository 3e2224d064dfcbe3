"""Finding resources in a stack's offline plan (`stacks.offline.plan.Plan`)."""

from __future__ import annotations

from typing import Any

from stacks.offline.plan import Plan


def one(plan: Plan, token: str, name: str | None = None) -> Any:
    """The one planned resource of type `token` (and logical `name`, when given); fails when
    there is none or more than one."""
    (found,) = [r for r in plan.resources if r.type == token and (name is None or r.name == name)]
    return found
