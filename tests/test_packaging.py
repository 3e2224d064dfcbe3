"""What can be checked of the pipeline image and the stack config without Docker or Pulumi."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from pipelines.errors import PipelineError
from stacks.config import load_stack_config, parse_stack_config
from tests.conftest import REPO, run_cli


def test_dockerfile_essentials() -> None:
    text = (REPO / "Dockerfile").read_text()
    bases = re.findall(r"^FROM (\S+)", text, flags=re.MULTILINE)
    assert bases and all(
        re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+( AS \w+)?", b) or ":" in b for b in bases
    )
    assert all(not b.endswith(":latest") and re.search(r":\d+\.\d+\.\d+", b) for b in bases), (
        "pinned bases"
    )
    assert "uv sync --locked --no-dev" in text, "installs exactly the locked runtime dependencies"
    user = re.findall(r"^USER (\S+)", text, flags=re.MULTILINE)
    assert user and user[-1].split(":")[0] not in ("root", "0"), "runs as a non-root user"
    assert re.search(r'^ENTRYPOINT \["mlops"\]', text, flags=re.MULTILINE)
    assert "MLOPS_HOME=/tmp/" in text, (
        "writes only to the scratch emptyDir (read-only root filesystem)"
    )


def test_record_exit_keeps_the_failed_steps(tmp_path: Path) -> None:
    failures = json.dumps(
        [
            {
                "displayName": "train",
                "templateName": "train",
                "message": "OOMKilled",
                "phase": "Failed",
                "finishedAt": "2026-01-01T00:00:00Z",
                "podName": "x",
            }
        ]
    )
    done = run_cli(
        [
            "workflows",
            "record-exit",
            "--run-id",
            "mlops-training-1",
            "--status",
            "Failed",
            "--failures",
            failures,
            "--json",
        ],
        {"MLOPS_HOME": str(tmp_path)},
    )
    assert done.returncode == 0, done.stderr
    record = json.loads((tmp_path / "data" / "runs" / "mlops-training-1" / "exit.json").read_text())
    assert record["status"] == "Failed" and record["failures"][0]["displayName"] == "train"
    assert (
        record["failures"][0]["message"] == "OOMKilled" and "podName" not in record["failures"][0]
    )


def test_stack_config_errors_name_the_key() -> None:
    good = {
        "config": {
            "mlops-platform:env": "dev",
            "mlops-platform:owner": "x",
            "mlops-platform:costCenter": "y",
            "mlops-platform:workflows": {"env": "dev", "image": "r/p:1.0", "storageUrl": "s3://b"},
        }
    }
    config, providers = parse_stack_config(good, "Pulumi.t.yaml")
    assert config.workflows.storage_url == "s3://b" and providers == {}
    typo = {"config": {**good["config"], "mlops-platform:costCentre": "y"}}
    with pytest.raises(
        PipelineError, match="mlops-platform:costCentre: Extra inputs are not permitted"
    ):
        parse_stack_config(typo, "Pulumi.t.yaml")
    latest = {
        "config": {
            **good["config"],
            "mlops-platform:workflows": {
                "env": "dev",
                "image": "r/p:latest",
                "storageUrl": "s3://b",
            },
        }
    }
    with pytest.raises(PipelineError, match=r"workflows.image: .*immutable tag"):
        parse_stack_config(latest, "Pulumi.t.yaml")
    wrong_type = {
        "config": {
            **good["config"],
            "mlops-platform:workflows": {
                "env": "dev",
                "image": "r/p:1",
                "storageUrl": "s3://b",
                "lookbackDays": "many",
            },
        }
    }
    with pytest.raises(
        PipelineError, match=r"workflows\.lookbackDays: Input should be a valid integer"
    ):
        parse_stack_config(wrong_type, "Pulumi.t.yaml")


def test_environments_are_values_of_one_model() -> None:
    configs = {env: load_stack_config(env) for env in ("dev", "staging", "prod")}
    assert {c.env for c in configs.values()} == {"dev", "staging", "prod"}
    assert len({c.workflows.storage_url for c in configs.values()}) == 3
