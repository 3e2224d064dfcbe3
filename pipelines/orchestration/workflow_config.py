"""The per-environment values of the rendered CronWorkflows (``workflows`` in the stack config)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

from pipelines.settings import Settings


class WorkflowSettings(BaseModel):
    """Per-environment values of the rendered CronWorkflows (``workflows`` in the stack config)."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, alias_generator=to_camel, populate_by_name=True
    )

    env: str
    """Environment name; labels every object and keys reports and decisions."""
    namespace: str = "mlops"
    image: str
    """Pipeline image with an immutable tag, e.g. ``<ecr>/mlops-pipeline:0.1.0``."""
    service_account: str = "mlops-pipeline"
    """Kubernetes service account bound to the pipeline's IAM role (IRSA)."""
    storage_url: str
    """Storage layout root, e.g. ``s3://mlops-dev-curated/v1``."""
    raw_storage_url: str | None = None
    """Root of ``raw/`` and ``quarantine/`` when they live in their own bucket."""
    mlflow_tracking_uri: str = "http://mlflow.mlflow.svc.cluster.local:5000"
    source_url: str = "https://data.binance.vision"
    symbols: str = ",".join(Settings.model_fields["symbols"].default)
    """The runs' ``symbols`` parameter (default: ``MLOPS_SYMBOLS``'s default, not the
    renderer's environment)."""
    interval: str = "1m"
    lookback_days: int = Field(default=60, ge=1)
    monitor_lookback_days: int = Field(default=2, ge=1)
    schedules: dict[str, list[str]] = Field(
        default_factory=lambda: {"training": ["30 2 * * *"], "monitor": ["15 * * * *"]}
    )
    """Cron schedules (UTC) per pipeline."""
    starting_deadline_seconds: int = Field(default=900, ge=0)
    active_deadline_seconds: dict[str, int] = Field(
        default_factory=lambda: {"training": 4 * 3600, "monitor": 1800}
    )
    successful_history: int = Field(default=3, ge=0)
    failed_history: int = Field(default=5, ge=0)
    ttl_after_success_seconds: int = Field(default=86_400, ge=0)
    ttl_after_failure_seconds: int = Field(default=7 * 86_400, ge=0)
    scratch_size: str = "4Gi"
    settings: dict[str, str] = Field(default_factory=dict)
    """More ``MLOPS_*`` settings for every step of this env — the gate's and the monitor's
    thresholds, the GitOps remote — checked against `pipelines.settings.Settings`."""
    parallelism: int = Field(default=8, ge=1, le=500)
    """Most pods of one run at a time (``spec.parallelism``): bounds a fan-out's width."""
    retry_backoff: str = "30s"
    retry_backoff_max: str = "10m"
    gitops_secret: str | None = "gitops-push"
    """Secret (in `namespace`) with the GitOps push credential, mounted read-only into the
    steps that push (gate, monitor) and nowhere else; None: those steps commit without a
    credential (a public or in-cluster remote)."""
    gitops_credential: Literal["token", "ssh-key"] = "token"
    """Which key of `gitops_secret` holds it: an HTTPS token or an SSH deploy key."""

    @field_validator("settings")
    @classmethod
    def _known_settings(cls, value: dict[str, str]) -> dict[str, str]:
        return check_settings(value)

    @field_validator("image")
    @classmethod
    def _pinned(cls, value: str) -> str:
        name = value.rsplit("/", 1)[-1]
        if ":" not in name or name.endswith(":latest"):
            raise ValueError(f"image {value!r} must carry an immutable tag (not :latest)")
        return value


def check_settings(values: dict[str, str]) -> dict[str, str]:
    """Refuse unknown ``MLOPS_*`` names and values the pipelines would reject."""
    from pydantic import ValidationError

    from pipelines.settings import Settings

    known = {f"MLOPS_{name.upper()}" for name in Settings.model_fields}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown setting(s) {unknown}; each must be one of {sorted(known)}")
    try:
        Settings.model_validate({k.removeprefix("MLOPS_").lower(): v for k, v in values.items()})
    except ValidationError as error:
        first = error.errors()[0]
        name = "MLOPS_" + str(first["loc"][0]).upper()
        raise ValueError(f"{name}: {first['msg']}") from None
    return values
