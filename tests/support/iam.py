"""A small evaluator of S3 requests against IAM policy documents, for the stack tests.

It implements the part of AWS's policy evaluation the stack's documents use, and refuses
anything else (an unknown condition operator raises, so a check can never pass by ignoring a
condition): ``Action``/``NotAction`` and ``Resource``/``NotResource`` with ``*`` and ``?``
wildcards (``*`` spans ``/``), the operators ``Bool``, ``Null``, ``StringEquals``,
``StringNotEquals``, ``StringLike``, ``StringNotLike``, ``ArnLike``, ``ArnNotLike`` (their
``…IfExists`` forms too), an explicit Deny in any document winning over any Allow, and an
Allow needed in the principal's identity policy (same account: the bucket policy need not
allow). A condition key missing from the request makes a positive operator false and a
negated one true, as in IAM.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Decision = Literal["allow", "deny", "implicit-deny"]


def glob(pattern: str, case: bool = True) -> re.Pattern[str]:
    """IAM's wildcard match: ``*`` any run of characters (``/`` too), ``?`` one character."""
    text = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(text, 0 if case else re.IGNORECASE)


def _listed(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def _matches(patterns: Iterable[str], value: str, case: bool = True) -> bool:
    return any(glob(p, case).fullmatch(value) for p in patterns)


def _names(statement: Mapping[str, Any], principal: str) -> bool:
    """Whether a resource policy statement's ``Principal`` names `principal` (an identity
    statement has none and names its own principal)."""
    named = statement.get("Principal", "*")
    if named == "*":
        return True
    return _matches(_listed(named.get("AWS", [])), principal)


@dataclass(frozen=True)
class Request:
    """One S3 request: who, what, on which ARN, with which condition keys."""

    principal: str
    action: str
    resource: str
    context: Mapping[str, str] = field(default_factory=dict)
    """Condition keys present in the request (``s3:if-none-match``); ``aws:PrincipalArn`` and
    ``aws:SecureTransport`` (true) are added."""

    def key(self, name: str) -> str | None:
        """The value of condition key `name`, None when the request has none."""
        values = {"aws:PrincipalArn": self.principal, "aws:SecureTransport": "true"}
        values.update(self.context)
        return values.get(name)


def _condition_holds(operator: str, entries: Mapping[str, Any], request: Request) -> bool:
    base = operator.removesuffix("IfExists")
    for name, expected in entries.items():
        value = request.key(name)
        wanted = [str(v) for v in _listed(expected)]
        if value is None:
            if base == "Null":
                holds = "true" in [w.lower() for w in wanted]
            elif operator.endswith("IfExists"):
                holds = True
            else:
                holds = "Not" in base  # a negated operator on a missing key is true
        elif base == "Null":
            holds = "false" in [w.lower() for w in wanted]
        elif base == "Bool":
            holds = value.lower() in [w.lower() for w in wanted]
        elif base in ("StringEquals", "StringNotEquals"):
            holds = (value in wanted) == (base == "StringEquals")
        elif base in ("StringLike", "StringNotLike", "ArnLike", "ArnNotLike"):
            holds = _matches(wanted, value) == ("Not" not in base)
        else:
            raise ValueError(
                f"condition operator {operator!r} is not modelled by tests/support/iam"
            )
        if not holds:
            return False
    return True


def applies(statement: Mapping[str, Any], request: Request) -> bool:
    """Whether `statement` covers `request` (action, resource and every condition)."""
    if "Action" in statement:
        if not _matches(_listed(statement["Action"]), request.action, case=False):
            return False
    elif _matches(_listed(statement["NotAction"]), request.action, case=False):
        return False
    if "Resource" in statement:
        if not _matches(_listed(statement["Resource"]), request.resource):
            return False
    elif _matches(_listed(statement["NotResource"]), request.resource):
        return False
    return all(
        _condition_holds(op, entries, request)
        for op, entries in (statement.get("Condition") or {}).items()
    )


def decide(
    identity: Iterable[Mapping[str, Any]],
    bucket: Iterable[Mapping[str, Any]],
    request: Request,
) -> Decision:
    """The outcome of `request` by a principal with the `identity` statements, on a bucket
    with the `bucket` policy statements (same account)."""
    identity, bucket = list(identity), list(bucket)
    for statement in [*identity, *(s for s in bucket if _names(s, request.principal))]:
        if statement["Effect"] == "Deny" and applies(statement, request):
            return "deny"
    if any(s["Effect"] == "Allow" and applies(s, request) for s in identity):
        return "allow"
    return "implicit-deny"
