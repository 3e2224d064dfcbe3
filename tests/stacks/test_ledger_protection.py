"""(f) The pipeline role's S3 access per key family, and the write-once ledger (finding 10).

What the pipeline touches is derived from the code: the validate step's refusal of a day and a
ledger write run against a recording storage (their deletes and conditional creates are
recorded, not spelled here), the other keys from `pipelines.layout`, mapped to the plan's
buckets through the workflows' storage URLs as `pipelines.storage.RoutedStorage` maps them.
Each request is evaluated against the plan's policy documents (tests/support/iam.py):

- everything the pipeline does is allowed (identity policy and bucket policy together);
- the pipeline's identity policy alone allows no delete of a ledger record or an exported
  archive, nothing on MLflow's artifacts (the MLflow server writes them, proxied);
- the ledger bucket's policy alone denies, to every principal but the operators' break-glass
  roles, any delete of a ledger record or archive and any PUT of one that is not a conditional
  create (``If-None-Match: *``), and denies nothing on ``decisions/{env}/intents/``.

Planted: a wildcard Delete grant, the deny removed, the intents exemption widened to the whole
ledger, the conditional-create condition inverted, and a grant the code needs removed.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml

from bentos.build import create_once
from pipelines import layout
from pipelines.data.validate import refuse_day
from pipelines.decisions import ledger
from pipelines.storage import LocalStorage
from stacks.components.identity import ARGO_LOG_PREFIX, PIPELINE_ACCESS
from stacks.config import StackConfig, load_stack_config
from stacks.offline.plan import PlannedResource
from tests.conftest import REPO, StackPlans
from tests.support.iam import Request, decide
from tests.support.records import make_decision

ENVS = ("dev", "staging", "prod")
DAY = date(2026, 11, 30)
CREATE = {"s3:if-none-match": "*"}
EVERYTHING = [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]
"""An identity policy allowing all of S3: what the bucket policy must stop on its own."""


class Recording(LocalStorage):
    """A local storage that records each request as the S3 action it would be."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.requests: list[tuple[str, str, dict[str, str]]] = []

    def read_bytes(self, key: str) -> bytes:
        self.requests.append(("s3:GetObject", key, {}))
        return super().read_bytes(key)

    def write_bytes(self, key: str, data: bytes) -> None:
        self.requests.append(("s3:PutObject", key, {}))
        super().write_bytes(key, data)

    def create(self, key: str, data: bytes) -> None:
        self.requests.append(("s3:PutObject", key, dict(CREATE)))
        super().create(key, data)

    def delete(self, key: str) -> None:
        self.requests.append(("s3:DeleteObject", key, {}))
        super().delete(key)


def account(env: str) -> str:
    document = yaml.safe_load((REPO / "stacks" / f"Pulumi.{env}.yaml").read_text())
    (found,) = document["config"]["aws:allowedAccountIds"]
    return str(found)


def principals(env: str) -> dict[str, str]:
    """Role ARNs of the pipeline, serving and CI (none exempt) and of an operator (exempt)."""
    config = load_stack_config(env)
    return {
        "pipeline": f"arn:aws:iam::{account(env)}:role/identity-pipeline",
        "serving": f"arn:aws:iam::{account(env)}:role/identity-serving",
        "ci": config.cluster.ci_role_arn,
        "operator": config.cluster.admin_role_arns[0],
    }


def object_arn(config: StackConfig, key: str) -> str:
    """The ARN of layout key `key` where the workflows keep it (``raw/`` and ``quarantine/``
    under ``rawStorageUrl`` when set, as `RoutedStorage` does)."""
    workflows = config.workflows
    url = workflows.storage_url
    if workflows.raw_storage_url and key.startswith(layout.RAW_PREFIXES):
        url = workflows.raw_storage_url
    parsed = urlparse(url)
    root = parsed.path.strip("/")
    return f"arn:aws:s3:::{parsed.netloc}/{root + '/' if root else ''}{key}"


