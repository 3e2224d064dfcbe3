"""The promotion chain's accounts (``mlops-platform:candidates``) and what each env reads from
the others when a candidate moves (`stacks.components.candidate_grants` builds the grants).

A move into an env runs with that env's pipeline role and reads, in the other envs' curated
buckets (`pipelines.candidates.standing`, `pipelines.candidates.move`):

- every other env's ledger, ``decisions/<that env>/`` (the gate's record in the origin env,
  rejections and rollbacks anywhere, the candidate record itself);
- in the env just before it, the candidate's artifacts: ``bentos/`` (the model archive) and
  ``features/`` (the dataset and its drift calibration), copied at the same keys.

So the chain's accounts are one value, the same in every stack: ``accounts`` lists each env's
AWS account in the order of ``MLOPS_CANDIDATE_STAGES``; the buckets come from that setting, the
pipeline roles and keys are named from the env (`pipeline_role_name`).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

from pydantic import BaseModel, Field, field_validator

from pipelines import layout
from stacks.config_base import ConfigModel

ACCOUNT_ID = r"^\d{12}$"
ARTIFACT_FAMILIES = (layout.BENTOS, layout.FEATURES)
"""What a move copies from the env just before it (the candidate's artifacts)."""


def pipeline_role_name(env: str) -> str:
    """The IAM role of `env`'s pipeline service account: ``mlops-<env>-pipeline``. Named, not
    auto-named, so another account's bucket and key policies can name it exactly."""
    return f"mlops-{env}-pipeline"


def pipeline_role_arn(account_id: str, env: str) -> str:
    """The ARN of `env`'s pipeline role in `account_id`."""
    return f"arn:aws:iam::{account_id}:role/{pipeline_role_name(env)}"


def curated_key_alias(env: str) -> str:
    """The alias of `env`'s curated bucket key (a customer-managed KMS key)."""
    return f"alias/mlops-{env}-curated"


class CandidatesConfig(ConfigModel):
    """The accounts of the promotion chain (``mlops-platform:candidates``)."""

    accounts: list[str] = Field(min_length=2)
    """Each env's 12-digit AWS account id, in the order of ``MLOPS_CANDIDATE_STAGES`` (dev,
    staging, prod); the same list in every stack (tests/stacks/test_candidate_chain.py)."""

    @field_validator("accounts")
    @classmethod
    def _accounts(cls, value: list[str]) -> list[str]:
        for account in value:
            if not isinstance(account, str) or not account.isdigit() or len(account) != 12:
                raise ValueError(f"{account!r} is not a 12-digit AWS account id (quote it in YAML)")
        if len(set(value)) != len(value):
            raise ValueError("lists an account twice: each env is its own account")
        return value


class Peer(BaseModel):
    """Another env of the chain, as this env's grants see it."""

    env: str
    account_id: str
    bucket: str
    """Its curated bucket (the bucket of its ``MLOPS_CANDIDATE_STAGES`` URL)."""
    layout_root: str
    artifacts: bool
    """The artifacts flow between the two (it is the env just before or just after)."""

    @property
    def role_arn(self) -> str:
        """Its pipeline role."""
        return pipeline_role_arn(self.account_id, self.env)

    def source_prefixes(self) -> list[str]:
        """What a move reads in this env's bucket, as its reader (`read_prefixes`)."""
        return read_prefixes(self.layout_root, self.env, self.artifacts)


def read_prefixes(layout_root: str, env: str, artifacts: bool) -> list[str]:
    """The key prefixes a move reads in `env`'s curated bucket (layout under `layout_root`):
    its ledger ``decisions/<env>/``, and ``bentos/``, ``features/`` where `artifacts` flow."""
    families = [layout.decisions_prefix(env), *(ARTIFACT_FAMILIES if artifacts else ())]
    return [f"{layout_root}/{family}" for family in families]


class Chain(BaseModel):
    """This env's place in the chain: who reads its curated bucket, whose it reads."""

    env: str
    account_id: str
    readers: list[Peer]
    """The other envs, reading this env's bucket (``artifacts``: the env just after)."""
    sources: list[Peer]
    """The other envs, whose buckets this env reads (``artifacts``: the env just before)."""
    accounts: list[str]
    """Every env's account, in the chain's order (the first builds the serving image and
    replicates it to the others: `stacks.components.image_replication`)."""


def chain_of(
    config: CandidatesConfig | None, env: str, settings: dict[str, str], own_curated_url: str
) -> Chain | None:
    """This env's `Chain`, or None when neither the chain's accounts nor
    ``MLOPS_CANDIDATE_STAGES`` is set.

    Raises:
        ValueError: naming the key, when the two disagree or this env's stage is not its own
            curated bucket.
    """
    from pipelines.settings import stage_map

    text = settings.get("MLOPS_CANDIDATE_STAGES")
    if config is None and not text:
        return None
    stages: Any = stage_map(text or "")
    if config is None:
        raise ValueError(
            "candidates: workflows.settings.MLOPS_CANDIDATE_STAGES is set, so "
            "candidates.accounts must name each env's AWS account (docs/deploy.md)"
        )
    if len(stages) != len(config.accounts):
        raise ValueError(
            f"candidates.accounts: lists {len(config.accounts)} accounts, but "
            f"workflows.settings.MLOPS_CANDIDATE_STAGES names {len(stages)} envs "
            f"({', '.join(stages) or 'none'}): one account per env, in that order"
        )
    if env not in stages:
        raise ValueError(
            f"workflows.settings.MLOPS_CANDIDATE_STAGES: does not name this env {env!r}"
        )
    accounts = dict(zip(stages, config.accounts, strict=True))
    if stages[env].rstrip("/") != own_curated_url:
        raise ValueError(
            f"workflows.settings.MLOPS_CANDIDATE_STAGES: {env} is {stages[env]}, not this "
            f"stack's curated bucket {own_curated_url} (storage.bucketPrefix)"
        )
    envs = list(stages)
    index = envs.index(env)
    peers: dict[str, tuple[str, str]] = {}
    for other, url in stages.items():
        parsed = urlparse(url)
        root = parsed.path.strip("/")
        if parsed.scheme != "s3" or not parsed.netloc or not root:
            raise ValueError(
                f"workflows.settings.MLOPS_CANDIDATE_STAGES: {other} is {url}, not "
                "s3://<bucket>/<layoutRoot>"
            )
        peers[other] = (parsed.netloc, root)

    def peer(other: str, artifacts: bool) -> Peer:
        bucket, root = peers[other]
        return Peer(
            env=other,
            account_id=accounts[other],
            bucket=bucket,
            layout_root=root,
            artifacts=artifacts,
        )

    others = [e for e in envs if e != env]
    return Chain(
        env=env,
        account_id=accounts[env],
        readers=[peer(e, envs.index(e) == index + 1) for e in others],
        sources=[peer(e, envs.index(e) == index - 1) for e in others],
        accounts=list(config.accounts),
    )


def own_account(chain: Chain | None, allowed: Any) -> None:
    """This env's account in the chain is the one its provider is pinned to.

    Raises:
        ValueError: naming both keys, when they differ.
    """
    if chain is not None and allowed is not None and [chain.account_id] != list(allowed):
        raise ValueError(
            f"candidates.accounts: {chain.env} is {chain.account_id}, but aws:allowedAccountIds "
            f"is {list(allowed)} (each env's account, the same map in every stack)"
        )
