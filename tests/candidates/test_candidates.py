"""Candidates through dev → staging → prod on local stand-ins of three accounts: a storage root,
an MLflow (sqlite), a GitOps working copy and a stand-in serving image registry per env (the
serving image pushed in dev, replicated to the later envs as ECR replication does, unless a test
says otherwise: then a move is refused until it is). The settable clock (`promote(now=…)`)
shows the soak; approvals, rejections and rollbacks stop what they must; a tampered artifact is
refused; and a move killed (SIGKILL) between its steps leaves storage, registry and ledger
consistent, completed by the same command. The same chain on the real services, from a real
gate promotion: test_candidates_services.py."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from pipelines import layout
from pipelines.candidates import move, record
from pipelines.candidates.views import lineage, overview
from pipelines.decisions import ledger, promotion
from pipelines.decisions.ledger import Decision
from pipelines.decisions.pin import ServingPin
from pipelines.errors import PipelineError
from pipelines.ml import images
from pipelines.ml.registry import CANDIDATE_TAG, MODEL_DIGEST_TAG, SERVING_IMAGE_TAG
from pipelines.settings import Settings
from pipelines.storage import LocalStorage

pytestmark = pytest.mark.integration  # git (the GitOps working copies)

NAME = "market-direction"
ENVS = ("dev", "staging", "prod")


@dataclass
class World:
    root: Path

    def storage(self, env: str) -> LocalStorage:
        return LocalStorage(self.root / env / "data")

    def settings(self, env: str, **more: Any) -> Settings:
        return Settings(
            home=self.root / env,
            env=env,
            model_name=NAME,
            candidate_stages={e: str(self.root / e / "data") for e in ENVS},
            candidate_soak_hours=more.pop("soak", 0.0),
            candidate_requires_approval=env == "prod",
            trains=env == "dev",
            **more,
        )

    def client(self, env: str) -> Any:
        from pipelines.ml.tracking import client

        return client(self.settings(env))

    def promote(self, ref: str, to: str, **more: Any) -> move.MoveResult:
        now = more.pop("now", None)
        return move.promote(self.settings(to, **more), self.storage(to), ref, to, now=now)


IMAGE = "0123456789ab"


def gate_promotes(
    world: World, version: int, payload: bytes, replicate: bool = True
) -> record.Candidate:
    """What the gate step does in dev when it promotes `version`: a packaged archive and the
    serving image pushed (the stand-in; replicated to staging and prod unless `replicate` is
    false), a registry version with its tags, the gate's ledger record; then the candidate."""
    storage, settings = world.storage("dev"), world.settings("dev")
    storage.create(layout.model_archive(NAME, version), payload)
    images.push_stand_in(settings, storage, IMAGE)
    for env in ENVS[1:] if replicate else ():
        images.replicate_stand_in(storage, world.storage(env))
    pin = ServingPin(
        image_tag=IMAGE,
        model_version=version,
        model_sha256=hashlib.sha256(payload).hexdigest(),
    )
    client = world.client("dev")
    if version == 1:
        client.create_registered_model(NAME)
    client.create_model_version(NAME, source=f"file:///nowhere/{version}")
    tags = {
        SERVING_IMAGE_TAG: pin.image_tag,
        MODEL_DIGEST_TAG: pin.model_sha256,
        "features": "ret_1,ret_5",
        "eval_metrics": json.dumps({"roc_auc": 0.61}),
        "dataset_hash": f"hash{version}",
        "git_commit": "abc123",
    }
    for tag, value in tags.items():
        client.set_model_version_tag(NAME, str(version), tag, value)
    client.set_registered_model_alias(NAME, "champion", str(version))
    gate = gate_record(storage, version, pin, aliases_after={"champion": version})
    return record.create(settings, storage, gate.key)


def gate_record(storage: LocalStorage, version: int, pin: ServingPin, **more: Any) -> Decision:
    """The gate's ledger record of its promotion of `version` to `pin` in dev."""
    return ledger.write(
        storage,
        Decision(
            kind="gate",
            env="dev",
            model_name=NAME,
            decision="promote",
            reasons=["test"],
            decision_id=f"gate-{version}",
            inputs={"challenger": version},
            gitops_pin=pin,
            started_at=ledger.now_iso(),
            **more,
        ),
    )


def held_beside_images(storage: LocalStorage) -> list[str]:
    """What `storage` holds besides its stand-in image registry."""
    return [k for k in storage.list("") if not k.startswith(layout.SERVING_IMAGES)]


