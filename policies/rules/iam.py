"""IAM: no ``*`` on ``*`` and no administrator policies, attached or inline."""

from __future__ import annotations

import re
from typing import Any

from policies.rules.base import Report, as_list, get, rule, statements, who

POLICY_DOCUMENTS = {
    "aws:iam/policy:Policy": "policy",
    "aws:iam/rolePolicy:RolePolicy": "policy",
    "aws:iam/userPolicy:UserPolicy": "policy",
    "aws:iam/groupPolicy:GroupPolicy": "policy",
}
ADMIN_POLICIES = (
    "arn:aws:iam::aws:policy/AdministratorAccess",
    "arn:aws:iam::aws:policy/IAMFullAccess",
)


def _documents(args: Any) -> list[Any]:
    """The policy documents a resource carries (its own, or a role's inline policies)."""
    key = POLICY_DOCUMENTS.get(args.resource_type)
    if key:
        return [get(args.props, key)]
    if args.resource_type == "aws:iam/role:Role":
        return [get(p, "policy") for p in as_list(get(args.props, "inlinePolicies"))]
    return []


@rule("iam-no-star-on-star", "No IAM statement with action * on resource *", "mandatory")
def iam_no_star_on_star(args: Any, report: Report) -> None:
    """No statement allowing action ``*`` on resource ``*``."""
    for document in _documents(args):
        for statement in statements(document):
            actions, resources = (
                as_list(statement.get("Action")),
                as_list(statement.get("Resource")),
            )
            if (
                statement.get("Effect") == "Allow"
                and ("*" in actions or "*:*" in actions)
                and "*" in resources
            ):
                report(f"{who(args)}: policy allows Action '*' on Resource '*'")


@rule("iam-no-admin", "No administrator policies attached or inline", "mandatory")
def iam_no_admin(args: Any, report: Report) -> None:
    """No administrator policies, attached or inline.

    Neither AdministratorAccess/IAMFullAccess attached nor ``iam:*`` granted inline.
    """
    t, p = args.resource_type, args.props
    attached: list[Any] = []
    if t.endswith("PolicyAttachment") and t.startswith("aws:iam/"):
        attached = [get(p, "policyArn")]
    elif t == "aws:iam/role:Role":
        attached = as_list(get(p, "managedPolicyArns"))
    for arn in attached:
        if arn in ADMIN_POLICIES:
            report(f"{who(args)}: attaches administrator policy {arn}")
    for document in _documents(args):
        for statement in statements(document):
            if statement.get("Effect") == "Allow" and "iam:*" in as_list(statement.get("Action")):
                report(f"{who(args)}: inline policy grants iam:* (administrator)")


GITHUB_OIDC = "token.actions.githubusercontent.com"
"""GitHub Actions' OIDC issuer: its provider ARN ends with it, its condition keys start with it."""
GITHUB_SUBJECT = re.compile(r"^repo:[^/:]+/[^/:]+:[^:]+(?::[^:]+)?$")
"""``repo:<owner>/<name>:<context>`` (``ref:refs/heads/main``, ``environment:prod``,
``pull_request``)."""


def _github_statement(statement: Any) -> bool:
    federated = as_list(get(statement, "Principal", "Federated"))
    conditions = statement.get("Condition")
    keys = [k for block in (conditions or {}).values() if isinstance(block, dict) for k in block]
    return any(isinstance(f, str) and f.endswith(f"/{GITHUB_OIDC}") for f in federated) or any(
        str(k).startswith(f"{GITHUB_OIDC}:") for k in keys
    )


def _trust_problems(statement: Any) -> list[str]:
    """What is wrong with one GitHub OIDC trust statement (empty if nothing)."""
    problems = []
    actions = as_list(statement.get("Action"))
    if actions != ["sts:AssumeRoleWithWebIdentity"]:
        problems.append(f"allows {actions}, not only sts:AssumeRoleWithWebIdentity")
    conditions = statement.get("Condition") or {}
    equals = conditions.get("StringEquals") or {}
    if as_list(equals.get(f"{GITHUB_OIDC}:aud")) != ["sts.amazonaws.com"]:
        problems.append(f"no StringEquals condition {GITHUB_OIDC}:aud = sts.amazonaws.com")
    subjects = [
        (operator, value)
        for operator, block in conditions.items()
        if isinstance(block, dict)
        for value in as_list(block.get(f"{GITHUB_OIDC}:sub"))
    ]
    if not subjects:
        problems.append(f"no {GITHUB_OIDC}:sub condition: any repository's workflow may assume it")
    for operator, value in subjects:
        text = str(value)
        if operator != "StringEquals" or "*" in text or "?" in text:
            problems.append(
                f"{GITHUB_OIDC}:sub {operator} {text!r} is a pattern; name one repository and "
                "one branch or environment with StringEquals"
            )
        elif not GITHUB_SUBJECT.match(text):
            problems.append(
                f"{GITHUB_OIDC}:sub {text!r} does not scope to repo:<owner>/<name>:<context>"
            )
    return problems


@rule(
    "ci-oidc-trust",
    "A role GitHub Actions assumes trusts one repository's exact subject with audience STS",
    "mandatory",
)
def ci_oidc_trust(args: Any, report: Report) -> None:
    """A role trusting GitHub's OIDC provider names its audience and one exact subject.

    Refuses a trust without the ``aud`` condition, without a ``sub`` condition, with a ``sub``
    pattern (``*``/``?`` or ``StringLike``), or a ``sub`` that is not ``repo:<owner>/<name>:…``.
    """
    if args.resource_type != "aws:iam/role:Role":
        return
    for statement in statements(get(args.props, "assumeRolePolicy")):
        if statement.get("Effect") == "Allow" and _github_statement(statement):
            for problem in _trust_problems(statement):
                report(f"{who(args)}: GitHub OIDC trust {problem} (assumeRolePolicy)")