def what_the_code_does(tmp_path: Path) -> list[tuple[str, str, dict[str, str]]]:
    """(action, key, condition keys) of the pipeline's requests: recorded where a step is cheap
    to run, else from the layout's key functions."""
    storage = Recording(tmp_path)
    refuse_day(
        storage, "BTCUSDT", "1m", DAY, "0" * 64, "too large"
    )  # Put quarantine, Delete curated
    record = make_decision(env="dev", decision_id="q")
    written = ledger.write(storage, record)
    storage.read_bytes(written.key)
    create_once(storage, layout.model_archive("m", 3), b"archive")
    create_once(storage, layout.bento_archive("m:v3-abc"), b"bento")
    intent = f"{layout.decision_intents_prefix('dev')}{written.key.rsplit('/', 1)[1]}"
    storage.write_bytes(intent, b"{}")
    storage.delete(intent)
    done = list(storage.requests)
    put = [
        layout.raw_zip("BTCUSDT", "1m", DAY),
        layout.raw_checksum("BTCUSDT", "1m", DAY),
        layout.curated("BTCUSDT", "1m", DAY),
        f"{layout.dataset('1m', 'abc')}/manifest.json",
        layout.run_params("r1"),
        layout.step_result("r1", "train"),
        layout.run_exit("r1"),
        f"{layout.report('dev', 'drift', '20261130T000000Z')}/summary.json",
    ]
    done += [("s3:PutObject", key, {}) for key in put]
    done += [("s3:GetObject", key, {}) for key in put]
    # validate drops the stale quarantine of a day that is clean now (pipelines/data/validate.py)
    done.append(("s3:DeleteObject", layout.quarantine("BTCUSDT", "1m", DAY), {}))
    done.append(("s3:GetObject", layout.inference("dev", "3", DAY, "b.parquet"), {}))  # monitor
    return done


def write_once_breaches(env: str) -> list[tuple[str, str, dict[str, str]]]:
    """(action, key, condition keys) that would rewrite or erase a write-once key."""
    record = layout.decision(env, "20261130T000000000000Z", "gate")
    archive = layout.model_archive("market-direction", 3)
    return [
        (action, key, {})
        for key in (record, archive, layout.bento_archive("market-direction:v3-abc"))
        for action in ("s3:DeleteObject", "s3:DeleteObjectVersion", "s3:PutObject")
    ]


def statements_of(resources: list[PlannedResource], name: str) -> list[dict[str, Any]]:
    (policy,) = [r for r in resources if r.name == name and "policy" in r.inputs]
    return list(json.loads(policy.inputs["policy"])["Statement"])


def bucket_statements(resources: list[PlannedResource]) -> dict[str, list[dict[str, Any]]]:
    return {
        r.inputs["bucket"]: list(json.loads(r.inputs["policy"])["Statement"])
        for r in resources
        if r.type == "aws:s3/bucketPolicy:BucketPolicy"
    }


def protection_problems(
    resources: list[PlannedResource], env: str, done: list[tuple[str, str, dict[str, str]]]
) -> list[str]:
    """Every way the plan of `env` breaks the least-privilege or write-once contract."""
    config = load_stack_config(env)
    identity = statements_of(resources, "identity-pipeline")
    buckets = bucket_statements(resources)
    who = principals(env)

    def on_bucket(arn: str) -> list[dict[str, Any]]:
        return buckets.get(arn.removeprefix("arn:aws:s3:::").split("/", 1)[0], [])

    problems = []
    artifacts = f"arn:aws:s3:::{config.storage.bucket('artifacts')}"
    needed = [
        Request(who["pipeline"], action, object_arn(config, key), context)
        for action, key, context in done
    ]
    needed.append(
        Request(
            who["pipeline"], "s3:PutObject", f"{artifacts}/{ARGO_LOG_PREFIX}wf-1/pod-1/main.log"
        )
    )
    for request in needed:
        if decide(identity, on_bucket(request.resource), request) != "allow":
            problems.append(f"the pipeline cannot {request.action} {request.resource}")
    breaches = [
        (action, object_arn(config, key), context)
        for action, key, context in write_once_breaches(env)
    ]
    refused = [
        *(Request(who["pipeline"], a, arn) for a, arn, _ in breaches if a != "s3:PutObject"),
        *(
            Request(who["pipeline"], action, f"{artifacts}/mlflow/1/abc/artifacts/model.skops")
            for action in ("s3:GetObject", "s3:PutObject", "s3:DeleteObject")
        ),
        Request(
            who["pipeline"], "s3:DeleteObject", object_arn(config, layout.raw_zip("B", "1m", DAY))
        ),
    ]
    for request in refused:
        if decide(identity, [], request) == "allow":
            problems.append(f"identity-pipeline allows {request.action} on {request.resource}")
    for name in ("pipeline", "serving", "ci"):
        for action, arn, context in breaches:
            request = Request(who[name], action, arn, context)
            if decide(EVERYTHING, on_bucket(arn), request) != "deny":
                problems.append(f"the bucket policy lets {name} {action} {arn}")
    # what the bucket policy must leave to the identity policies: creates, the intents
    for action, key, context in done:
        request = Request(who["pipeline"], action, object_arn(config, key), context)
        if decide(EVERYTHING, on_bucket(request.resource), request) != "allow":
            problems.append(f"the bucket policy denies {action} {request.resource}")
    # break-glass: an operator's role can still repair (delete a record)
    action, arn, _ = breaches[0]
    if decide(EVERYTHING, on_bucket(arn), Request(who["operator"], action, arn)) != "allow":
        problems.append(f"the operators' role cannot {action} {arn} (no break-glass)")
    return problems


@pytest.fixture(scope="module")
def done(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[str, str, dict[str, str]]]:
    return what_the_code_does(tmp_path_factory.mktemp("recorded"))


