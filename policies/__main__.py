"""The CrossGuard pack: `pulumi preview --policy-pack policies`. Only wiring; rules are in
`policies.rules` (constructing a PolicyPack starts the analyzer server and blocks)."""

from pulumi_policy import (
    EnforcementLevel,
    PolicyPack,
    ResourceValidationPolicy,
    StackValidationPolicy,
)

from policies.rules import RULES

LEVELS = {
    "mandatory": EnforcementLevel.MANDATORY,
    "advisory": EnforcementLevel.ADVISORY,
    "disabled": EnforcementLevel.DISABLED,
}

policies = []
for rule in RULES:
    schema = {"properties": rule.config_schema} if rule.config_schema else None
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

PolicyPack(name="mlops-guardrails", enforcement_level=EnforcementLevel.MANDATORY, policies=policies)
