"""The typed stack config: every env is a value of one model; a wrong value names its key."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from pipelines.errors import PipelineError
from stacks.config import load_stack_config, parse_stack_config
from tests.conftest import REPO


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
