"""Register step and registry queries: versions move by alias, never by stage."""

from __future__ import annotations

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
MODEL_DIGEST_TAG = "model_sha256"
"""Registry version tag: the sha256 of the version's exported model archive."""


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


def version_of_run(client: Any, name: str, trained: TrainResult) -> Any | None:
    """The newest version of `name` already registered from `trained`'s MLflow run and model —
    what an earlier attempt of the register step left, even one killed before it recorded its
    result — or None."""
    if not trained.mlflow_run_id.isalnum():  # MLflow run ids are hex; never splice anything else
        return None
    found = [
        mv
        for mv in client.search_model_versions(
            f"name='{name}' and run_id='{trained.mlflow_run_id}'"
        )
        if mv.source == trained.model_uri
    ]
    return max(found, key=lambda mv: int(mv.version), default=None)


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

    Re-runnable: one training run (its MLflow run and model) gets one version. If an earlier
    attempt already registered it (killed before its result was recorded, or a re-run of the
    step), that version is reused — its tags refreshed, the aliases set — never a second one.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    client = mlflow_client(settings)
    name = settings.model_name
    tags = version_tags(info, trained, evaluated, run_id)
    version = version_of_run(client, name, trained)
    reused = version is not None
    if version is not None:
        for key, value in tags.items():
            if (version.tags or {}).get(key) != value:
                client.set_model_version_tag(name, version.version, key, value)
    else:
        version = mlflow.register_model(trained.model_uri, name, tags=tags)
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
