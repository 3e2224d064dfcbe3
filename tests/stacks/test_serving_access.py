"""(e) What the serving pods touch at run time is granted to their role.

At start a pod fetches the model archive the pin names (`pipelines.layout.model_archive`, under
the overlay's ``MLOPS_STORAGE_URL``); while serving it writes the inference log
(`pipelines.layout.inference`). Both keys are derived from the code and the overlay, and the
``identity-serving`` IAM policy of each env's plan must allow the S3 action on each — a pod that
cannot read its model never becomes ready. Planted instances: the grant removed, and the grant
on the wrong bucket.
"""

from __future__ import annotations

import copy
import fnmatch
import json
from datetime import date
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml

from pipelines import layout
from stacks.offline.plan import PlannedResource
from tests.conftest import REPO, StackPlans

ENVS = ("dev", "staging", "prod")


def overlay_settings(env: str) -> dict[str, str]:
    """The serving-env literals of the env's overlay."""
    overlay = yaml.safe_load((REPO / "platform/envs" / env / "kustomization.yaml").read_text())
    (generator,) = [g for g in overlay["configMapGenerator"] if g["name"] == "serving-env"]
    return dict(item.split("=", 1) for item in generator["literals"])


def touched(env: str) -> list[tuple[str, str]]:
    """(S3 action, object ARN) for each key a serving pod of `env` reads or writes."""
    url = urlparse(overlay_settings(env)["MLOPS_STORAGE_URL"])
    root = f"arn:aws:s3:::{url.netloc}/{url.path.strip('/')}"
    model = layout.model_archive("market-direction", 7)
    log = layout.inference(env, "7", date(2026, 11, 30), "batch.parquet")
    return [("s3:GetObject", f"{root}/{model}"), ("s3:PutObject", f"{root}/{log}")]


def statements(resources: list[PlannedResource]) -> list[dict[str, Any]]:
    (policy,) = [r for r in resources if r.name == "identity-serving" and "policy" in r.inputs]
    return list(json.loads(policy.inputs["policy"])["Statement"])


def access_problems(resources: list[PlannedResource], env: str) -> list[str]:
    """Each key the pods touch that no Allow statement of their role covers."""
    allowed = [
        (action, pattern)
        for s in statements(resources)
        if s["Effect"] == "Allow"
        for action in s["Action"]
        for pattern in s["Resource"]
    ]
    return [
        f"serving in {env} cannot {action} {arn}"
        for action, arn in touched(env)
        if not any(a == action and fnmatch.fnmatchcase(arn, p) for a, p in allowed)
    ]


@pytest.mark.parametrize("env", ENVS)
def test_the_serving_role_reads_the_model_and_writes_the_log(plans: StackPlans, env: str) -> None:
    assert access_problems(plans[env].resources, env) == []


def test_the_access_check_catches_planted_grants(plans: StackPlans) -> None:
    plan = plans["dev"]
    (model_read, _) = touched("dev")

    def planted(edit: Any) -> list[PlannedResource]:
        resources = copy.deepcopy(plan.resources)
        (policy,) = [r for r in resources if r.name == "identity-serving" and "policy" in r.inputs]
        document = json.loads(policy.inputs["policy"])
        document["Statement"] = edit(document["Statement"])
        policy.inputs["policy"] = json.dumps(document)
        return resources

    # the grant the model fetch needs, removed (what the stack lacked before the model was
    # fetched at start)
    without = planted(
        lambda ss: [s for s in ss if not any("/v1/bentos/" in r for r in s["Resource"])]
    )
    assert access_problems(without, "dev") == [
        f"serving in dev cannot {model_read[0]} {model_read[1]}"
    ]
    # the grant on the artifacts bucket instead of the bucket the overlay's storage URL names
    moved = planted(
        lambda ss: [
            {
                **s,
                "Resource": [
                    r.replace("-curated/v1/bentos/", "-artifacts/v1/bentos/") for r in s["Resource"]
                ],
            }
            for s in ss
        ]
    )
    assert access_problems(moved, "dev") == [
        f"serving in dev cannot {model_read[0]} {model_read[1]}"
    ]
