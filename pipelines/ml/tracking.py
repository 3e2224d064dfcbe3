"""MLflow wiring: local sqlite default, a real server when MLFLOW_TRACKING_URI says so."""

from __future__ import annotations

import os
import socket
import subprocess
from typing import Any

from pipelines.settings import REPO_ROOT, Settings


def tracking_uri(settings: Settings) -> str:
    """``MLFLOW_TRACKING_URI`` when set, else ``sqlite:///$MLOPS_HOME/mlflow.db``."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{settings.home.resolve()}/mlflow.db"


def configure(settings: Settings) -> str:
    """Point MLflow at the tracking store and make sure the experiment exists.

    Returns the experiment id. A local store keeps artifacts under ``$MLOPS_HOME/mlartifacts``
    (MLflow would otherwise put them in ``./mlruns`` of whatever the current directory is); a
    server decides its own artifact location.
    """
    # No telemetry call-home: the machines have no internet, and runs must not wait on DNS.
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # With a server URI MLflow prints "View run … at …" on stdout, which `--json` reserves.
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    import mlflow

    quiet_mlflow()
    from_user = "MLFLOW_TRACKING_URI" in os.environ
    experiment_from_user = "MLFLOW_EXPERIMENT_ID" in os.environ
    uri = tracking_uri(settings)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    if not from_user:
        # mlflow.set_*_uri also export MLFLOW_*_URI; keep the environment meaning "what the user
        # chose", or every later configure (and child process) would inherit this local store.
        os.environ.pop("MLFLOW_TRACKING_URI", None)
        os.environ.pop("MLFLOW_REGISTRY_URI", None)
    existing = mlflow.get_experiment_by_name(settings.experiment)
    if existing is not None:
        experiment_id: str = existing.experiment_id
    else:
        location = None
        if uri.startswith("sqlite:"):
            location = (settings.home.resolve() / "mlartifacts").as_uri()
        experiment_id = mlflow.create_experiment(settings.experiment, artifact_location=location)
    mlflow.set_experiment(experiment_id=experiment_id)
    if not experiment_from_user:
        # set_experiment exports MLFLOW_EXPERIMENT_ID too: a child process (another `mlops`
        # against another tracking server) would inherit an id that means nothing there
        os.environ.pop("MLFLOW_EXPERIMENT_ID", None)
    return experiment_id


def quiet_mlflow() -> None:
    """Keep MLflow's chatter out of our progress output (its real warnings still show)."""
    import logging
    import warnings

    for name, level in {
        "mlflow.store.db.utils": logging.WARNING,  # "Creating initial MLflow database tables..."
        "mlflow.utils.environment": logging.ERROR,  # "Failed to resolve … pip version" (uv venv)
        "mlflow.utils.uv_utils": logging.WARNING,  # "Detected uv project"
        "alembic": logging.WARNING,
    }.items():
        logging.getLogger(name).setLevel(level)
    # Our dataset source is a storage URL; MLflow finds two equal readings of it and says so.
    warnings.filterwarnings("ignore", message="The specified dataset source can be interpreted")
    # The label is an int column of the logged dataset; it never has missing values.
    warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer column")


def git_commit() -> str:
    """The commit of the code that runs: ``MLOPS_GIT_COMMIT`` (set in images), else ``git``."""
    if commit := os.environ.get("MLOPS_GIT_COMMIT"):
        return commit
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return done.stdout.strip() if done.returncode == 0 else "unknown"


RUN_KEY_TAG = "mlops.run_id"
"""The pipeline run an MLflow run belongs to (with ``mlops.host``/``mlops.pid``: which process
wrote it)."""


def attempt_tags(run_id: str) -> dict[str, str]:
    """Tags naming the pipeline run and the process (host, pid) that opens an MLflow run."""
    return {RUN_KEY_TAG: run_id, "mlops.host": socket.gethostname(), "mlops.pid": str(os.getpid())}


def _writer_alive(run: Any) -> bool:
    """Whether the process that opened `run` may still be writing it.

    Another host (pod) is an earlier attempt that ended: the local runner and Argo start a
    step's next attempt only after the previous one stopped. On this host, its pid is asked.
    """
    import mlflow

    tags = run.data.tags
    pid = tags.get("mlops.pid", "")
    if tags.get("mlops.host") != socket.gethostname() or not pid.isdigit():
        return False
    if int(pid) == os.getpid():
        active = mlflow.active_run()
        return active is not None and active.info.run_id == run.info.run_id
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def end_abandoned_runs(experiment_id: str, run_id: str) -> list[str]:
    """Mark ``KILLED`` the MLflow runs of pipeline run `run_id` still ``RUNNING`` whose process
    is gone (a killed earlier attempt); a live writer's run is left alone. Returns their ids.

    They are ended, not reused: an MLflow run's params cannot change, and what a killed
    attempt logged (half a model?) is unknown; the new run links them (``mlops.replaces``).
    """
    from mlflow import MlflowClient

    # The run id is compared here, not in the filter: it is never spliced into a query.
    running = MlflowClient().search_runs(
        [experiment_id], filter_string="attributes.status = 'RUNNING'"
    )
    ended = []
    for run in running:
        if run.data.tags.get(RUN_KEY_TAG) == run_id and not _writer_alive(run):
            MlflowClient().set_terminated(run.info.run_id, "KILLED")
            ended.append(run.info.run_id)
    return ended


def client(settings: Settings) -> Any:
    """An MlflowClient on the configured store."""
    configure(settings)
    from mlflow import MlflowClient

    return MlflowClient()


def load_model_safely(settings: Settings, model_uri: str) -> Any:
    """The model at `model_uri` (``models:/NAME/VERSION``, ``runs:/…``, ``models:/m-…``):
    its files downloaded (no deserialization), then loaded through `load_skops_model`."""
    import tempfile
    from pathlib import Path

    import mlflow.artifacts

    from pipelines.ml.modeling import load_skops_model

    configure(settings)
    with tempfile.TemporaryDirectory(prefix="mlops-model-") as tmp:
        root = mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=tmp)
        return load_skops_model(Path(root), model_uri)
