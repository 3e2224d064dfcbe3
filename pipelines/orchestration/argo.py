"""Argo rendering: each pipeline of `pipelines.orchestration.dag` as a CronWorkflow (Hera).

The DAG, its commands, retries, timeouts and resources come from the one definition in
`pipelines.orchestration.dag`; only the per-environment values (image, schedule, namespace,
storage, …) come from `WorkflowSettings`, which the stack config provides.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from pipelines.errors import PipelineError
from pipelines.orchestration.dag import RUN_PARAMETERS, Pipeline, Step, lint, step_command
from pipelines.orchestration.fanout import SHARDS_STEP
from pipelines.orchestration.workflow_config import WorkflowSettings, check_settings

__all__ = ["WorkflowSettings", "check_settings", "render", "render_yaml"]

SCRATCH = "/tmp"
"""The only writable path in a step container (an emptyDir): MLOPS_HOME and HOME live there."""
OUTPUTS = f"{SCRATCH}/outputs"
"""Where a step writes its output parameter (on the emptyDir, where Argo's executor reads it)."""


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


def _env(config: WorkflowSettings, pipeline: Pipeline) -> list[Any]:
    from hera.workflows import Env

    lookback = config.monitor_lookback_days if pipeline.name == "monitor" else config.lookback_days
    # the monitor triggers training runs (pipelines.decisions.retrain) from the training
    # CronWorkflow, through the Kubernetes API (the Role stacks.components.cluster_services makes)
    retrain = {
        "MLOPS_RETRAIN_BACKEND": "argo",
        "MLOPS_RETRAIN_CRON_WORKFLOW": cron_workflow_name("training"),
        "MLOPS_RETRAIN_NAMESPACE": config.namespace,
    }
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
        **(retrain if pipeline.name == "monitor" else {}),
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
    from hera.workflows import Container, EmptyDirVolume, Parameter, Resources, RetryStrategy
    from hera.workflows import models as m

    output_file = f"{OUTPUTS}/{step.output}.json" if step.output else None
    argv = command or step_command(
        pipeline.name,
        step.name,
        "{{workflow.name}}",
        argo_params(),
        shard="{{inputs.parameters.shard}}" if step.fan_out else None,
        output_file=output_file,
    )
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
        inputs=[Parameter(name="shard")] if step.fan_out else None,
        outputs=(
            [Parameter(name=step.output, value_from=m.ValueFrom(path=output_file))]
            if step.output
            else None
        ),
    )


def _task(step: Step, template: Any) -> Any:
    from hera.workflows import Parameter, Task

    return Task(
        name=step.name,
        template=template,
        dependencies=list(step.needs) or None,
        with_param=(
            f"{{{{tasks.{SHARDS_STEP}.outputs.parameters.shards}}}}" if step.fan_out else None
        ),
        arguments=[Parameter(name="shard", value="{{item}}")] if step.fan_out else None,
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


def cron_workflow_name(pipeline: str) -> str:
    """The CronWorkflow of `pipeline` (``mlops-training``, ``mlops-monitor``)."""
    return f"mlops-{pipeline}"


def cron_workflow(pipeline: Pipeline, config: WorkflowSettings) -> Any:
    """The Hera CronWorkflow of `pipeline` for one environment."""
    from hera.workflows import DAG, Counter, CronWorkflow, Gauge, Label, Metrics, Parameter
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
        tasks=[_task(s, containers[s.name]) for s in steps],
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
        name=cron_workflow_name(pipeline.name),
        # an env that serves candidates instead of training (MLOPS_TRAINS=false, from the stack's
        # platform.trains) keeps the manifest, validated like any other, but never runs it
        cron_suspend=pipeline.trains and not trains(config),
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
        parallelism=config.parallelism,
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


def trains(config: WorkflowSettings) -> bool:
    """Whether the env trains (its ``MLOPS_TRAINS`` setting, default true)."""
    from pipelines.settings import Settings

    return Settings.model_validate({"trains": config.settings.get("MLOPS_TRAINS", "true")}).trains


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
