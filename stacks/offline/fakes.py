"""The fake AWS account Pulumi's mocks answer with: `PlatformMocks` and its helpers.

`PlatformMocks` echoes every resource's inputs as its outputs plus plausible computed outputs
(ARNs, auto-names, endpoints, a kubeconfig, ...) for the types the program uses, and answers
every invoke and component method call the program makes. `stacks.offline.harness.run_program`
uses it by default.
"""

from __future__ import annotations

import json
from typing import Any

import pulumi
from pulumi.runtime import rpc
from pulumi.runtime import settings as _settings
from pulumi.runtime.mocks import MockCallArgs, MockMonitor, MockResourceArgs, Mocks

FAKE_ACCOUNT = "123456789012"
FAKE_REGION = "eu-west-1"


def fake_kubeconfig(name: str) -> dict:
    """A kubeconfig for the mocked EKS cluster `name` (aws eks get-token auth)."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": name,
                "cluster": {
                    "server": f"https://{name}.eks.local",
                    "certificate-authority-data": "Zm9v",
                },
            }
        ],
        "contexts": [{"name": "aws", "context": {"cluster": name, "user": "aws"}}],
        "current-context": "aws",
        "users": [
            {
                "name": "aws",
                "user": {
                    "exec": {
                        "apiVersion": "client.authentication.k8s.io/v1beta1",
                        "command": "aws",
                        "args": ["eks", "get-token", "--cluster-name", name],
                    }
                },
            }
        ],
    }


def resource_ref(typ: str, name: str, id_: str, state: dict, parent_type: str = "") -> dict:
    """A resource-reference value for a mock's returned state (for resource-typed outputs
    such as eks.Cluster.eks_cluster / core.cluster).

    The SDK rehydrates it as the typed resource (e.g. pulumi_aws.eks.Cluster) whose outputs
    are looked up with the "pulumi:pulumi:getResource" invoke, which the MockMonitor answers
    from `monitor.resources` -- so the state is seeded there. A plain dict fails with
    "AssertionError: Unexpected type; expected a value of type <...Cluster>", and creating a
    real Resource inside new_resource registers an extra resource from an executor thread.
    """
    qualified = f"{parent_type}${typ}" if parent_type else typ
    urn = f"urn:pulumi:{pulumi.get_stack()}::{pulumi.get_project()}::{qualified}::{name}"
    _settings.get_monitor().resources[urn] = MockMonitor.ResourceRegistration(urn, id_, state)
    return {rpc._special_sig_key: rpc._special_resource_sig, "urn": urn, "id": id_}


class PlatformMocks(Mocks):
    """Inputs echoed as outputs plus plausible computed outputs for the types we use.

    Resource-typed outputs (eks Cluster.eksCluster, core.cluster) are returned as
    `resource_ref(...)`, never as Resource objects or plain dicts.
    """

    def new_resource(self, args: MockResourceArgs):
        """(id, outputs) of one registered resource: its inputs plus computed outputs."""
        t, name, inputs = args.typ, args.name, dict(args.inputs)
        arn = f"arn:aws:{t.split(':')[1].split('/')[0]}:{FAKE_REGION}:{FAKE_ACCOUNT}:{name}"
        out: dict[str, Any] = {**inputs, "arn": arn}
        if t.startswith("aws:") and "name" not in out:
            # the real provider auto-names (name + random suffix); without this, Role.name,
            # SubnetGroup.name, ... resolve to None (update) and inputs fed from them vanish
            out["name"] = f"{name}-0000abcd"
        if t == "aws:iam/openIdConnectProvider:OpenIdConnectProvider":
            host = str(inputs.get("url", "")).removeprefix("https://")
            out["arn"] = f"arn:aws:iam::{FAKE_ACCOUNT}:oidc-provider/{host}"
        if t == "eks:index:Cluster":
            issuer = f"oidc.eks.{FAKE_REGION}.amazonaws.com/id/{name.upper()}0123456789"
            kcfg = fake_kubeconfig(name)
            out.update(
                kubeconfig=kcfg,
                kubeconfigJson=json.dumps(kcfg),
                oidcProviderArn=f"arn:aws:iam::{FAKE_ACCOUNT}:oidc-provider/{issuer}",
                oidcProviderUrl=issuer,
                oidcIssuer=issuer,
                clusterSecurityGroupId=f"sg-{name}-cluster",
                nodeSecurityGroupId=f"sg-{name}-node",
                clusterIngressRuleId=f"sgr-{name}",
                defaultNodeGroupAsgName="",
                fargateProfileId="",
                fargateProfileStatus="",
                autoModeNodeRoleName="",
            )
            cname = inputs.get("name") or f"{name}-eksCluster-0000000"
            eks_state = {
                "name": cname,
                "arn": f"arn:aws:eks:{FAKE_REGION}:{FAKE_ACCOUNT}:cluster/{cname}",
                "endpoint": f"https://{cname}.eks.local",
                "version": inputs.get("version", "1.31"),
                "certificateAuthority": {"data": "Zm9v"},
                "roleArn": f"arn:aws:iam::{FAKE_ACCOUNT}:role/{name}-eksRole",
                "vpcConfig": {
                    "vpcId": inputs.get("vpcId", ""),
                    "clusterSecurityGroupId": f"sg-{name}-eks",
                },
                "identities": [{"oidcs": [{"issuer": f"https://{issuer}"}]}],
            }
            ref = resource_ref(
                "aws:eks/cluster:Cluster",
                f"{name}-eksCluster",
                cname,
                eks_state,
                parent_type="eks:index:Cluster",
            )
            out["eksCluster"] = ref
            out["core"] = {
                "cluster": ref,
                "endpoint": eks_state["endpoint"],
                "vpcId": inputs.get("vpcId", ""),
                "subnetIds": inputs.get("privateSubnetIds", []) + inputs.get("publicSubnetIds", []),
                "instanceRoles": [],
                "nodeGroupOptions": {},
                "tags": inputs.get("tags", {}),
                "accessEntries": [],
                "publicSubnetIds": inputs.get("publicSubnetIds", []),
                "privateSubnetIds": inputs.get("privateSubnetIds", []),
            }
            return f"{name}-id", out
        if t == "eks:index:ManagedNodeGroup":
            out.pop("cluster", None)  # a resource reference: don't echo it back
            return f"{name}-id", out
        if t.startswith("kubernetes:") and args.custom:
            # the real provider auto-names metadata.name (name + random suffix); mocks don't
            meta = dict(inputs.get("metadata") or {})
            meta.setdefault("name", f"{name}-0000abcd")
            out["metadata"] = meta
            out.pop("arn", None)
            ns = meta.get("namespace", "default")
            return (meta["name"] if t.endswith(":Namespace") else f"{ns}/{meta['name']}"), out
        if t == "aws:s3/bucket:Bucket":
            b = inputs.get("bucket") or f"{name}-bucket"
            out.update(bucket=b, arn=f"arn:aws:s3:::{b}", bucketDomainName=f"{b}.s3.amazonaws.com")
            return b, out
        if t == "aws:rds/instance:Instance":
            out.update(address=f"{name}.db.local", endpoint=f"{name}.db.local:5432", port=5432)
        if t == "aws:ecr/repository:Repository":
            out["repositoryUrl"] = (
                f"{FAKE_ACCOUNT}.dkr.ecr.{FAKE_REGION}.amazonaws.com/{inputs.get('name', name)}"
            )
        if t == "random:index/randomPassword:RandomPassword":
            out["result"] = "mock-password-0123456789"
        if t == "aws:iam/role:Role":
            out["arn"] = f"arn:aws:iam::{FAKE_ACCOUNT}:role/{inputs.get('name', name)}"
        if t == "aws:ec2/launchTemplate:LaunchTemplate":
            out["latestVersion"] = 1
        if t == "aws:kms/key:Key":
            out["keyId"] = f"{name}-key-id"
        return f"{name}-id", out

    def call(self, args: MockCallArgs):
        """The result of one invoke or component method call (``{}`` for unknown tokens)."""
        if args.token == "aws:index/getAvailabilityZones:getAvailabilityZones":
            zones = ["a", "b", "c"]
            return {
                "names": [f"{FAKE_REGION}{z}" for z in zones],
                "zoneIds": [f"euw1-az{i}" for i in range(1, 4)],
                "id": FAKE_REGION,
                "state": "available",
            }
        if args.token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {
                "accountId": FAKE_ACCOUNT,
                "arn": f"arn:aws:iam::{FAKE_ACCOUNT}:user/test",
                "userId": "AIDATEST",
                "id": FAKE_ACCOUNT,
            }
        if args.token == "aws:index/getRegion:getRegion":
            return {"name": FAKE_REGION, "region": FAKE_REGION, "id": FAKE_REGION}
        if args.token == "eks:index:Cluster/getKubeconfig":  # cluster.get_kubeconfig(...)
            cluster_name = str((args.args.get("__self__") or {}).get("urn", "::eks")).split("::")[
                -1
            ]
            return {"result": json.dumps(fake_kubeconfig(cluster_name))}
        if args.token == "aws:index/getPartition:getPartition":
            return {"partition": "aws", "dnsSuffix": "amazonaws.com", "id": "aws"}
        return {}
