"""The serving image reaches every env of the promotion chain by ECR replication, by digest.

The chain's first env (the one that trains, dev) builds the serving image (the images job
pushes it there only) and replicates its ``mlops-serving`` repository to every later env's
account; each later account's registry policy admits only that account's replication. So
staging and prod hold the very image (same manifest digest) the candidate was created on, and a
move checks the digest is there before it pins it (`pipelines.ml.images`).

What ECR does (Amazon ECR User Guide, "Private image replication", considerations, and "Private
registry policy examples"): a replication action occurs once per image push and a replicated
image is not replicated again — hence dev → staging *and* dev → prod, not a relay; the
repository name stays the same in every account; repository settings (tag immutability, scan
on push, KMS) are not replicated onto a repository replication creates — so each stack creates
``mlops-serving`` itself (`stacks.components.ecr`) and the registry policy grants
``ecr:ReplicateImage`` without ``ecr:CreateRepository`` (a repository of the same name must then
exist, which it does).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from stacks.candidates_config import Chain
from stacks.components.ecr import repository_name

SERVING = repository_name("any", "serving")
"""``mlops-serving``: the same in every account."""


def repository_arn(region: str, account_id: str) -> str:
    """The ARN of the serving repository in `account_id`."""
    return f"arn:aws:ecr:{region}:{account_id}:repository/{SERVING}"


def repository_url(region: str, account_id: str) -> str:
    """The serving repository as images name it (``MLOPS_SERVING_REPOSITORY``)."""
    return f"{account_id}.dkr.ecr.{region}.amazonaws.com/{SERVING}"


def replication_rules(region: str, destinations: list[str]) -> dict[str, Any]:
    """The origin registry's replication configuration: the serving repository, only, to each
    of `destinations` (accounts) in `region`."""
    return {
        "rules": [
            {
                "destinations": [{"region": region, "registry_id": a} for a in destinations],
                "repository_filters": [{"filter": SERVING, "filter_type": "PREFIX_MATCH"}],
            }
        ]
    }


def registry_policy(region: str, account_id: str, origin_account: str) -> str:
    """A later env's registry policy: the origin account may replicate into this account's
    serving repository, nothing else (no repository creation, no other repository)."""
    statement = {
        "Sid": "ReplicateServingImageFromOrigin",
        "Effect": "Allow",
        "Principal": {"AWS": f"arn:aws:iam::{origin_account}:root"},
        "Action": ["ecr:ReplicateImage"],
        "Resource": [repository_arn(region, account_id)],
    }
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


def digest_statements(serving_repository: str | None) -> list[dict[str, Any]]:
    """The pipeline role's read of its own serving repository (``MLOPS_SERVING_REPOSITORY``,
    none when unset): a candidate's image digest is resolved there (origin) and checked there
    before a move (every later env).

    Raises:
        ValueError: the setting is no serving repository URL.
    """
    if not serving_repository:
        return []
    host, _, name = serving_repository.partition("/")
    account, _, rest = host.partition(".dkr.ecr.")
    region = rest.removesuffix(".amazonaws.com")
    if name != SERVING or serving_repository != repository_url(region, account):
        raise ValueError(
            f"MLOPS_SERVING_REPOSITORY {serving_repository} is not <account>.dkr.ecr.<region>."
            f"amazonaws.com/{SERVING}"
        )
    return [
        {
            "Sid": "ServingImageDigests",
            "Effect": "Allow",
            "Action": ["ecr:DescribeImages"],
            "Resource": [repository_arn(region, account)],
        }
    ]


@dataclass(frozen=True)
class ImageReplicationArgs:
    """Inputs of `ImageReplication`."""

    chain: Chain
    region: str


class ImageReplication(pulumi.ComponentResource):
    """The origin's replication configuration, or a later env's registry policy."""

    def __init__(
        self, name: str, args: ImageReplicationArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        """Register the one resource this env's place in the chain needs."""
        super().__init__("mlops:registry:ImageReplication", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        origin, *later = args.chain.accounts
        if args.chain.account_id == origin:
            aws.ecr.ReplicationConfiguration(
                name,
                replication_configuration=replication_rules(args.region, later),
                opts=child,
            )
        else:
            aws.ecr.RegistryPolicy(
                name,
                policy=registry_policy(args.region, args.chain.account_id, origin),
                opts=child,
            )
        self.register_outputs({})
