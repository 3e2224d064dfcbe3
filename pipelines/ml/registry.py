"""Register step and registry queries: versions move by alias, never by stage."""

from __future__ import annotations

import hashlib
import json
from enum import StrEnum
from typing import Any

from pydantic import BaseModel

from pipelines.errors import PipelineError
from pipelines.ml.dataset import DatasetInfo
from pipelines.ml.tracking import client as mlflow_client
from pipelines.ml.train import EvaluateResult, TrainResult, metrics_json
from pipelines.settings import Settings

BENTO_TAG = "bento"
"""Registry version tag: the Bento built for the version (``name:v<version>-<code digest>``)."""
SERVING_IMAGE_TAG = "serving_image"
"""Registry version tag: the serving image (the serving code's digest) it was packaged on."""
SERVING_IMAGE_DIGEST_TAG = "serving_image_digest"
"""Registry version tag of a version registered by a candidate move: the serving image's
manifest digest (``sha256:…``) its pins name (rollback to it pins by digest too)."""
MODEL_DIGEST_TAG = "model_sha256"
"""Registry version tag: the sha256 of the version's exported model archive."""

CANDIDATE_TAG = "mlops.candidate"
"""Registry version tag: the candidate (`pipelines.candidates`) the version is, in any env; a
rollback away from the version names it in its ledger record, which rejects the candidate."""
SERVING_VERSION_TAG = "mlops.serving_version"
"""Registry version tag of a version registered by a candidate move: the version the serving
pods know it as (its model archive's, given where it was trained). Absent: the version itself."""


def serving_version(tags: dict[str, str], version: int | str) -> int:
    """The version serving pods pin and log for the registry version `version` with `tags`."""
    return int(tags.get(SERVING_VERSION_TAG) or version)


class Alias(StrEnum):
    """The registry's aliases: what serves, the newest candidate, the rollback target."""

    CHAMPION = "champion"
    CHALLENGER = "challenger"
    PREVIOUS = "previous"


CHAMPION, CHALLENGER, PREVIOUS = Alias.CHAMPION.value, Alias.CHALLENGER.value, Alias.PREVIOUS.value


class RegisterResult(BaseModel):
    """The register step's result: the new version and the aliases it was given."""

    model_name: str
    version: int
    aliases: list[str]
    decision: str
    """Why the version is (or is not) champion after registering."""


def version_tags(
    info: DatasetInfo, trained: TrainResult, evaluated: EvaluateResult, run_id: str
) -> dict[str, str]:
    """What each version records: data, features, window, metrics, code."""
    return {
        "dataset_hash": info.dataset_hash,
        "dataset_prefix": info.prefix,
        "interval": info.interval,
        "horizon": str(info.horizon),
        "symbols": ",".join(info.symbols),
        "features": ",".join(info.features),
        "eval_start": evaluated.eval_start,
        "eval_end": evaluated.eval_end,
        "eval_metrics": metrics_json(evaluated.metrics),
        "train_start": info.start.isoformat(),
        "train_end": info.end.isoformat(),
        "model_type": trained.model_type,
        "git_commit": trained.git_commit or "",
        "mlops_run_id": run_id,
    }


REGISTER_KEY_TAG = "mlops.register_key"
"""Registry version tag: the register step's idempotency key (`register_key`). Every version an
attempt of the step creates carries it, so a retry finds what an earlier attempt created — even
one whose answer never arrived (the server killed after it committed, or an HTTP retry of the
create that made a second version) — and keeps exactly one."""


def register_key(run_id: str, trained: TrainResult) -> str:
    """The idempotency key of registering `trained`'s model in pipeline run `run_id`."""
    material = f"{run_id}\n{trained.mlflow_run_id}\n{trained.model_uri}".encode()
    return hashlib.sha256(material).hexdigest()[:32]


def versions_of_key(client: Any, name: str, trained: TrainResult, key: str) -> list[Any]:
    """The versions of `name` registered from `trained`'s MLflow run under idempotency `key`
    (or, from before the key existed, with the same model source), oldest first."""
    if not trained.mlflow_run_id.isalnum():  # MLflow run ids are hex; never splice anything else
        return []
    found = [
        mv
        for mv in client.search_model_versions(
            f"name='{name}' and run_id='{trained.mlflow_run_id}'"
        )
        if (mv.tags or {}).get(REGISTER_KEY_TAG, key) == key
        and (REGISTER_KEY_TAG in (mv.tags or {}) or mv.source == trained.model_uri)
    ]
    return sorted(found, key=lambda mv: int(mv.version))


