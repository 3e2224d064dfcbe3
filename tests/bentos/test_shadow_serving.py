"""Shadow on a real server, started as a pod starts (`bentos.start`): the champion and a
challenger pinned, both fetched from storage and checked; every response is the champion's, and
the inference log holds both answers under one request id. A challenger that cannot be loaded
leaves the champion serving, shadow off and the reason shown."""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import yaml

from pipelines import layout
from pipelines.decisions.inference import read_inference
from pipelines.ml.dataset import read_dataset
from pipelines.storage import LocalStorage
from tests.bentos.test_start import pod_env, start
from tests.services import free_port, stop, wait_http

pytestmark = pytest.mark.integration

SHIFT = 0.7
"""The challenger is the champion with its raw score shifted by this: answers differ on every
row, and are known exactly."""


def make_challenger(home: Path, storage: Path, store: Path) -> tuple[str, Any, Any]:
    """Version 2 of the model, derived from version 1: its archive in `storage` (the package
    step's key); returns its sha256 and both estimators (champion, challenger)."""
    import hashlib

    import bentoml
    import skops.io
    from bentoml._internal.models.model import ModelStore

    from bentos.runtime import load_estimator
    from pipelines.ml.modeling import load_skops_model

    # a store of its own, named to BentoML's calls: BentoML resolves BENTOML_HOME once per
    # process, so an environment variable set here would be ignored after another in-process
    # test imported it (the model would land in that test's store)
    store.mkdir(parents=True)
    scratch = ModelStore(str(store))
    try:
        v1 = bentoml.models.import_model(
            str(storage / layout.model_archive("market-direction", 1)), _model_store=scratch
        )
        champion = load_estimator(v1)
        root = Path(v1.path)
        copy = root.with_name("v2")
        shutil.copytree(root, copy)
        info = yaml.safe_load((copy / "model.yaml").read_text())
        info["version"] = "v2"
        for key, value in info["metadata"].items():
            if isinstance(value, str) and '"model_version"' in value:
                info["metadata"][key] = value.replace('"model_version":"1"', '"model_version":"2"')
        (copy / "model.yaml").write_text(yaml.safe_dump(info))
        mlflow_dir = copy / "mlflow_model"
        flavor = yaml.safe_load((mlflow_dir / "MLmodel").read_text())["flavors"]["sklearn"]
        estimator = load_skops_model(mlflow_dir, "v2")
        hgb = estimator.steps[-1][1] if hasattr(estimator, "steps") else estimator
        hgb._baseline_prediction = hgb._baseline_prediction + SHIFT
        skops.io.dump(estimator, mlflow_dir / str(flavor["pickled_model"]))
        challenger = load_skops_model(mlflow_dir, "v2")  # loads with our skops allow-list
        archive = storage / layout.model_archive("market-direction", 2)
        bentoml.models.export_model("market-direction:v2", str(archive), _model_store=scratch)
    finally:
        shutil.rmtree(store)
    return hashlib.sha256(archive.read_bytes()).hexdigest(), champion, challenger


@pytest.fixture(scope="module")
def shadow_storage(
    trained: tuple[Path, dict[str, Any]], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, str, Any, Any]:
    """A copy of the trained storage with a challenger's archive beside the champion's."""
    home, _ = trained
    root = tmp_path_factory.mktemp("shadow")
    storage = root / "data"
    shutil.copytree(home / "data" / "bentos", storage / "bentos")
    digest, champion, challenger = make_challenger(home, storage, root / "scratch-store")
    return storage, digest, champion, challenger


