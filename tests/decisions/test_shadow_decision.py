"""The shadow decision end to end on the local services (S3 storage, the MLflow server, a bare
GitOps remote): a champion and a challenger trained by `mlops run`, live requests logged by the
inference log with the challenger's answers in shadow, and `mlops decisions monitor` deciding.
A better challenger is promoted through the gate's path (aliases, GitOps pin, ledger); a worse
one is rejected and stays rejected; untrusted shadow rows are not judged."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tests.conftest import MIRROR_START, run_cli
from tests.services.cluster import (
    Services,
    gitops_remote,
    mlops_run,
    pipeline_env,
    registry,
    remote_log,
    shared_services,
)

pytestmark = pytest.mark.integration

BAR_MS = 60_000
START = MIRROR_START.isoformat()
LIVE_DAY = MIRROR_START + timedelta(days=3)
"""The day whose bars are asked live (curated by every run below)."""


@pytest.fixture(scope="module")
def services() -> Any:
    with shared_services() as shared:
        yield shared


@dataclass
class Env:
    root: Path
    remote: Path
    env: dict[str, str]
    runs: list[dict[str, Any]]

    def cli(self, *args: str) -> Any:
        import json

        done = run_cli(list(args), self.env)
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads(done.stdout)

    def storage(self) -> Any:
        """The env's storage, opened in this process (the fixture set its S3 variables)."""
        from pipelines.storage import open_storage

        return open_storage(self.env["MLOPS_STORAGE_URL"], self.env["MLOPS_RAW_STORAGE_URL"])

    def aliases(self) -> dict[str, int]:
        model = registry(self.env).get_registered_model(self.env["MLOPS_MODEL_NAME"])
        return {a: int(v) for a, v in model.aliases.items()}

    def train_challenger(self, end_day: int, **extra: str) -> int:
        """One more run up to its package step (no gate): registered with the ``challenger``
        alias and packaged (what a promotion pins), for the shadow to judge."""
        end = (MIRROR_START + timedelta(days=end_day)).isoformat()
        summary = mlops_run({**self.env, **extra}, self.mirror, START, end, until="package")
        self.runs.append(summary)
        return int(summary["steps"]["register"]["version"])

    mirror: Path = Path()


def remote_model_env(remote: Path) -> dict[str, str]:
    """What the remote's ``main`` pins for dev in ``model.env`` (the serving-model ConfigMap)."""
    import subprocess

    done = subprocess.run(
        ["git", "--git-dir", str(remote), "show", "main:platform/envs/dev/model.env"],
        capture_output=True,
        text=True,
        check=True,
    )
    lines = [line.split("=", 1) for line in done.stdout.splitlines() if "=" in line]
    return {key: value for key, value in lines if not key.startswith("#")}


def live_rows(e: Env) -> tuple[pd.DataFrame, np.ndarray, list[str]]:
    """The labelled bars of `LIVE_DAY` and the features a client computes for them."""
    from pipelines.ml.dataset import read_dataset
    from pipelines.ml.features import FeatureConfig
    from pipelines.settings import Settings
    from tests.support.client_features import client_features

    storage = e.storage()
    features = e.runs[-1]["steps"]["features"]["features"]
    rows = read_dataset(storage, e.runs[-1]["steps"]["features"]["prefix"])
    part = rows[rows["open_time"].dt.date == LIVE_DAY].head(1200)
    interval = e.runs[-1]["params"]["interval"]
    settings = Settings()
    config = FeatureConfig(interval=settings.model_interval or interval, horizon=settings.horizon)
    return part, client_features(storage, part, features, interval, config), features


