"""Finding 15, the nodes' half: every managed node group launches from a template of the plan that
keeps pods off the instance metadata (IMDSv2 only, PUT hop limit 1), read in the stacks' plans;
the policy pack's ``eks-node-imds`` checks each resource (tests/policies), this checks the
wiring between them, and a planted node group on a 2-hop template is caught."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from policies.engine import Resource, evaluate, load_pack_config
from stacks.offline.plan import PlannedResource
from tests.conftest import StackPlans

ENVS = ("dev", "staging", "prod")
LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
NODE_GROUP = "eks:index:ManagedNodeGroup"


def mocked_id(resource: PlannedResource) -> str:
    """The id the offline mocks give a resource (stacks.offline.fakes: ``<name>-id``)."""
    return f"{resource.name}-id"


def node_metadata_problems(resources: list[PlannedResource]) -> list[str]:
    """One line per node group whose launch template is missing, unknown to the plan, or lets
    pods reach the instance metadata (the ``eks-node-imds`` rule on that template)."""
    templates = {mocked_id(r): r for r in resources if r.type == LAUNCH_TEMPLATE}
    problems = []
    for group in (r for r in resources if r.type == NODE_GROUP):
        reference: dict[str, Any] = group.inputs.get("launchTemplate") or {}
        template = templates.get(str(reference.get("id")))
        if template is None:
            problems.append(f"{group.name}: no launch template of this stack ({reference})")
            continue
        checked = Resource(template.type, template.name, template.inputs, urn=template.name)
        violations, _ = evaluate([checked], load_pack_config("prod"))
        problems += [f"{group.name}: {v.message}" for v in violations if v.rule == "eks-node-imds"]
    return problems


@pytest.mark.parametrize("env", ENVS)
@pytest.mark.parametrize("preview", [True, False])
def test_every_node_group_keeps_pods_off_the_instance_metadata(
    plans: StackPlans, env: str, preview: bool
) -> None:
    resources = plans.of(env, preview).resources
    groups = [r for r in resources if r.type == NODE_GROUP]
    assert len(groups) == 2
    assert node_metadata_problems(resources) == []
    for template in (r for r in resources if r.type == LAUNCH_TEMPLATE):
        assert template.inputs["metadataOptions"] == {
            "httpEndpoint": "enabled",
            "httpTokens": "required",
            "httpPutResponseHopLimit": 1,
        }
        # with a launch template EKS takes the disk size from it, not from the node group
        (device,) = template.inputs["blockDeviceMappings"]
        assert device["ebs"]["encrypted"] == "true" and device["ebs"]["volumeSize"] >= 20
    assert all("diskSize" not in g.inputs for g in groups)


def test_a_node_group_on_a_two_hop_template_is_caught(plans: StackPlans) -> None:
    resources = [copy.deepcopy(r) for r in plans["prod"].resources]
    (workloads,) = [r for r in resources if r.name == "cluster-workloads-nodes"]
    workloads.inputs["metadataOptions"]["httpPutResponseHopLimit"] = 2
    (problem,) = node_metadata_problems(resources)
    assert problem.startswith("cluster-workloads: ") and "httpPutResponseHopLimit is 2" in problem


def test_a_node_group_without_a_template_of_the_stack_is_caught(plans: StackPlans) -> None:
    resources = [copy.deepcopy(r) for r in plans["prod"].resources]
    (system,) = [r for r in resources if r.name == "cluster-system"]
    system.inputs["launchTemplate"] = {"id": "lt-0somewhereelse", "version": "1"}
    (problem,) = node_metadata_problems(resources)
    assert problem.startswith("cluster-system: no launch template of this stack")