def test_the_response_is_the_champions_and_the_log_holds_both_answers(
    trained: tuple[Path, dict[str, Any]], shadow_storage: tuple[Path, str, Any, Any], tmp_path: Path
) -> None:
    home, summary = trained
    storage, digest, champion, challenger = shadow_storage
    features = summary["steps"]["features"]["features"]
    env = {
        **pod_env(home, storage, 1, summary["steps"]["package"]["model_sha256"], tmp_path / "b"),
        "MLOPS_CHALLENGER_VERSION": "2",
        "MLOPS_CHALLENGER_SHA256": digest,
    }
    dataset = read_dataset(LocalStorage(home / "data"), summary["steps"]["features"]["prefix"])
    frame = dataset.tail(6)
    rows = [
        {
            **{f: float(r[f]) for f in features},
            "symbol": r["symbol"],
            "open_time": int(r["open_time"].value // 1_000_000),
        }
        for _, r in frame.iterrows()
    ]
    matrix = frame[features].to_numpy(dtype=np.float64)
    expected_champion = champion.predict_proba(matrix)[:, 1]
    expected_challenger = challenger.predict_proba(matrix)[:, 1]
    assert np.abs(expected_champion - expected_challenger).min() > 0.01, "the models differ"
    port = free_port()
    process = start(env, port, tmp_path / "pod.log")
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/readyz", process, timeout=120)
        meta = httpx.get(f"{url}/metadata", timeout=10).json()
        assert meta["model_version"] == "1"
        assert meta["shadow"] == {"state": "on", "model_version": "2", "error": None}
        ids = ["shadow-a", "shadow-b"]
        for request_id in ids:
            answer = httpx.post(
                f"{url}/predict",
                json={"rows": rows},
                headers={"x-request-id": request_id},
                timeout=30,
            )
            assert answer.status_code == 200
            body = answer.json()
            assert {a["model_version"] for a in body} == {"1"}
            np.testing.assert_allclose([a["probability_up"] for a in body], expected_champion)
        os.kill(process.pid, signal.SIGTERM)  # rows are written at shutdown (flush: 1 h)
        assert process.wait(timeout=60) == 0
    finally:
        stop(process)
    assert "market-direction:v2 in shadow" in (tmp_path / "pod.log").read_text()
    logged = read_inference(LocalStorage(storage), "local", "1", role=None).to_pandas()
    assert sorted(logged["role"].unique()) == ["served", "shadow"]
    for request_id in ids:
        one = logged[logged["request_id"] == request_id].sort_values("row")
        served, shadow = one[one["role"] == "served"], one[one["role"] == "shadow"]
        assert served["model_version"].unique().tolist() == ["1"]
        assert shadow["model_version"].unique().tolist() == ["2"]
        np.testing.assert_allclose(served["probability_up"], expected_champion)
        np.testing.assert_allclose(shadow["probability_up"], expected_challenger)
        assert (served["open_time"].to_numpy() == shadow["open_time"].to_numpy()).all()


def test_a_challenger_that_cannot_be_loaded_leaves_the_champion_serving(
    trained: tuple[Path, dict[str, Any]], shadow_storage: tuple[Path, str, Any, Any], tmp_path: Path
) -> None:
    home, summary = trained
    storage, _, _, _ = shadow_storage
    features = summary["steps"]["features"]["features"]
    env = {
        **pod_env(home, storage, 1, summary["steps"]["package"]["model_sha256"], tmp_path / "b"),
        "MLOPS_CHALLENGER_VERSION": "2",
        "MLOPS_CHALLENGER_SHA256": "0" * 64,  # not the archive's: refused
    }
    port = free_port()
    process = start(env, port, tmp_path / "pod.log")
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/readyz", process, timeout=120)
        meta = httpx.get(f"{url}/metadata", timeout=10).json()
        assert meta["model_version"] == "1" and meta["shadow"]["state"] == "off"
        answer = httpx.post(
            f"{url}/predict", json={"rows": [dict.fromkeys(features, 0.1)]}, timeout=30
        )
        assert answer.status_code == 200
    finally:
        stop(process)
    log = (tmp_path / "pod.log").read_text()
    assert "warning: challenger not loaded, shadow is off" in log
    assert "but the pin names " + "0" * 64 in log
    assert "serving market-direction:v1 (sha256 checked) on" in log