def good(label: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return np.asarray(0.6 + rng.uniform(0, 0.3, len(label)) * (2 * label - 1))


def bad(label: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return np.asarray(0.95 - 0.9 * label)


def log_live(
    e: Env, champion: int, challenger: int, champion_good: bool, tag: str, tamper: bool = False
) -> None:
    """Requests for each bar of the live day, answered live by the champion, logged by the
    inference log with the challenger scoring in shadow (its answers keyed by the row).
    `tamper`: the shadow rows' features are not those of the curated bars (untrusted)."""
    from bentos.inference_log import Chunk, InferenceLog
    from bentos.shadow import Shadow

    part, matrix, features = live_rows(e)
    label = part["label"].to_numpy(dtype=float)
    rng = np.random.default_rng(len(tag))
    served = good(label, rng) if champion_good else bad(label, rng)
    shadowed = bad(label, rng) if champion_good else good(label, rng)
    by_row = {row.tobytes(): p for row, p in zip(matrix, shadowed, strict=True)}

    def score(m: np.ndarray) -> np.ndarray:
        return np.asarray([by_row.get(r.tobytes(), 0.5) for r in m])

    logger = InferenceLog(
        e.storage(), "dev", str(champion), features, shadow=Shadow(str(challenger), score)
    )
    open_ms = np.asarray([int(t.value // 1_000_000) for t in part["open_time"]])
    symbols = part["symbol"].tolist()
    for k in range(len(part)):
        logger.append(
            Chunk(
                f"{tag}-{k}",
                "predict",
                int(open_ms[k]) + BAR_MS + 500,
                matrix[k : k + 1] * (1.5 if tamper else 1.0),
                served[k : k + 1],
                [symbols[k]],
                [int(open_ms[k])],
            )
        )
    logger.close()


@pytest.fixture(scope="module")
def bootstrapped(
    services: Services, mirror_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Env]:
    root = tmp_path_factory.mktemp("shadow-decision")
    remote = gitops_remote(root)
    env = pipeline_env(services, root / "home", MLOPS_GITOPS_REMOTE=str(remote))
    first = mlops_run(env, mirror_root, START, (MIRROR_START + timedelta(days=4)).isoformat())
    assert first["steps"]["gate"]["decision"] == "promote"  # bootstrap: v1 serves
    e = Env(root, remote, env, [first])
    e.mirror = mirror_root
    with pytest.MonkeyPatch.context() as patch:  # this process opens the env's S3 storage
        for name in ("AWS_ENDPOINT_URL_S3", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            patch.setenv(name, env[name])
        patch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        yield e


@pytest.mark.timeout(1800)  # three training runs: ~12 min at a load of 19 on 2 cores
def test_a_better_challenger_in_shadow_is_promoted_then_a_worse_one_rejected(
    bootstrapped: Env,
) -> None:
    from pipelines.decisions import ledger

    e = bootstrapped
    v2 = e.train_challenger(5)
    assert e.aliases() == {"champion": 1, "challenger": v2}
    # the challenger is pinned beside the champion: what serving fetches and scores in shadow
    started = e.cli("decisions", "shadow", "--version", str(v2), "--json")
    assert started["decision"] == "start"
    pinned = remote_model_env(e.remote)
    assert pinned["MLOPS_MODEL_VERSION"] == "1" and pinned["MLOPS_CHALLENGER_VERSION"] == str(v2)
    v2_sha = pinned["MLOPS_CHALLENGER_SHA256"]
    assert len(v2_sha) == 64 and v2_sha != pinned["MLOPS_MODEL_SHA256"]
    assert remote_log(e.remote)[0].startswith("shadow: start in dev")
    again = e.cli("decisions", "shadow", "--version", str(v2), "--json")
    assert again["record"] == started["record"]  # already pinned: nothing written twice
    # untrusted shadow rows first: counted, never judged
    log_live(e, 1, v2, champion_good=False, tag="tampered", tamper=True)
    held = e.cli("decisions", "monitor", "--json")["shadow"]
    assert held["decision"] == "continue" and held["rows"] == 0
    assert e.aliases()["champion"] == 1
    # honest traffic: the challenger's answers are the better ones
    log_live(e, 1, v2, champion_good=False, tag="better")
    promoted = e.cli("decisions", "monitor", "--json")["shadow"]
    assert promoted["decision"] == "promote", promoted
    assert promoted["interval"][1] < 0 and promoted["rows"] > 0
    assert e.aliases() == {"champion": v2, "previous": 1, "challenger": v2}
    assert remote_log(e.remote)[0].startswith(f"shadow: promote {e.env['MLOPS_MODEL_NAME']} v{v2}")
    # the promoted challenger serves alone: no challenger beside it
    assert remote_model_env(e.remote) == {
        "MLOPS_MODEL_VERSION": str(v2),
        "MLOPS_MODEL_SHA256": v2_sha,
    }
    storage = e.storage()
    shadow_records = [r for r in ledger.read_all(storage, "dev") if r.kind == "shadow"]
    assert [r.decision for r in shadow_records] == ["start", "continue", "promote"]
    records = shadow_records[1:]
    # the tampered rows stay in the log, untrusted, on every run; the honest ones are judged
    for record in records:
        assert record.metrics["trust"]["challenger"]["untrusted"] == {"features_differ": 1200}
    assert records[0].metrics["trust"]["challenger"]["trusted_rows"] == 0
    assert records[-1].metrics["trust"]["challenger"]["trusted_rows"] == 1200
    assert len(records[-1].reports) == 2
    assert all(storage.exists(f"{p}/summary.json") for p in records[-1].reports)
    # a worse challenger next: rejected, nothing moves, and the verdict stands
    v3 = e.train_challenger(5, MLOPS_MODEL_PARAMS='{"max_iter": 10}')
    refused = run_cli(["decisions", "shadow", "--version", str(v2)], e.env)
    assert refused.returncode != 0 and f"version {v2} is the champion" in refused.stderr
    assert e.cli("decisions", "shadow", "--version", str(v3), "--json")["decision"] == "start"
    assert remote_model_env(e.remote)["MLOPS_CHALLENGER_VERSION"] == str(v3)
    log_live(e, v2, v3, champion_good=True, tag="worse")
    rejected = e.cli("decisions", "monitor", "--json")["shadow"]
    assert rejected["decision"] == "reject" and rejected["interval"][0] > 0, rejected
    assert e.aliases() == {"champion": v2, "previous": 1, "challenger": v3}
    # the rejected challenger is no longer pinned: serving drops it on its next roll
    assert remote_log(e.remote)[0].startswith(f"shadow: reject {e.env['MLOPS_MODEL_NAME']} v{v3}")
    assert remote_model_env(e.remote) == {
        "MLOPS_MODEL_VERSION": str(v2),
        "MLOPS_MODEL_SHA256": v2_sha,
    }
    again = e.cli("decisions", "monitor", "--json")["shadow"]
    assert again["decision"] == "reject" and again["reused"] is True
