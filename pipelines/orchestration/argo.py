"""Argo rendering: each pipeline of `pipelines.orchestration.dag` as a CronWorkflow (Hera).

The DAG, its commands, retries, timeouts and resources come from the one definition in
`pipelines.orchestration.dag`; only the per-environment values (image, schedule, namespace,
storage, …) come from `WorkflowSettings`, which the stack config provides.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

from pipelines.errors import PipelineError
from pipelines.orchestration.dag import RUN_PARAMETERS, Pipeline, Step, lint, step_command

SCRATCH = "/tmp"
"""The only writable path in a step container (an emptyDir): MLOPS_HOME and HOME live there."""


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
    symbols: str = "BTCUSDT,ETHUSDT"
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


def _metrics(pipeline: str, step: str) -> Any:
    """A step template's metrics; names, help and buckets from `pipelines.metrics`."""
    from hera.workflows import Counter, Gauge, Histogram, Label, Metrics

    from pipelines import metrics as names

    labels = [Label(key="pipeline", value=pipeline), Label(key="step", value=step)]
    duration, result, retries = names.STEP_DURATION, names.STEP_RESULT, names.STEP_RETRIES
    step_metrics: list[Any] = [
        Histogram(
            name=duration.name,
            help=duration.help,
            labels=labels,
            buckets=list(duration.buckets),
            value="{{duration}}",
        ),
        Counter(
            name=result.name,
            help=result.help,
            labels=[*labels, Label(key="status", value="{{status}}")],
            value="1",
        ),
        Gauge(
            name=retries.name,
            help=retries.help,
            labels=labels,
            realtime=False,
            value="{{retries}}",
        ),
    ]
    return Metrics(metrics=step_metrics)


def _security_context() -> Any:
    from hera.workflows import models as m

    return m.SecurityContext(
        run_as_non_root=True,
        read_only_root_filesystem=True,
        allow_privilege_escalation=False,
        capabilities=m.Capabilities(drop=["ALL"]),
        seccomp_profile=m.SeccompProfile(type="RuntimeDefault"),
    )


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


def _env(config: WorkflowSettings, pipeline: Pipeline) -> list[Any]:
    from hera.workflows import Env

    lookback = config.monitor_lookback_days if pipeline.name == "monitor" else config.lookback_days
    values = {
        "MLOPS_ENV": config.env,
        "MLOPS_HOME": f"{SCRATCH}/mlops",
        "MLOPS_STORAGE_URL": config.storage_url,
        **({"MLOPS_RAW_STORAGE_URL": config.raw_storage_url} if config.raw_storage_url else {}),
        "MLOPS_LOOKBACK_DAYS": str(lookback),
        "MLFLOW_TRACKING_URI": config.mlflow_tracking_uri,
        "HOME": SCRATCH,
        "OMP_NUM_THREADS": "1",
        "MLOPS_GITOPS_REPO": f"{SCRATCH}/gitops",
        **config.settings,
    }
    return [Env(name=k, value=v) for k, v in values.items()]


PIPELINE_UID = 10001
"""The pipeline image's user (Dockerfile: ``USER 10001:10001``)."""
GITOPS_SECRET_DIR = "/var/run/secrets/mlops-gitops"
"""Where the push credential of `WorkflowSettings.gitops_secret` is mounted."""


def _gitops_env(config: WorkflowSettings) -> list[Any]:
    from hera.workflows import Env

    setting = {"token": "MLOPS_GITOPS_TOKEN_FILE", "ssh-key": "MLOPS_GITOPS_SSH_KEY_FILE"}
    path = f"{GITOPS_SECRET_DIR}/{config.gitops_credential}"
    return [Env(name=setting[config.gitops_credential], value=path)]