def test_the_recording_saw_the_deletes_and_creates(
    done: list[tuple[str, str, dict[str, str]]],
) -> None:
    deleted = {key.split("/", 1)[0] for action, key, _ in done if action == "s3:DeleteObject"}
    assert deleted == {"curated", "quarantine", "decisions"}
    created = [key for action, key, context in done if context == CREATE]
    assert [k.split("/", 1)[0] for k in created] == ["decisions", "bentos", "bentos"]
    assert all("/intents/" in k for a, k, _ in done if a == "s3:DeleteObject" and k[0] == "d")


def test_every_layout_family_has_a_decided_access() -> None:
    assert set(layout.PREFIXES) <= set(PIPELINE_ACCESS)


@pytest.mark.parametrize("env", ENVS)
def test_the_pipeline_has_what_it_needs_and_the_ledger_is_write_once(
    plans: StackPlans, env: str, done: list[tuple[str, str, dict[str, str]]]
) -> None:
    assert protection_problems(plans[env].resources, env, done) == []


def planted(
    resources: list[PlannedResource], name: str, edit: Callable[[list[dict[str, Any]]], Any]
) -> list[PlannedResource]:
    resources = copy.deepcopy(resources)
    (policy,) = [r for r in resources if r.name == name and "policy" in r.inputs]
    document = json.loads(policy.inputs["policy"])
    document["Statement"] = edit(document["Statement"])
    policy.inputs["policy"] = json.dumps(document)
    return resources


@pytest.mark.hostile
def test_the_check_catches_planted_grants_and_holes(
    plans: StackPlans, done: list[tuple[str, str, dict[str, str]]]
) -> None:
    resources = plans["dev"].resources
    config = load_stack_config("dev")
    curated = f"arn:aws:s3:::{config.storage.bucket('curated')}"
    record = object_arn(config, layout.decision("dev", "20261130T000000000000Z", "gate"))
    archive = object_arn(config, layout.model_archive("market-direction", 3))

    # a wildcard Delete grant on the whole curated bucket (what "write" used to include)
    wild = planted(
        resources,
        "identity-pipeline",
        lambda ss: [
            *ss,
            {"Effect": "Allow", "Action": "s3:Delete*", "Resource": [f"{curated}/*"]},
        ],
    )
    problems = protection_problems(wild, "dev", done)
    assert f"identity-pipeline allows s3:DeleteObject on {record}" in problems
    assert f"identity-pipeline allows s3:DeleteObject on {archive}" in problems

    # the delete deny removed from the ledger bucket's policy
    no_deny = planted(
        resources,
        "storage-curated",
        lambda ss: [s for s in ss if s.get("Sid") != "DenyDeletingWriteOnceKeys"],
    )
    problems = protection_problems(no_deny, "dev", done)
    assert f"the bucket policy lets pipeline s3:DeleteObject {record}" in problems
    assert f"the bucket policy lets ci s3:DeleteObjectVersion {archive}" in problems
    assert not any("s3:PutObject" in p for p in problems)  # the overwrite deny still holds

    # the intents exemption widened to the whole ledger (what a careless pattern does)
    def widen(ss: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for s in ss:
            if "NotResource" in s:
                s["NotResource"] = [
                    r.replace("/decisions/*/intents/*", "/decisions/*") for r in s["NotResource"]
                ]
        return ss

    problems = protection_problems(planted(resources, "storage-curated", widen), "dev", done)
    assert f"the bucket policy lets serving s3:PutObject {record}" in problems
    assert f"the bucket policy lets pipeline s3:DeleteObject {record}" in problems
    assert not any(archive in p for p in problems)  # archives stay protected

    # the conditional-create condition inverted: plain PUTs (overwrites) pass, creates fail
    def invert(ss: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for s in ss:
            if "Null" in s.get("Condition", {}):
                s["Condition"]["Null"]["s3:if-none-match"] = "false"
        return ss

    problems = protection_problems(planted(resources, "storage-curated", invert), "dev", done)
    assert f"the bucket policy lets pipeline s3:PutObject {archive}" in problems
    assert any(
        p.startswith("the pipeline cannot s3:PutObject") and record.rsplit("/", 1)[0] in p
        for p in problems
    )

    # least privilege, not least function: the delete validate needs, removed
    def no_curated_delete(ss: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for s in ss:
            if s["Resource"] == [f"{curated}/v1/{layout.CURATED}*"]:
                s["Action"] = [a for a in s["Action"] if a != "s3:DeleteObject"]
        return ss

    problems = protection_problems(
        planted(resources, "identity-pipeline", no_curated_delete), "dev", done
    )
    bars = object_arn(config, layout.curated("BTCUSDT", "1m", DAY))
    assert problems == [f"the pipeline cannot s3:DeleteObject {bars}"]