@pytest.fixture(scope="module")
def empty_registry(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MLflow sqlite store with its schema migrated once (~10 s), copied for every env."""
    from mlflow import MlflowClient

    path = tmp_path_factory.mktemp("mlflow") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, empty_registry: Path) -> World:
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_EXPERIMENT_ID"):
        monkeypatch.delenv(name, raising=False)  # each env's own sqlite MLflow in its home
    for env in ENVS:
        (tmp_path / env).mkdir()
        shutil.copyfile(empty_registry, tmp_path / env / "mlflow.db")
    return World(tmp_path)


def test_a_candidate_moves_after_its_soak_and_into_prod_only_approved(world: World) -> None:
    payload = b"model archive v1"
    candidate = gate_promotes(world, 1, payload)
    created = datetime.fromisoformat(candidate.created_at)
    assert world.client("dev").get_model_version(NAME, "1").tags[CANDIDATE_TAG] == candidate.id
    with pytest.raises(PipelineError, match=r"served 1\.00 h in dev; staging needs 24 h"):
        world.promote(candidate.id, "staging", soak=24, now=created + timedelta(hours=1))
    assert held_beside_images(world.storage("staging")) == []  # a refusal copies nothing
    staged = world.promote(candidate.id[:8], "staging", soak=24, now=created + timedelta(hours=25))
    assert staged.version == 1 and not staged.reused
    assert world.promote(candidate.id, "staging").reused  # the same move again: a no-op
    with pytest.raises(PipelineError, match="prod needs an approval"):
        world.promote(candidate.id, "prod")
    move.judge(world.settings("prod"), world.storage("prod"), candidate.id, "approve", "ok", "al")
    prod = world.promote(candidate.id, "prod")
    # the same bytes in every env, read back from each env's own storage
    key = layout.model_archive(NAME, 1)
    digest = hashlib.sha256(payload).hexdigest()
    for env in ENVS:
        assert hashlib.sha256(world.storage(env).read_bytes(key)).hexdigest() == digest
    assert prod.artifacts[key] == digest
    # registered in prod's own MLflow with lineage; the pin names the archive's version
    version = world.client("prod").get_model_version(NAME, str(prod.version))
    assert version.tags["mlops.source_env"] == "staging"
    assert version.tags["mlops.origin_version"] == "1" and version.tags["dataset_hash"] == "hash1"
    assert promotion.pin_of(world.client("prod"), NAME, prod.version) == candidate.pin
    chain = lineage(world.settings("prod"), world.storage("prod"), prod.version)["chain"]
    assert [(c["env"], c["approved_by"]) for c in chain] == [
        ("dev", []),
        ("staging", []),
        ("prod", ["al"]),
    ]
    history = ledger.alias_history(world.storage("prod"), "prod")
    assert [(h["decision"], h["candidate"]) for h in history] == [
        ("approve", candidate.id),
        ("promote", candidate.id),
    ]


def test_a_candidate_rolled_back_in_staging_never_moves_again(world: World) -> None:
    first = gate_promotes(world, 1, b"model archive v1")
    world.promote(first.id, "staging")
    second = gate_promotes(world, 2, b"model archive v2")
    world.promote(second.id, "staging")
    move.judge(world.settings("prod"), world.storage("prod"), second.id, "approve", "ok", "al")
    rolled = promotion.rollback(world.settings("staging"), world.storage("staging"))
    assert rolled.decision == "rollback" and rolled.inputs["candidate"] == second.id
    # staging serves the first candidate again, pinned by the archive's own version and by the
    # first candidate's image digest (a pin by digest rolls back to a pin by digest)
    assert rolled.gitops_pin == first.pin
    assert rolled.gitops_pin.image_digest == first.serving_image_digest is not None
    with pytest.raises(PipelineError, match=r"rolled back in staging .*never moves again"):
        world.promote(second.id, "prod")
    with pytest.raises(PipelineError, match="cannot be approved"):
        move.judge(world.settings("prod"), world.storage("prod"), second.id, "approve", "x", "b")
    states = {
        row["id"]: {env: row["envs"][env]["state"] for env in ENVS}
        for row in overview(world.settings("dev"), world.storage("dev"))["candidates"]
    }
    assert states[second.id] == {"dev": "serving", "staging": "rolled back", "prod": "absent"}
    assert states[first.id] == {"dev": "served", "staging": "serving", "prod": "absent"}
    # the candidate rolled back *to* is not stopped: approved, it moves on
    move.judge(world.settings("prod"), world.storage("prod"), first.id, "approve", "ok", "al")
    assert world.promote(first.id, "prod").env == "prod"


def test_a_move_waits_until_the_serving_image_is_in_the_targets_registry(world: World) -> None:
    candidate = gate_promotes(world, 1, b"model archive v1", replicate=False)
    digest = candidate.serving_image_digest
    dev = images.StandInRepository(world.storage("dev"))
    assert dev.digest_of(IMAGE) == digest  # resolved in dev when the candidate was created
    assert candidate.pin.image_digest == digest
    with pytest.raises(PipelineError) as refused:
        world.promote(candidate.id, "staging")
    message = str(refused.value)
    assert f"serving image {digest} is not in {world.storage('staging').url}/" in message
    assert "nothing was changed" in message and "mlops images replicate --to staging" in message
    staging = world.storage("staging")
    assert staging.list("") == []  # nothing copied, registered, recorded or pinned
    assert world.client("staging").search_registered_models() == []
    repo = promotion.repo_of(world.settings("staging"))
    assert repo.pinned("staging") is None
    # "replicated": dev's registry copied into staging's; the move then pins the same digest
    assert images.replicate_stand_in(world.storage("dev"), staging) == [digest]
    moved = world.promote(candidate.id, "staging")
    assert moved.version == 1 and not moved.reused
    pinned = repo.pinned("staging")
    assert pinned == candidate.pin and pinned is not None and pinned.image_digest == digest
    overlay = repo.overlay("staging").read_text()
    assert f"newTag: {IMAGE}\n    digest: {digest}\n" in overlay
    # prod got nothing yet: dev replicates to every later account, so staging is no source
    move.judge(world.settings("prod"), world.storage("prod"), candidate.id, "approve", "ok", "a")
    with pytest.raises(PipelineError, match=f"serving image {digest} is not in"):
        world.promote(candidate.id, "prod")


def test_the_candidate_id_covers_the_image_digest_and_older_records_are_refused(
    world: World,
) -> None:
    candidate = gate_promotes(world, 1, b"model archive v1")
    key = layout.candidate("dev", candidate.id)
    document = json.loads(world.storage("dev").read_bytes(key))
    other = {**document, "serving_image_digest": "sha256:" + "0" * 64}
    with pytest.raises(PipelineError, match="does not match its digests"):
        record.parse(json.dumps(other).encode(), key)
    del document["serving_image_digest"]  # a record written before image digests
    with pytest.raises(PipelineError, match="from before candidates carried the serving image"):
        record.parse(json.dumps(document).encode(), key)
    digests = (candidate.model_sha256, IMAGE)
    assert candidate.id == record.candidate_id(*digests, candidate.serving_image_digest)
    assert candidate.id != record.candidate_id(*digests, "sha256:" + "1" * 64)


def test_no_candidate_without_the_serving_image_in_the_origins_registry(world: World) -> None:
    storage = world.storage("dev")
    storage.create(layout.model_archive(NAME, 1), b"model archive v1")
    pin = ServingPin(
        image_tag="fedcba987654",  # never pushed
        model_version=1,
        model_sha256=hashlib.sha256(b"model archive v1").hexdigest(),
    )
    world.client("dev").create_registered_model(NAME)
    world.client("dev").create_model_version(NAME, source="file:///nowhere/1")
    gate = gate_record(storage, 1, pin)
    with pytest.raises(PipelineError, match="serving image tag fedcba987654 is not in"):
        record.create(world.settings("dev"), storage, gate.key)
    assert storage.list(layout.candidates_prefix("dev")) == []


def test_a_rejected_candidate_never_moves_and_a_reason_is_required(world: World) -> None:
    candidate = gate_promotes(world, 1, b"model archive v1")
    dev = world.settings("dev")
    with pytest.raises(PipelineError, match="needs a reason"):
        move.judge(dev, world.storage("dev"), candidate.id, "reject", "  ", "bo")
    rejected = move.judge(dev, world.storage("dev"), candidate.id, "reject", "leaks", "bo")
    assert rejected.inputs["by"] == "bo" and rejected.reasons == ["leaks"]
    with pytest.raises(PipelineError, match=r"rejected in dev .*by bo"):
        world.promote(candidate.id, "staging")


def test_a_tampered_artifact_is_refused_and_nothing_is_registered(world: World) -> None:
    candidate = gate_promotes(world, 1, b"model archive v1")
    key = layout.model_archive(NAME, 1)
    path = world.storage("dev").root / key
    path.chmod(0o644)
    path.write_bytes(b"something else")  # (the bucket policy forbids this on S3)
    with pytest.raises(PipelineError, match="refusing to copy it"):
        world.promote(candidate.id, "staging")
    assert not world.storage("staging").exists(key)
    assert world.client("staging").search_registered_models() == []


def test_a_move_runs_with_the_target_envs_own_settings(world: World) -> None:
    candidate = gate_promotes(world, 1, b"model archive v1")
    with pytest.raises(PipelineError, match="runs with staging's own settings"):
        move.promote(world.settings("dev"), world.storage("dev"), candidate.id, "staging")


CHILD = """
import os, signal, sys
from pipelines.candidates import move
from pipelines.settings import Settings
from pipelines.storage import open_storage

where, ref = sys.argv[1], sys.argv[2]

def then_die(real):
    def wrapped(*args, **kwargs):
        result = real(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGKILL)
        return result
    return wrapped

if where == "after-copy":
    move.copy_artifacts = then_die(move.copy_artifacts)
if where == "after-register":
    move.register = then_die(move.register)
if where == "after-aliases":
    from pipelines.decisions import promotion
    promotion.set_aliases = then_die(promotion.set_aliases)
settings = Settings()
move.promote(settings, open_storage(settings.data_url), ref, "staging")
"""


def _env(world: World, env: str) -> dict[str, str]:
    settings = world.settings(env)
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("MLOPS_", "MLFLOW_"))}
    return {
        **keep,
        "MLOPS_HOME": str(settings.home),
        "MLOPS_ENV": env,
        "MLOPS_MODEL_NAME": NAME,
        "MLOPS_CANDIDATE_STAGES": json.dumps(settings.candidate_stages),
        "MLOPS_CANDIDATE_SOAK_HOURS": "0",
    }


@pytest.mark.hostile
@pytest.mark.parametrize("where", ["after-copy", "after-register", "after-aliases"])
def test_a_move_killed_between_its_steps_is_completed_by_the_same_command(
    world: World, where: str
) -> None:
    candidate = gate_promotes(world, 1, b"model archive v1")
    killed = subprocess.run(
        [sys.executable, "-c", CHILD, where, candidate.id],
        env=_env(world, "staging"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert killed.returncode == -9, killed.stderr[-2000:]
    staging = world.storage("staging")
    key = layout.model_archive(NAME, 1)
    # what the kill left: whole files only, no move record, no champion but in mid-transaction
    assert staging.read_bytes(key) == b"model archive v1"
    moves = [r for r in ledger.read_all(staging, "staging") if r.decision == "promote"]
    assert moves == []
    done = world.promote(candidate.id, "staging")
    assert not done.reused and done.version == 1
    client = world.client("staging")
    assert [int(v.version) for v in client.search_model_versions(f"name='{NAME}'")] == [1]
    assert promotion.current_aliases(client, NAME) == {"champion": 1}
    records = [r.decision for r in ledger.read_all(staging, "staging")]
    assert records.count("promote") == 1
    assert ("failed" in records) == (where == "after-aliases")  # the intent, undone then redone
    repo = promotion.repo_of(world.settings("staging"))
    assert repo.pinned("staging") == candidate.pin
    assert world.promote(candidate.id, "staging").reused


def test_the_monitor_of_a_target_env_reads_the_log_under_the_archives_version(
    world: World,
) -> None:
    """dev v2 becomes staging v1: its pods log (and pin) version 2, the archive's; staging's
    monitor must judge that log, not an empty ``inference/staging/1/``."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipelines.decisions.monitor import monitor

    gate_promotes(world, 1, b"model archive v1")
    second = gate_promotes(world, 2, b"model archive v2")
    moved = world.promote(second.id, "staging")
    assert moved.version == 1  # staging's registry numbers it its own way
    # … and pins (rollback, reconciliation) the archive's version, the one pods check
    assert promotion.pin_of(world.client("staging"), NAME, 1) == second.pin
    staging = world.storage("staging")
    buffer = io.BytesIO()
    pq.write_table(pa.table({"probability_up": [0.4, 0.6, 0.7]}), buffer)
    staging.create("inference/staging/2/2024-03-01/batch-0.parquet", buffer.getvalue())
    result = monitor(world.settings("staging"), staging)
    record = Decision.model_validate_json(staging.read_bytes(str(result.record)))
    assert record.inputs["champion"] == 1 and record.metrics["logged_rows"] == 3
