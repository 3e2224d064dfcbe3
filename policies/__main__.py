"""The CrossGuard pack: `pulumi preview --policy-pack policies`. Only wiring — the rules are in
`policies.rules`, because constructing a PolicyPack starts the analyzer server and blocks."""

from pulumi_policy import EnforcementLevel, PolicyPack

from policies.pack import build_policies

PolicyPack(
    name="mlops-guardrails", enforcement_level=EnforcementLevel.MANDATORY, policies=build_policies()
)
