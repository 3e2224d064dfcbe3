"""The candidate record: immutable, identified by digests, written once in every env it reaches.

Created in the env whose gate promoted the version (`create`): the exported model archive (the
half of the GitOps pin a pod checks), the dataset files the monitor of a later env needs to
judge it (manifest, labelled rows, drift calibration), each with its sha256; the serving image
by its tag (the serving code's digest) and its manifest digest, resolved in this env's registry
when the candidate is created (`pipelines.ml.images`): the exact image every later env pins;
and what the registry version recorded, so a later env registers it without reading this env's
MLflow. Every step is write-once or idempotent: a killed creation
is completed by the next attempt (the gate step's retry, or any re-run of it).
"""

from __future__ import annotations

import hashlib
import json

from pydantic import BaseModel, ConfigDict, Field

from pipelines import layout
from pipelines.decisions import ledger
from pipelines.decisions.ledger import Decision
from pipelines.decisions.pin import ServingPin
from pipelines.errors import PipelineError
from pipelines.ml.images import repository_of
from pipelines.ml.registry import CANDIDATE_TAG
from pipelines.ml.tracking import client as mlflow_client
from pipelines.settings import Settings
from pipelines.storage import Storage

LINEAGE_TAGS = (
    "dataset_hash",
    "dataset_prefix",
    "interval",
    "horizon",
    "symbols",
    "features",
    "eval_start",
    "eval_end",
    "eval_metrics",
    "train_start",
    "train_end",
    "model_type",
    "git_commit",
    "mlops_run_id",
    "drift_calibration",
)
"""The registry version's tags a candidate carries to the envs it moves to (what their monitor
reads: features, recorded metrics, dataset, calibration)."""


class Artifact(BaseModel):
    """One stored file of the candidate, by key and content digest."""

    model_config = ConfigDict(frozen=True)

    key: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size: int = Field(ge=0)


class Candidate(BaseModel):
    """One artifact on its way through the envs; the same bytes in every env it reached."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(pattern=r"^[0-9a-f]{16}$")
    """`candidate_id` of the digests below."""
    model_name: str
    origin_env: str
    """The env whose gate promoted it (an env that trains)."""
    model_version: int = Field(ge=1)
    """Its registry version in the origin env: the version the archive holds, which serving
    pods pin and log in every env."""
    model_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    serving_image: str = Field(pattern=r"^[0-9a-f]{12}$")
    """The serving image's tag (the serving code's digest) it runs on."""
    serving_image_digest: str = Field(pattern=r"^sha256:[0-9a-f]{64}$")
    """That image's manifest digest in the origin env's registry: what every later env pins
    (and a move checks is in its registry first)."""
    mlflow_run_id: str | None
    dataset_hash: str | None
    git_commit: str | None
    gate_record: str
    """The origin env's ledger record of the gate's promotion."""
    created_at: str
    """When the gate promoted it: its soak in the origin env starts here."""
    artifacts: tuple[Artifact, ...]
    """The model archive first, then the dataset files and the drift calibration."""
    tags: dict[str, str]
    """The origin version's `LINEAGE_TAGS`."""

    @property
    def pin(self) -> ServingPin:
        """What serving runs for it, in every env."""
        return ServingPin(
            image_tag=self.serving_image,
            image_digest=self.serving_image_digest,
            model_version=self.model_version,
            model_sha256=self.model_sha256,
        )

    def body(self) -> bytes:
        """The stored bytes (the same in every env)."""
        return self.model_dump_json(indent=2).encode()


def candidate_id(model_sha256: str, serving_image: str, serving_image_digest: str) -> str:
    """16 hex digits from the digests that say what serving runs: the model archive's, the
    serving image's tag and its manifest digest."""
    text = f"{model_sha256}\n{serving_image}\n{serving_image_digest}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def sha256(data: bytes) -> str:
    """Hex sha256 of `data`."""
    return hashlib.sha256(data).hexdigest()


