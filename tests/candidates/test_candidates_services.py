"""One candidate through dev → staging → prod on the real services (the CI's instance when there
is one): created in dev by a real gate promotion (``mlops run``: S3 storage, the MLflow server),
then moved by ``mlops candidates`` run with each target env's own settings — its own bucket on
the services' S3, its own MLflow (a sqlite store: the services run one MLflow server, which is
dev's; staging's and prod's never see it), its own overlay in the GitOps remote. A move waits for
the soak, for its serving image in the target's registry (the stand-in in each env's bucket:
refused until ``mlops images replicate`` copies it from dev) and, into prod, for an approval;
the bytes read back from every env's bucket are the artifact's digest; the lineage prints the
chain env by env; a second candidate rolled back in staging is refused for prod."""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from pipelines.decisions.pin import read_pin
from tests.conftest import MIRROR_START, run_cli
from tests.services.cluster import (
    Services,
    gitops_remote,
    mlops_run,
    pipeline_env,
    registry,
    shared_services,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800)]  # two training runs, ~16 commands

START = MIRROR_START.isoformat()
FIRST_END = (MIRROR_START + timedelta(days=4)).isoformat()
SECOND_END = (MIRROR_START + timedelta(days=5)).isoformat()


@pytest.fixture(scope="module")
def services() -> Any:
    with shared_services() as shared:
        yield shared


def cli(env: dict[str, str], *args: str, ok: bool = True) -> Any:
    began = time.monotonic()
    done = run_cli(list(args), env)
    print(f"mlops {' '.join(args[:3])} ({env['MLOPS_ENV']}): {time.monotonic() - began:.1f}s")
    if not ok:
        assert done.returncode == 1, done.stdout + done.stderr
        return " ".join(done.stderr.split())
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout) if "--json" in args else done.stdout


def bucket_bytes(services: Services, url: str, key: str) -> bytes:
    bucket, _, root = url.removeprefix("s3://").partition("/")
    body = services.s3().get_object(Bucket=bucket, Key=f"{root}/{key}")["Body"]
    data: bytes = body.read()
    return data


def remote_pin(root: Path, remote: Path, env: str) -> Any:
    clone = root / f"clone-{time.monotonic_ns()}"
    subprocess.run(["git", "clone", "-q", str(remote), str(clone)], check=True)
    return read_pin(clone / "platform" / "envs" / env / "kustomization.yaml")


