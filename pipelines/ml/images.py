"""The serving image in an env's registry: the manifest digest its tag names, and whether an
image digest is there — what a candidate records when it is created, and what a move checks in
the target env before anything changes there.

Which registry is one value, ``MLOPS_SERVING_REPOSITORY`` (`Settings.serving_repository`):

- set (the clusters): the env's ECR repository, ``<account>.dkr.ecr.<region>.amazonaws.com/
  mlops-serving``, the same name in every account (ECR replication keeps it), read with
  ``ecr:DescribeImages`` (`EcrRepository`);
- unset (local, ``mlops services``): a **stand-in** in the env's own storage
  (`StandInRepository`, under ``layout.SERVING_IMAGES``): a small JSON manifest per image,
  content-addressed by its sha256 (the "manifest digest"), and immutable tags naming one.
  The package step pushes it in the env that builds (where ECR has the images job), and
  ``mlops images replicate --to ENV`` copies it into a later env (where ECR has replication).
  It proves the order of checks, not the bytes of a container image.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any, Protocol

from pipelines import layout
from pipelines.errors import PipelineError
from pipelines.settings import Settings
from pipelines.storage import Storage

ECR_REPOSITORY = re.compile(
    r"^(?P<account>\d{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com/(?P<name>\S+)$"
)
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
STAND_IN_MEDIA_TYPE = "application/vnd.mlops.serving-image-stand-in.v1+json"


class ImageRepository(Protocol):
    """An env's serving image repository, read only."""

    @property
    def where(self) -> str:
        """The repository, for messages (no credential in it)."""

    def digest_of(self, tag: str) -> str | None:
        """The manifest digest tag `tag` names, or None when the tag is not there."""

    def holds(self, digest: str) -> bool:
        """Whether image `digest` is in the repository."""


@dataclass(frozen=True)
class EcrRepository:
    """An ECR repository, read with ``ecr:DescribeImages`` (the pipeline role's grant)."""

    account: str
    region: str
    name: str
    client: Any = field(default=None, compare=False)
    """A boto3 ECR client (default: one for `region` with the ambient credentials)."""

    @property
    def where(self) -> str:
        """``<account>.dkr.ecr.<region>.amazonaws.com/<name>``."""
        return f"{self.account}.dkr.ecr.{self.region}.amazonaws.com/{self.name}"

    def _describe(self, image: dict[str, str]) -> str | None:
        from botocore.exceptions import BotoCoreError, ClientError

        client = self.client
        if client is None:
            import boto3

            client = boto3.client("ecr", region_name=self.region)
        try:
            found = client.describe_images(
                registryId=self.account, repositoryName=self.name, imageIds=[image]
            )
        except ClientError as error:
            code = str(error.response.get("Error", {}).get("Code", "error"))
            if code == "ImageNotFoundException":
                return None
            if code == "RepositoryNotFoundException":
                raise PipelineError(
                    f"the serving image repository {self.where} does not exist",
                    "deploy this env's stack (it creates the repository), or fix "
                    "MLOPS_SERVING_REPOSITORY",
                ) from None
            raise PipelineError(
                f"cannot read the serving image repository {self.where}: {code}",
                "the env's pipeline role needs ecr:DescribeImages on it (stacks/components/"
                "identity.py); check the role and MLOPS_SERVING_REPOSITORY",
            ) from None
        except BotoCoreError as error:
            raise PipelineError(
                f"cannot reach the serving image repository {self.where}: "
                f"{error.__class__.__name__}",
                "check the network path to ECR and the env's AWS credentials",
            ) from None
        details = found.get("imageDetails") or []
        return str(details[0]["imageDigest"]) if details else None

    def digest_of(self, tag: str) -> str | None:
        """The manifest digest of the image tagged `tag`."""
        return self._describe({"imageTag": tag})

    def holds(self, digest: str) -> bool:
        """Whether the image `digest` is in the repository."""
        return self._describe({"imageDigest": digest}) == digest


