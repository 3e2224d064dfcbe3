"""IAM: no ``*`` on ``*`` and no administrator policies, attached or inline."""

from __future__ import annotations

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