def parse(data: bytes, where: str) -> Candidate:
    """A stored candidate record, checked: its id must be its digests'.

    Raises:
        PipelineError: the record does not parse, predates image digests (refused: it names no
            exact serving image), or its id is not its digests'.
    """
    try:
        candidate = Candidate.model_validate_json(data)
    except ValueError:
        if _predates_image_digests(data):
            raise PipelineError(
                f"{where} is a candidate record from before candidates carried the serving "
                "image's manifest digest: refusing it (it names no exact image)",
                "let the gate promote the version again (a new candidate, with the digest)",
            ) from None
        raise PipelineError(f"{where} is not a candidate record", "check what wrote it") from None
    digests = (candidate.model_sha256, candidate.serving_image, candidate.serving_image_digest)
    if candidate.id != candidate_id(*digests):
        raise PipelineError(
            f"{where}: candidate {candidate.id} does not match its digests: refusing it",
            "the record was altered; candidates are write-once",
        )
    return candidate


def read(storage: Storage, env: str, ref: str) -> Candidate:
    """The candidate `ref` (its id, or a unique prefix of 6 or more digits) as `env` holds it.

    Raises:
        PipelineError: none, or several, match `ref` in `env`.
    """
    ids = [
        k.removeprefix(layout.candidates_prefix(env)).removesuffix(".json")
        for k in keys(storage, env)
    ]
    found = [i for i in ids if i == ref or (len(ref) >= 6 and i.startswith(ref))]
    if len(found) != 1:
        problem = "no candidate" if not found else f"{len(found)} candidates"
        raise PipelineError(
            f"{problem} {ref!r} in {env}" + (f": {', '.join(found)}" if found else ""),
            "list them: mlops candidates list",
        )
    key = layout.candidate(env, found[0])
    return parse(storage.read_bytes(key), f"{storage.url}/{key}")


def keys(storage: Storage, env: str) -> list[str]:
    """The keys of the candidate records `env` holds."""
    prefix = layout.candidates_prefix(env)
    return [
        k for k in storage.list(prefix) if k.endswith(".json") and "/" not in k.removeprefix(prefix)
    ]


def store_once(storage: Storage, key: str, data: bytes) -> None:
    """Create `key` with `data`, or find the same bytes there (a re-run).

    Raises:
        PipelineError: other bytes are there (never overwritten).
    """
    try:
        storage.create(key, data)
    except FileExistsError:
        if sha256(storage.read_bytes(key)) != sha256(data):
            raise PipelineError(
                f"{storage.url}/{key} exists with other bytes: refusing to overwrite it",
                "candidates and their artifacts are write-once; find what wrote it",
            ) from None


