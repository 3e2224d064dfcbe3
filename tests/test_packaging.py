"""What can be checked of the pipeline image and the stack config without Docker or Pulumi."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

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
    good = yaml.safe_load((REPO / "stacks" / "Pulumi.dev.yaml").read_text())
    config, providers = parse_stack_config(good, "Pulumi.dev.yaml")
    assert config.workflows.storage_url.startswith("s3://") and providers == {
        "aws:region": "eu-west-1"
    }

    def broken(key: str, value: object) -> dict[str, Any]:
        document: dict[str, Any] = copy.deepcopy(good)
        section, _, field = key.partition(".")
        if field:
            document["config"][f"mlops-platform:{section}"][field] = value
        else:
            document["config"][f"mlops-platform:{section}"] = value
        return document

    cases = [
        ("costCentre", "y", r"mlops-platform:costCentre: Extra inputs are not permitted"),
        ("workflows.image", "r/p:latest", r"workflows\.image: .*immutable tag"),
        (
            "workflows.lookbackDays",
            "many",
            r"workflows\.lookbackDays: Input should be a valid integer",
        ),
        (
            "network.privateSubnetCidrs",
            ["10.20.64.0/19", "10.99.0.0/19"],
            r"10\.99\.0\.0/19 does not fit the VPC",
        ),
        ("network.publicSubnetCidrs", ["10.20.0.0/20", "10.20.64.0/20"], r"overlap"),
        ("cluster.publicAccessCidrs", ["0.0.0.0/0"], r"opens the API to the whole internet"),
        (
            "workflows.settings",
            {"MLOPS_GATE_MIN_AUC_DELTAS": "0.1"},
            r"workflows\.settings: .*unknown setting\(s\) \['MLOPS_GATE_MIN_AUC_DELTAS'\]",
        ),
        (
            "workflows.settings",
            {"MLOPS_MONITOR_WINDOWS": "zero"},
            r"workflows\.settings: .*MLOPS_MONITOR_WINDOWS: Input should be a valid integer",
        ),
    ]
    for key, value, message in cases:
        with pytest.raises(PipelineError, match=message):
            parse_stack_config(broken(key, value), "Pulumi.dev.yaml")


def test_environments_are_values_of_one_model() -> None:
    configs = {env: load_stack_config(env) for env in ("dev", "staging", "prod")}
    assert {c.env for c in configs.values()} == {"dev", "staging", "prod"}
    assert len({c.workflows.storage_url for c in configs.values()}) == 3
    # the gate is stricter in prod, and every env's decisions commit to its GitOps repository
    delta = {
        env: float(c.workflows.settings["MLOPS_GATE_MIN_AUC_DELTA"]) for env, c in configs.items()
    }
    assert delta["dev"] <= delta["staging"] <= delta["prod"] and delta["prod"] > 0
    assert all(
        c.workflows.settings["MLOPS_GITOPS_REMOTE"] == c.platform.gitops_repo_url
        for c in configs.values()
    )


def test_routed_storage_keeps_raw_keys_apart(tmp_path: Path) -> None:
    from pipelines.storage import open_storage

    storage = open_storage(str(tmp_path / "main"), str(tmp_path / "raw"))
    storage.write_bytes("raw/klines/A/1m/x.zip", b"z")
    storage.write_bytes("quarantine/klines/A/1m/d.csv", b"q")
    storage.write_bytes("curated/klines/1m/symbol=A/date=d/part-0.parquet", b"c")
    assert (tmp_path / "raw" / "raw/klines/A/1m/x.zip").read_bytes() == b"z"
    assert (tmp_path / "raw" / "quarantine/klines/A/1m/d.csv").exists()
    assert (tmp_path / "main" / "curated/klines/1m/symbol=A/date=d/part-0.parquet").exists()
    assert not (tmp_path / "main" / "raw").exists()
    assert storage.exists("raw/klines/A/1m/x.zip") and storage.list("raw/") == [
        "raw/klines/A/1m/x.zip"
    ]
