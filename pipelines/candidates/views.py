"""The read-only views of candidates: the list across envs, one candidate, a version's lineage."""

from __future__ import annotations

from typing import Any

from pipelines.candidates.move import find
from pipelines.candidates.record import Candidate, keys, parse
from pipelines.candidates.standing import Standing, stages_of, standings
from pipelines.errors import PipelineError
from pipelines.ml.registry import CANDIDATE_TAG
from pipelines.ml.tracking import client as mlflow_client
from pipelines.settings import Settings
from pipelines.storage import Storage


def overview(settings: Settings, storage: Storage) -> dict[str, Any]:
    """Every candidate any env of the chain holds, with where it stands in each env."""
    stages = stages_of(settings, storage)
    seen: dict[str, Candidate] = {}
    for stage in stages:
        for key in keys(stage.storage, stage.env):
            candidate = parse(stage.storage.read_bytes(key), f"{stage.storage.url}/{key}")
            seen.setdefault(candidate.id, candidate)
    rows = []
    for candidate in sorted(seen.values(), key=lambda c: c.created_at):
        rows.append(describe(candidate, standings(stages, candidate)))
    return {"stages": [s.env for s in stages], "candidates": rows}


def describe(candidate: Candidate, found: list[Standing]) -> dict[str, Any]:
    """A candidate with its standing per env (JSON-ready)."""
    return {
        "id": candidate.id,
        "model_name": candidate.model_name,
        "origin": f"{candidate.origin_env} v{candidate.model_version}",
        "created_at": candidate.created_at,
        "model_sha256": candidate.model_sha256,
        "serving_image": candidate.serving_image,
        "serving_image_digest": candidate.serving_image_digest,
        "envs": {s.env: s.model_dump() for s in found},
    }


def lineage(settings: Settings, storage: Storage, version: int) -> dict[str, Any]:
    """The chain of registry version `version` of this env, env by env: where its candidate
    was created and each env it moved to (version there, when, from where, approvals).

    Raises:
        PipelineError: the version is no candidate.
    """
    name = settings.model_name
    tags = mlflow_client(settings).get_model_version(name, str(version)).tags or {}
    if CANDIDATE_TAG not in tags:
        raise PipelineError(
            f"{name} version {version} in {settings.env} is no candidate (the gate never "
            "promoted it, or it predates candidates)",
            "list the candidates: mlops candidates list",
        )
    stages = stages_of(settings, storage)
    candidate = find(stages, tags[CANDIDATE_TAG])
    chain = []
    for state in standings(stages, candidate):
        if state.entered is None:
            continue
        entered = next(e for e in state.events if e.action in ("enter", "promote"))
        chain.append(
            {
                "env": state.env,
                "version": state.version,
                "entered": state.entered,
                "state": state.state,
                "record": entered.record,
                "approved_by": [e.by for e in state.approvals],
                "served_hours": state.served_hours,
            }
        )
    return {
        **describe(candidate, []),
        "mlflow_run_id": candidate.mlflow_run_id,
        "dataset_hash": candidate.dataset_hash,
        "git_commit": candidate.git_commit,
        "gate_record": candidate.gate_record,
        "chain": chain,
    }


def show(settings: Settings, storage: Storage, ref: str) -> dict[str, Any]:
    """One candidate: its record and where it stands in each env, with every event."""
    from pipelines.candidates.record import dump

    stages = stages_of(settings, storage)
    candidate = find(stages, ref)
    return {"record": dump(candidate), **describe(candidate, standings(stages, candidate))}