def keep_one(client: Any, name: str, versions: list[Any]) -> Any | None:
    """The oldest of `versions` (what the first attempt created); the others — duplicates of
    the same registration — are deleted, so no orphan stays. None when there are none."""
    if not versions:
        return None
    for duplicate in versions[1:]:
        client.delete_model_version(name, duplicate.version)
    return versions[0]


def register(
    settings: Settings,
    info: DatasetInfo,
    trained: TrainResult,
    evaluated: EvaluateResult,
    run_id: str,
) -> RegisterResult:
    """New version with alias ``challenger``; also ``champion`` if there is none and the
    version clears the quality floor. All or nothing: on any failure the version it created is
    deleted.

    Re-runnable: one training run (its MLflow run and model) gets one version, found again by
    its idempotency key (`REGISTER_KEY_TAG`). If an earlier attempt already registered it
    (killed before its result was recorded, or a re-run of the step), that version is reused —
    its tags refreshed, the aliases set — never a second one; duplicates a retried create left
    are deleted.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    client = mlflow_client(settings)
    name = settings.model_name
    key = register_key(run_id, trained)
    tags = {**version_tags(info, trained, evaluated, run_id), REGISTER_KEY_TAG: key}
    version = keep_one(client, name, versions_of_key(client, name, trained, key))
    reused = version is not None
    if version is not None:
        for tag, value in tags.items():
            if (version.tags or {}).get(tag) != value:
                client.set_model_version_tag(name, version.version, tag, value)
    else:
        created = mlflow.register_model(trained.model_uri, name, tags=tags)
        # The client retries a create whose answer was lost: that may have made two versions.
        version = keep_one(client, name, versions_of_key(client, name, trained, key)) or created
    try:
        aliases = dict(client.get_registered_model(name).aliases)
        client.set_registered_model_alias(name, CHALLENGER, version.version)
        given = [CHALLENGER]
        roc_auc = evaluated.metrics.get("roc_auc")
        if str(aliases.get(CHAMPION)) == str(version.version):
            given.append(CHAMPION)
            bootstrap = "already champion: an earlier attempt of this run promoted it"
        elif CHAMPION not in aliases:
            if roc_auc is not None and roc_auc >= settings.champion_min_roc_auc:
                client.set_registered_model_alias(name, CHAMPION, version.version)
                given.append(CHAMPION)
                floor = settings.champion_min_roc_auc
                bootstrap = f"no champion yet and eval ROC-AUC {roc_auc:.4f} >= floor {floor}"
            else:
                bootstrap = (
                    f"no champion yet, but eval ROC-AUC {roc_auc} is below the floor "
                    f"{settings.champion_min_roc_auc}: not promoted"
                )
        else:
            bootstrap = (
                f"champion stays at version {aliases[CHAMPION]} (promotion is the gate's decision)"
            )
    except MlflowException as error:
        if reused:  # not ours to undo: a re-run finds it again
            raise PipelineError(
                f"registering {name} version {version.version} failed: {error.message}"
            ) from error
        client.delete_model_version(name, version.version)
        raise PipelineError(f"registering {name} failed and was undone: {error.message}") from error
    if reused:
        bootstrap = (
            f"version {version.version} reused: an earlier attempt of this step registered the "
            f"same training run; {bootstrap}"
        )
    return RegisterResult(
        model_name=name, version=int(version.version), aliases=given, decision=bootstrap
    )


def list_versions(settings: Settings) -> list[dict[str, Any]]:
    """Every version of the model, newest first, with aliases, metrics and dataset hash."""
    from mlflow.exceptions import MlflowException

    client = mlflow_client(settings)
    name = settings.model_name
    try:
        alias_map = dict(client.get_registered_model(name).aliases)
    except MlflowException:
        return []
    by_version: dict[str, list[str]] = {}
    for alias, version in alias_map.items():
        by_version.setdefault(str(version), []).append(alias)
    rows = []
    for mv in client.search_model_versions(f"name='{name}'", order_by=["version_number DESC"]):
        tags = mv.tags or {}
        rows.append(
            {
                "version": int(mv.version),
                "aliases": sorted(by_version.get(str(mv.version), [])),
                "created": mv.creation_timestamp,
                "dataset_hash": tags.get("dataset_hash"),
                "interval": tags.get("interval"),
                "horizon": int(tags["horizon"]) if "horizon" in tags else None,
                "eval_start": tags.get("eval_start"),
                "eval_end": tags.get("eval_end"),
                "metrics": json.loads(tags.get("eval_metrics", "{}")),
                "mlflow_run_id": mv.run_id,
                "git_commit": tags.get("git_commit"),
                "source": mv.source,
            }
        )
    return rows


def require_model(settings: Settings) -> None:
    """Raise a clear error when the registered model does not exist yet."""
    if not list_versions(settings):
        raise PipelineError(f"no registered model {settings.model_name!r}", "run: mlops run")
