"""Registry: ECR repositories for the images the platform runs: the pipeline steps, the serving
workload (the containerized Bento the GitOps overlays deploy) and the MLflow server."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

REPOSITORIES = ("pipeline", "serving", "mlflow")
"""Image kinds, one repository each: the CronWorkflows' steps (``workflows.image``), the serving
Deployment (``platform/envs/<env>`` ``images[].newName``) and MLflow (``images/mlflow``)."""


SHARED = frozenset({"serving"})
"""Kinds whose repository has the same name in every account: the serving image is built once,
in the chain's first env, and reaches the others by ECR replication, which keeps the name
(`stacks.components.image_replication`)."""


def repository_name(env: str, kind: str) -> str:
    """The ECR repository of image `kind` in `env`: ``mlops-<env>-<kind>``, and ``mlops-serving``
    for the serving image in every env (`SHARED`).

    The one spelling of the name: the stack creates it, and the tests check every image the
    overlays and the workloads pull against it.
    """
    if kind not in REPOSITORIES:
        raise ValueError(f"unknown image kind {kind!r}; one of {', '.join(REPOSITORIES)}")
    return f"mlops-{kind}" if kind in SHARED else f"mlops-{env}-{kind}"


@dataclass(frozen=True)
class RegistryArgs:
    """Inputs of `Registry`."""

    env: str
    tags: dict[str, str]
    keep_images: int = 50


class Registry(pulumi.ComponentResource):
    """Immutable-tag, scan-on-push repositories with an image-count lifecycle."""

    repository_urls: dict[str, pulumi.Output[str]]
    repository_arns: dict[str, pulumi.Output[str]]

    def __init__(
        self, name: str, args: RegistryArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        """Register one repository and its lifecycle policy per kind in `REPOSITORIES`."""
        super().__init__("mlops:registry:Registry", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.repository_urls = {}
        self.repository_arns = {}
        for kind in REPOSITORIES:
            repo = aws.ecr.Repository(
                f"{name}-{kind}",
                name=repository_name(args.env, kind),
                image_tag_mutability="IMMUTABLE",
                image_scanning_configuration={"scan_on_push": True},
                encryption_configurations=[{"encryption_type": "KMS"}],
                tags=args.tags,
                opts=child,
            )
            aws.ecr.LifecyclePolicy(
                f"{name}-{kind}",
                repository=repo.name,
                policy=json.dumps(
                    {
                        "rules": [
                            {
                                "rulePriority": 1,
                                "description": "keep the newest images",
                                "selection": {
                                    "tagStatus": "any",
                                    "countType": "imageCountMoreThan",
                                    "countNumber": args.keep_images,
                                },
                                "action": {"type": "expire"},
                            }
                        ]
                    }
                ),
                opts=child,
            )
            self.repository_urls[kind] = repo.repository_url
            self.repository_arns[kind] = repo.arn
        self.register_outputs({"repository_urls": self.repository_urls})