def _gitops_volume(config: WorkflowSettings) -> Any:
    from hera.workflows import SecretVolume
    from hera.workflows import models as m

    return SecretVolume(
        name="gitops-credentials",
        secret_name=config.gitops_secret,
        mount_path=GITOPS_SECRET_DIR,
        read_only=True,
        # root-owned, group-readable through the pod's fsGroup: uid 10001 reads it, and ssh
        # accepts a key it does not own that others cannot read
        default_mode=0o440,
        items=[m.KeyToPath(key=config.gitops_credential, path=config.gitops_credential)],
    )


def argo_params() -> dict[str, str]:
    """Each run parameter as the Argo expression that carries it into a step command."""
    return {name: f"{{{{workflow.parameters.{name}}}}}" for name in RUN_PARAMETERS}


def _container(
    config: WorkflowSettings,
    pipeline: Pipeline,
    step: Step,
    name: str | None = None,
    command: list[str] | None = None,
) -> Any:
    from hera.workflows import Container, EmptyDirVolume, Resources, RetryStrategy
    from hera.workflows import models as m

    argv = command or step_command(pipeline.name, step.name, "{{workflow.name}}", argo_params())
    r = step.resources
    pushes = step.pushes_gitops and config.gitops_secret is not None
    scratch = EmptyDirVolume(
        name="scratch", mount_path=SCRATCH, size_limit=m.Quantity(config.scratch_size)
    )
    return Container(
        name=name or step.name,
        image=config.image,
        command=argv[:1],
        args=argv[1:],
        env=_env(config, pipeline) + (_gitops_env(config) if pushes else []),
        resources=Resources(
            cpu_request=r.cpu,
            cpu_limit=r.cpu_limit,
            memory_request=r.memory,
            memory_limit=r.memory_limit,
        ),
        retry_strategy=RetryStrategy(
            limit=step.retries,
            retry_policy="Always",
            backoff=m.Backoff(
                duration=config.retry_backoff,
                factor=m.IntOrString(2),
                max_duration=config.retry_backoff_max,
            ),
        ),
        security_context=_security_context(),
        volumes=[scratch, _gitops_volume(config)] if pushes else [scratch],
        # the gate and the monitor run in different pods (and workflows): one at a time per env
        synchronization=(
            m.Synchronization(mutexes=[m.Mutex(name=decisions_mutex(config.env))])
            if step.pushes_gitops
            else None
        ),
        active_deadline_seconds=step.timeout_seconds,
        metrics=_metrics(pipeline.name, step.name),
    )


def decisions_mutex(env: str) -> str:
    """The Argo mutex that serializes every decision (gate, monitor) of `env` across pods and
    workflows; the local runner serializes them with a file lock instead."""
    return f"mlops-decisions-{env}"


def exit_command() -> list[str]:
    """What the exit handler runs: records the workflow's outcome (and failures) in storage."""
    return [
        "mlops",
        "workflows",
        "record-exit",
        "--run-id",
        "{{workflow.name}}",
        "--status",
        "{{workflow.status}}",
        "--failures",
        "{{workflow.failures}}",
    ]


