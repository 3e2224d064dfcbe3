"""ECR: what a registry policy may let another account do in this registry (replicate named
repositories into it, nothing else)."""

from __future__ import annotations

import re
from typing import Any

from policies.rules.base import Report, as_list, get, rule, statements, who

REPLICATE = "ecr:ReplicateImage"
ROOT_ARN = re.compile(r"^arn:aws(?:-[a-z]+)*:iam::\d{12}:root$")
NAMED_REPOSITORY = re.compile(
    r"^arn:aws(?:-[a-z]+)*:ecr:[a-z0-9-]+:\d{12}:repository/[a-z0-9][\w./-]*$"
)
"""One repository by its full name (no wildcard)."""


@rule(
    "ecr-registry-policy-replicate-only",
    "A registry policy lets other accounts only replicate into named repositories",
    "mandatory",
)
def ecr_registry_policy_replicate_only(args: Any, report: Report) -> None:
    """Every Allow statement of an ECR registry policy names account roots as principals (never
    ``*``), allows only ``ecr:ReplicateImage`` (no ``ecr:CreateRepository``: the stacks create
    the repositories, with their settings) and only on repositories named in full."""
    if args.resource_type != "aws:ecr/registryPolicy:RegistryPolicy":
        return
    for statement in statements(get(args.props, "policy")):
        if statement.get("Effect") != "Allow":
            continue
        sid = statement.get("Sid", "(no Sid)")
        principal = statement.get("Principal")
        named = as_list(get(principal, "AWS")) if isinstance(principal, dict) else [principal]
        problems = [
            f"principal {p!r} is not an account root" for p in named if not ROOT_ARN.match(str(p))
        ]
        if "NotAction" in statement or "NotResource" in statement or "NotPrincipal" in statement:
            problems.append("uses NotAction/NotResource/NotPrincipal")
        actions = [a for a in as_list(statement.get("Action")) if a != REPLICATE]
        if actions:
            problems.append(f"allows {actions}: only {REPLICATE}")
        resources = [
            r for r in as_list(statement.get("Resource")) if not NAMED_REPOSITORY.match(str(r))
        ]
        if resources or not as_list(statement.get("Resource")):
            problems.append(f"resource {resources or 'none'} is not a repository named in full")
        for problem in problems:
            report(f"{who(args)}: statement {sid} {problem} (policy)")
