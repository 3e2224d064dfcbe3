"""What a GitHub Actions job of an env uses (``mlops infra ci-targets``): the stack's account,
region, registry, and the OIDC roles `stacks.components.ci` creates."""

from __future__ import annotations

import yaml

from pipelines.errors import PipelineError
from stacks.components.ecr import REPOSITORIES, repository_name
from stacks.config import STACKS_DIR, load_stack_config


def ci_targets(env: str) -> dict[str, object]:
    """What a workflow job of `env` needs, from ``stacks/Pulumi.<env>.yaml``: the region, the
    registry host, the repositories, whether it builds the serving image (only the promotion
    chain's first env: ECR replicates it to the others), the role each job kind assumes, the
    state bucket.

    The role ARNs are the ones `stacks.components.ci` creates (names fixed there and by
    ``cluster.ciRoleArn``), in the one account the stack may touch (``aws:allowedAccountIds``).

    Raises:
        PipelineError: if the stack config is missing or invalid, or names no single account.
    """
    config = load_stack_config(env)
    document = yaml.safe_load((STACKS_DIR / f"Pulumi.{env}.yaml").read_text())["config"]
    accounts = [str(a) for a in document.get("aws:allowedAccountIds") or []]
    if len(accounts) != 1 or "aws:region" not in document:
        raise PipelineError(
            f"Pulumi.{env}.yaml: CI needs exactly one aws:allowedAccountIds entry and aws:region",
            "set both (docs/deploy.md §1)",
        )
    account, region = accounts[0], str(document["aws:region"])
    role = f"arn:aws:iam::{account}:role"
    chain = config.chain  # the serving image is built in the chain's first env, replicated on
    return {
        "stack": env,
        "account": account,
        "region": region,
        "registry": f"{account}.dkr.ecr.{region}.amazonaws.com",
        "repositories": {kind: repository_name(env, kind) for kind in REPOSITORIES},
        "builds_serving": chain is None or chain.accounts[0] == account,
        "roles": {
            "images": f"{role}/mlops-{env}-ci-images",
            "preview": f"{role}/mlops-{env}-ci-preview",
            "deploy": config.cluster.ci_role_arn,
        },
        "deploy_environment": config.ci.deploy_environment,
        "state_bucket": config.ci.state_bucket,
    }