def create(settings: Settings, storage: Storage, record_key: str) -> Candidate:
    """The candidate of the gate's promotion `record_key` in this env (created once: a re-run
    returns it). Tags the registry version with it and writes a ``create`` ledger record.

    Raises:
        PipelineError: the record is no promotion, or an artifact differs from its pin.
    """
    gate = Decision.model_validate_json(storage.read_bytes(record_key))
    pin = gate.gitops_pin
    if gate.kind != "gate" or gate.decision != "promote" or not isinstance(pin, ServingPin):
        raise PipelineError(f"{record_key} is no gate promotion with a pin: no candidate")
    client = mlflow_client(settings)
    name, version = gate.model_name, pin.model_version
    found = client.get_model_version(name, str(version))
    tags = found.tags or {}
    artifacts = [_artifact(storage, layout.model_archive(name, version), pin.model_sha256)]
    prefix = tags.get("dataset_prefix")
    extra = [f"{prefix}/manifest.json", f"{prefix}/labelled.parquet"] if prefix else []
    extra += [tags["drift_calibration"]] if tags.get("drift_calibration") else []
    artifacts += [_artifact(storage, k, None) for k in extra if storage.exists(k)]
    image_digest = _image_digest(settings, storage, pin)
    candidate = Candidate(
        id=candidate_id(pin.model_sha256, pin.image_tag, image_digest),
        model_name=name,
        origin_env=settings.env,
        model_version=version,
        model_sha256=pin.model_sha256,
        serving_image=pin.image_tag,
        serving_image_digest=image_digest,
        mlflow_run_id=found.run_id,
        dataset_hash=tags.get("dataset_hash"),
        git_commit=tags.get("git_commit") or None,
        gate_record=record_key,
        created_at=gate.decided_at or gate.started_at,
        artifacts=tuple(artifacts),
        tags={k: tags[k] for k in LINEAGE_TAGS if k in tags},
    )
    key = layout.candidate(settings.env, candidate.id)
    if storage.exists(key):  # a re-run: the record as first written
        candidate = parse(storage.read_bytes(key), key)
    store_once(storage, key, candidate.body())
    if tags.get(CANDIDATE_TAG) != candidate.id:
        client.set_model_version_tag(name, str(version), CANDIDATE_TAG, candidate.id)
    identity = ledger.decision_id("candidate", "create", settings.env, candidate.id)
    if ledger.find(storage, settings.env, identity) is None:
        ledger.write(
            storage,
            Decision(
                kind="candidate",
                env=settings.env,
                model_name=name,
                decision="create",
                reasons=[f"the gate promoted version {version} in {settings.env} ({record_key})"],
                decision_id=identity,
                inputs=event_inputs(candidate, version=version, created_at=candidate.created_at),
                run_id=gate.run_id,
                started_at=ledger.now_iso(),
            ),
        )
    return candidate


def event_inputs(candidate: Candidate, **more: object) -> dict[str, object]:
    """The ``inputs`` of a candidate's ledger record: the candidate, its digests, and `more`."""
    return {
        "candidate": candidate.id,
        "model_sha256": candidate.model_sha256,
        "serving_image": candidate.serving_image,
        "serving_image_digest": candidate.serving_image_digest,
        "origin_env": candidate.origin_env,
        "origin_version": candidate.model_version,
        **more,
    }


def _predates_image_digests(data: bytes) -> bool:
    try:
        document = json.loads(data)
    except ValueError:
        return False
    return (
        isinstance(document, dict)
        and "serving_image" in document
        and "serving_image_digest" not in document
    )


def _image_digest(settings: Settings, storage: Storage, pin: ServingPin) -> str:
    """The manifest digest of the pinned serving image, from this env's registry (the gate's
    pin by digest, when it has one, must be there).

    Raises:
        PipelineError: the tag is not in the registry (the image was never pushed).
    """
    repository = repository_of(settings, storage)
    if pin.image_digest is not None:
        if not repository.holds(pin.image_digest):
            raise PipelineError(
                f"the gate pinned serving image {pin.image_digest}, which is not in "
                f"{repository.where}: no candidate"
            )
        return pin.image_digest
    digest = repository.digest_of(pin.image_tag)
    if digest is None:
        raise PipelineError(
            f"serving image tag {pin.image_tag} is not in {repository.where}: no candidate "
            "without the image's digest",
            "push the serving image of this commit (the images job; locally the package step "
            "pushes the stand-in: re-run it), then re-run the gate step",
        )
    return digest


def _artifact(storage: Storage, key: str, expected: str | None) -> Artifact:
    try:
        data = storage.read_bytes(key)
    except FileNotFoundError:
        raise PipelineError(
            f"{storage.url}/{key} does not exist: no candidate without it",
            "re-run the package step of the run that registered the version",
        ) from None
    digest = sha256(data)
    if expected is not None and digest != expected:
        raise PipelineError(
            f"{storage.url}/{key} has sha256 {digest}, the gate pinned {expected}: no candidate",
            "the archive was replaced after packaging; re-package the version",
        )
    return Artifact(key=key, sha256=digest, size=len(data))


def dump(candidate: Candidate) -> dict[str, object]:
    """The record as JSON-ready data."""
    return dict(json.loads(candidate.model_dump_json()))
