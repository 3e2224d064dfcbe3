"""The rules as pulumi_policy objects (building them does not start the analyzer)."""

from __future__ import annotations

from pulumi_policy import (
    EnforcementLevel,
    Policy,
    PolicyConfigSchema,
    ResourceValidationPolicy,
    StackValidationPolicy,
)

from policies.rules import RULES

LEVELS = {
    "mandatory": EnforcementLevel.MANDATORY,
    "advisory": EnforcementLevel.ADVISORY,
    "disabled": EnforcementLevel.DISABLED,
}


def build_policies() -> list[Policy]:
    """One pulumi_policy policy per rule, with its default level and config schema.

    A rule's offline mark (``policies.rules.placeholders.offline``) is for the offline engine's
    ``explore`` mode only: under Pulumi every rule has its declared level (or the pack config's).
    """
    policies: list[Policy] = []
    for rule in RULES:
        schema = PolicyConfigSchema(properties=rule.config_schema) if rule.config_schema else None
        kind = StackValidationPolicy if rule.kind == "stack" else ResourceValidationPolicy
        policies.append(
            kind(
                name=rule.name,
                description=rule.description,
                enforcement_level=LEVELS[rule.level],
                validate=rule.validate,
                config_schema=schema,
            )
        )
    return policies