@dataclass(frozen=True)
class StandInRepository:
    """The local stand-in of an env's repository, in that env's storage (see the module)."""

    storage: Storage

    @property
    def where(self) -> str:
        """The stand-in's place in the env's storage."""
        return f"{self.storage.url}/{layout.SERVING_IMAGES} (the local stand-in registry)"

    def digest_of(self, tag: str) -> str | None:
        """The digest the stand-in's tag `tag` names."""
        try:
            digest = self.storage.read_bytes(layout.serving_image_tag(tag)).decode().strip()
        except FileNotFoundError:
            return None
        return digest if DIGEST.match(digest) and self.holds(digest) else None

    def holds(self, digest: str) -> bool:
        """Whether the stand-in holds the manifest of `digest`."""
        return self.storage.exists(layout.serving_image_manifest(digest))

    def push(self, tag: str, manifest: bytes) -> str:
        """Store `manifest` and tag it `tag` (both write-once: a re-push of the same bytes is a
        no-op); returns its digest.

        Raises:
            PipelineError: the tag already names another image (tags are immutable).
        """
        digest = manifest_digest(manifest)
        key = layout.serving_image_tag(tag)
        held = self.storage.read_bytes(key).decode() if self.storage.exists(key) else digest
        if held != digest:
            raise PipelineError(
                f"{self.where}: tag {tag} already names {held}, not {digest}",
                "tags are immutable, as in ECR: find what pushed the other image",
            )
        _store_once(self.storage, layout.serving_image_manifest(digest), manifest)
        _store_once(self.storage, key, digest.encode())  # the tag last: it names a stored image
        return digest


def _store_once(storage: Storage, key: str, data: bytes) -> None:
    try:
        storage.create(key, data)
    except FileExistsError:
        if storage.read_bytes(key) != data:
            raise PipelineError(
                f"{storage.url}/{key} exists with other bytes: refusing to overwrite it",
                "the stand-in registry is write-once; find what wrote it",
            ) from None


def manifest_digest(manifest: bytes) -> str:
    """``sha256:<hex>`` of a manifest's bytes (what registries call the image's digest)."""
    return f"sha256:{hashlib.sha256(manifest).hexdigest()}"


def stand_in_manifest(tag: str) -> bytes:
    """The stand-in manifest of the serving image tagged `tag` (the serving code's digest)."""
    document = {"mediaType": STAND_IN_MEDIA_TYPE, "repository": "mlops-serving", "tag": tag}
    return json.dumps(document, sort_keys=True).encode()


def repository_of(settings: Settings, storage: Storage) -> ImageRepository:
    """This env's serving image repository: its ECR repository when
    ``MLOPS_SERVING_REPOSITORY`` is set, else the stand-in in `storage` (this env's)."""
    if settings.serving_repository:
        match = ECR_REPOSITORY.match(settings.serving_repository)
        if match is None:  # (the setting's own pattern refuses it first)
            raise PipelineError(f"MLOPS_SERVING_REPOSITORY {settings.serving_repository!r}")
        return EcrRepository(match["account"], match["region"], match["name"])
    return StandInRepository(storage)


def push_stand_in(settings: Settings, storage: Storage, tag: str) -> str | None:
    """Where no ECR repository is configured, push the stand-in image tagged `tag` into this
    env's stand-in (what the images job does on the clusters); its digest, else None."""
    repository = repository_of(settings, storage)
    if not isinstance(repository, StandInRepository):
        return None
    return repository.push(tag, stand_in_manifest(tag))


def replicate_stand_in(source: Storage, target: Storage) -> list[str]:
    """Copy every stand-in image and tag of `source` into `target` that it lacks (the local
    stand-in of ECR replication); returns the digests copied.

    Raises:
        PipelineError: `target` holds other bytes at a key, or a tag naming another image.
    """
    copied = []
    manifests = f"{layout.SERVING_IMAGES}manifests/"
    for key in source.list(manifests):
        digest = f"sha256:{key.removeprefix(manifests).removesuffix('.json')}"
        if not target.exists(key):
            copied.append(digest)
        _store_once(target, key, source.read_bytes(key))
    tags = f"{layout.SERVING_IMAGES}tags/"
    for key in source.list(tags):
        _store_once(target, key, source.read_bytes(key))
    return copied


def require_image(repository: ImageRepository, digest: str, env: str, candidate: str) -> None:
    """Refuse unless `repository` (env `env`'s) holds image `digest` of candidate `candidate`.

    Raises:
        PipelineError: naming the repository, the digest and how to get it there.
    """
    if not repository.holds(digest):
        raise PipelineError(
            f"candidate {candidate} may not move into {env}: its serving image {digest} is not "
            f"in {repository.where}; nothing was changed",
            "wait for ECR replication from the env that built it (most images arrive within "
            "30 minutes; only images pushed after replication was configured replicate: "
            "re-run the images job there); locally: "
            f"mlops images replicate --to {env} (with the source env's settings)",
        )