def cron_workflow(pipeline: Pipeline, config: WorkflowSettings) -> Any:
    """The Hera CronWorkflow of `pipeline` for one environment."""
    from hera.workflows import DAG, Counter, CronWorkflow, Gauge, Label, Metrics, Parameter, Task
    from hera.workflows import models as m

    from pipelines.orchestration.dag import Resources, Step

    steps = lint(pipeline.steps)
    containers = {s.name: _container(config, pipeline, s) for s in steps}
    on_exit_step = Step(
        "record-exit",
        _runs_in_its_own_container,
        retries=2,
        timeout_seconds=300,
        resources=Resources("50m", "128Mi", "250m", "256Mi"),
    )
    exit_handler = _container(config, pipeline, on_exit_step, command=exit_command())
    dag = DAG(
        name=f"{pipeline.name}-dag",  # not the pipeline's name: a step may share it (monitor)
        tasks=[
            Task(name=s.name, template=containers[s.name], dependencies=list(s.needs) or None)
            for s in steps
        ],
    )
    defaults = {
        "source": config.source_url,
        "symbols": config.symbols,
        "interval": config.interval,
        "start": "",
        "end": "",
    }  # empty dates: the run covers the days up to yesterday (UTC)
    labels = {
        "app.kubernetes.io/part-of": "mlops-platform",
        "mlops/env": config.env,
        "mlops/pipeline": pipeline.name,
    }
    from pipelines import metrics as metric_names

    run_duration, run_result = metric_names.WORKFLOW_DURATION, metric_names.WORKFLOW_RESULT
    workflow_metrics: list[Any] = [
        Gauge(
            name=run_duration.name,
            help=run_duration.help,
            labels=[Label(key="pipeline", value=pipeline.name)],
            realtime=True,
            value="{{workflow.duration}}",
        ),
        Counter(
            name=run_result.name,
            help=run_result.help,
            labels=[
                Label(key="pipeline", value=pipeline.name),
                Label(key="status", value="{{workflow.status}}"),
            ],
            value="1",
        ),
    ]
    names = [dag.name, *(c.name for c in containers.values()), exit_handler.name]
    if len(set(names)) != len(names):  # Argo resolves templates by name
        raise PipelineError(f"pipeline {pipeline.name!r}: template names collide: {names}")
    return CronWorkflow(
        name=f"mlops-{pipeline.name}",
        namespace=config.namespace,
        labels=labels,
        annotations={"mlops/description": pipeline.doc},
        schedules=config.schedules[pipeline.name],
        timezone="UTC",
        concurrency_policy="Forbid",
        starting_deadline_seconds=config.starting_deadline_seconds,
        successful_jobs_history_limit=config.successful_history,
        failed_jobs_history_limit=config.failed_history,
        entrypoint=dag.name,
        on_exit=exit_handler,
        active_deadline_seconds=config.active_deadline_seconds[pipeline.name],
        pod_gc=m.PodGC(strategy="OnPodCompletion"),
        ttl_strategy=m.TTLStrategy(
            seconds_after_success=config.ttl_after_success_seconds,
            seconds_after_failure=config.ttl_after_failure_seconds,
        ),
        service_account_name=config.service_account,
        # Pod level: the pipeline image's user, and the group that may read mounted Secrets.
        security_context=m.PodSecurityContext(
            run_as_non_root=True,
            run_as_user=PIPELINE_UID,
            run_as_group=PIPELINE_UID,
            fs_group=PIPELINE_UID,
            seccomp_profile=m.SeccompProfile(type="RuntimeDefault"),
        ),
        workflow_metadata=m.WorkflowMetadata(labels=labels),
        arguments=[Parameter(name=k, value=v) for k, v in defaults.items()],
        metrics=Metrics(metrics=workflow_metrics),
        templates=[dag, *containers.values(), exit_handler],
    )


def _runs_in_its_own_container(ctx: object) -> BaseModel:
    """The exit handler runs `mlops workflows record-exit` in its own pod; it has no in-process
    step function."""
    raise NotImplementedError("the exit handler runs in its own container")


def render(pipeline: Pipeline, config: WorkflowSettings) -> dict[str, Any]:
    """The CronWorkflow manifest as a plain dict (what the stacks hand to pulumi-kubernetes)."""
    manifest: dict[str, Any] = cron_workflow(pipeline, config).to_dict()
    return manifest


def render_yaml(pipeline: Pipeline, config: WorkflowSettings) -> str:
    """The CronWorkflow manifest as YAML with a stable key order (golden files)."""
    import yaml

    header = (
        f"# Generated by `mlops workflows render --stack {config.env}` from "
        "pipelines/orchestration/dag.py and stacks/Pulumi.<env>.yaml. Do not edit.\n"
    )
    return header + yaml.safe_dump(
        render(pipeline, config), sort_keys=True, default_flow_style=False, width=100
    )