@pytest.fixture(scope="module")
def chain(
    services: Services, mirror_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """Everything the chain did, in order, each outcome kept for the tests to check."""
    root = tmp_path_factory.mktemp("candidates")
    remote = gitops_remote(root)
    dev = pipeline_env(services, root / "dev", MLOPS_GITOPS_REMOTE=str(remote))
    layout_root = dev["MLOPS_STORAGE_URL"].rsplit("/", 1)[-1]
    s3 = services.s3()
    for bucket in ("staging", "prod"):  # each env's own bucket
        if bucket not in {b["Name"] for b in s3.list_buckets()["Buckets"]}:
            s3.create_bucket(Bucket=bucket)
    urls = {
        "dev": dev["MLOPS_STORAGE_URL"],
        **{env: f"s3://{env}/{layout_root}" for env in ("staging", "prod")},
    }
    dev["MLOPS_CANDIDATE_STAGES"] = json.dumps(urls)

    def env_of(name: str, **more: str) -> dict[str, str]:
        (root / name).mkdir()
        return {
            **dev,
            "MLOPS_ENV": name,
            "MLOPS_HOME": str(root / name),
            "MLOPS_STORAGE_URL": urls[name],
            "MLOPS_RAW_STORAGE_URL": f"{urls[name]}-raw",
            "MLFLOW_TRACKING_URI": f"sqlite:///{root / name}/mlflow.db",
            "MLOPS_TRAINS": "false",
            **more,
        }

    staging = env_of("staging", MLOPS_CANDIDATE_SOAK_HOURS="0")
    prod = env_of("prod", MLOPS_CANDIDATE_SOAK_HOURS="0", MLOPS_CANDIDATE_REQUIRES_APPROVAL="true")
    found: dict[str, Any] = {"root": root, "remote": remote, "urls": urls}
    found["envs"] = {"dev": dev, "staging": staging, "prod": prod}
    found["run"] = mlops_run(dev, mirror_root, START, FIRST_END)
    listed = cli(dev, "candidates", "list", "--json")
    first = found["first"] = listed["candidates"][0]
    found["listed_in_dev"] = listed
    soaking = {**staging, "MLOPS_CANDIDATE_SOAK_HOURS": "24"}
    found["refused_soak"] = cli(
        soaking, "candidates", "promote", first["id"], "--to", "staging", ok=False
    )
    found["staging_bucket_after_refusal"] = services.keys("staging", f"{layout_root}/")
    found["refused_image"] = cli(
        staging, "candidates", "promote", first["id"], "--to", "staging", ok=False
    )
    found["staging_bucket_after_image_refusal"] = services.keys("staging", f"{layout_root}/")
    found["replicated"] = {  # what ECR replication does from dev to every later account
        env: cli(dev, "images", "replicate", "--to", env, "--json") for env in ("staging", "prod")
    }
    found["staging"] = cli(
        staging, "candidates", "promote", first["id"], "--to", "staging", "--json"
    )
    found["refused_approval"] = cli(
        prod, "candidates", "promote", first["id"], "--to", "prod", ok=False
    )
    found["approval"] = cli(
        prod, "candidates", "approve", first["id"], "--reason", "soaked", "--by", "al", "--json"
    )
    found["prod"] = cli(prod, "candidates", "promote", first["id"], "--to", "prod", "--json")
    found["lineage"] = cli(prod, "models", "lineage", str(found["prod"]["version"]), "--json")
    found["lineage_text"] = cli(prod, "models", "lineage", str(found["prod"]["version"]))
    found["history"] = cli(prod, "models", "history", "--json")
    # a second candidate: dev's champion alias is gone, so the next run's gate promotes its
    # version (the bootstrap promotion); it reaches staging, is rolled back there
    name = dev["MLOPS_MODEL_NAME"]
    registry(dev).delete_registered_model_alias(name, "champion")
    found["second_run"] = mlops_run(dev, mirror_root, START, SECOND_END)
    second = next(
        c for c in cli(dev, "candidates", "list", "--json")["candidates"] if c["id"] != first["id"]
    )
    found["second"] = second
    cli(staging, "candidates", "promote", second["id"], "--to", "staging", "--json")
    found["rollback"] = cli(staging, "decisions", "rollback", "--json")
    found["refused_rolled_back"] = cli(
        prod, "candidates", "promote", second["id"], "--to", "prod", ok=False
    )
    found["final"] = cli(prod, "candidates", "list", "--json")
    return found


def test_a_real_gate_promotion_creates_the_candidate_in_dev(chain: dict[str, Any]) -> None:
    gate, package = chain["run"]["steps"]["gate"], chain["run"]["steps"]["package"]
    assert gate["decision"] == "promote"
    first = chain["first"]
    assert first["model_sha256"] == package["model_sha256"] and first["origin"] == "dev v1"
    dev = first["envs"]["dev"]
    assert dev["state"] == "serving" and dev["version"] == 1
    assert dev["events"][0]["record"] == gate["record"]
    assert {env: s["state"] for env, s in first["envs"].items()} == {
        "dev": "serving",
        "staging": "absent",
        "prod": "absent",
    }


def test_staging_waits_for_the_soak_then_holds_the_same_bytes(
    chain: dict[str, Any], services: Services
) -> None:
    assert "needs 24 h of soak there" in chain["refused_soak"]
    assert chain["staging_bucket_after_refusal"] == {}  # a refused move copies nothing
    moved = chain["staging"]
    assert moved["env"] == "staging" and moved["version"] == 1 and not moved["reused"]
    digest = chain["first"]["model_sha256"]
    for env, url in chain["urls"].items():  # read back from each env's own bucket
        key = next(k for k in moved["artifacts"] if k.endswith(".bentomodel"))
        assert hashlib.sha256(bucket_bytes(services, url, key)).hexdigest() == digest, env
    for key, sha in moved["artifacts"].items():
        assert hashlib.sha256(bucket_bytes(services, chain["urls"]["dev"], key)).hexdigest() == sha
    pin = remote_pin(chain["root"], chain["remote"], "staging")
    assert pin.model_sha256 == digest and pin.model_version == 1


def test_a_move_waits_for_the_serving_image_in_the_targets_registry(chain: dict[str, Any]) -> None:
    digest = chain["first"]["serving_image_digest"]
    refused = chain["refused_image"]
    assert f"serving image {digest} is not in {chain['urls']['staging']}/" in refused
    assert "mlops images replicate --to staging" in refused
    assert chain["staging_bucket_after_image_refusal"] == {}  # nothing changed in staging
    assert all(r["copied"] == [digest] for r in chain["replicated"].values())
    for env in ("staging", "prod"):  # the exact image dev's candidate was created on
        pin = remote_pin(chain["root"], chain["remote"], env)
        assert pin.image_digest == digest and pin.image_tag == chain["first"]["serving_image"]


def test_prod_needs_an_approval_and_registers_with_lineage_in_its_own_mlflow(
    chain: dict[str, Any],
) -> None:
    assert "prod needs an approval in its ledger" in chain["refused_approval"]
    assert chain["approval"]["inputs"]["by"] == "al"
    assert chain["approval"]["reasons"] == ["soaked"]
    prod = chain["prod"]
    client = registry(chain["envs"]["prod"])
    tags = client.get_model_version(chain["envs"]["dev"]["MLOPS_MODEL_NAME"], "1").tags
    assert tags["mlops.candidate"] == chain["first"]["id"]
    assert tags["mlops.source_env"] == "staging" and tags["mlops.origin_env"] == "dev"
    assert tags["mlops.origin_run_id"] == chain["run"]["steps"]["train"]["mlflow_run_id"]
    assert tags["model_sha256"] == chain["first"]["model_sha256"]
    assert prod["version"] == 1 and prod["gitops_commit"]
    assert remote_pin(chain["root"], chain["remote"], "prod").model_sha256 == tags["model_sha256"]
    kinds = [(h["kind"], h["decision"]) for h in chain["history"]["history"]]
    assert kinds == [("candidate", "approve"), ("candidate", "promote")]


def test_lineage_prints_the_chain_env_by_env(chain: dict[str, Any]) -> None:
    lineage = chain["lineage"]
    assert [link["env"] for link in lineage["chain"]] == ["dev", "staging", "prod"]
    assert lineage["chain"][-1]["approved_by"] == ["al"]
    assert lineage["gate_record"] == chain["run"]["steps"]["gate"]["record"]
    text = chain["lineage_text"]
    assert text.index("→ dev") < text.index("→ staging") < text.index("→ prod")


def test_a_candidate_rolled_back_in_staging_is_refused_for_prod(chain: dict[str, Any]) -> None:
    assert chain["second_run"]["steps"]["gate"]["decision"] == "promote"
    rollback = chain["rollback"]
    assert rollback["decision"] == "rollback"
    assert f"was rolled back in staging ({rollback['record']}" in chain["refused_rolled_back"]
    states = {c["id"]: c["envs"] for c in chain["final"]["candidates"]}
    second, first = states[chain["second"]["id"]], states[chain["first"]["id"]]
    assert second["staging"]["state"] == "rolled back" and second["prod"]["state"] == "absent"
    assert first["staging"]["state"] == "serving" and first["prod"]["state"] == "serving"
