"""Serving as a user runs it: `mlops run` (with its package step), `mlops bento build`, then
`mlops serve` — a real `bentoml serve` on 127.0.0.1 — answering every endpoint, refusing bad
input with a 4xx that names the field, and logging every prediction."""

from __future__ import annotations

import json
import os
import re
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from bentos.runtime import PYTHON_IMAGE, REQUIREMENTS, SERVICE_ENVS, UV_VERSION
from pipelines.archive import KLINE_COLUMNS
from pipelines.data.bars import load_curated
from pipelines.decisions.inference import read_inference
from pipelines.ml.dataset import read_dataset
from pipelines.ml.features import FeatureConfig, compute_features
from pipelines.storage import LocalStorage
from tests.bentos.conftest import training_env
from tests.conftest import MIRROR_DAYS, MIRROR_START, run_cli
from tests.services import bento_server

pytestmark = pytest.mark.integration

END = MIRROR_START + timedelta(days=MIRROR_DAYS - 1)


@dataclass
class Served:
    url: str
    home: Path
    env: dict[str, str]
    summary: dict[str, Any]
    process: Any
    built: dict[str, Any]

    @property
    def storage(self) -> LocalStorage:
        return LocalStorage(self.home / "data")


@pytest.fixture(scope="module")
def served(trained: tuple[Path, dict[str, Any]]) -> Iterator[Served]:
    home, summary = trained
    env = training_env(home)
    built = run_cli(["bento", "build", "--alias", "champion", "--json"], env)
    assert built.returncode == 0, built.stderr[-3000:]
    document = json.loads(built.stdout)
    assert document["bento"] == summary["steps"]["package"]["bento"]
    assert document["built"] is False, "the package step already built it: reused, not rebuilt"
    with bento_server(env, home / "serve.log") as (url, process):
        yield Served(url, home, env, summary, process, document)


def post(url: str, body: Any, content_type: str = "application/json") -> httpx.Response:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(url, content=data, headers={"Content-Type": content_type}, timeout=30)


def feature_rows(served: Served, n: int) -> pd.DataFrame:
    prefix = served.summary["steps"]["features"]["prefix"]
    return read_dataset(served.storage, prefix).tail(n)


def as_rows(frame: pd.DataFrame, features: list[str]) -> list[dict[str, Any]]:
    return [
        {
            **{f: float(r[f]) for f in features},
            "symbol": r["symbol"],
            "open_time": int(r["open_time"].value // 1_000_000),
        }
        for _, r in frame.iterrows()
    ]


def kline_dicts(bars: pd.DataFrame) -> list[dict[str, Any]]:
    """Curated bars as the JSON klines a client sends (epoch-ms times, archive column names)."""
    out = []
    for _, bar in bars.iterrows():
        row: dict[str, Any] = {}
        for column in KLINE_COLUMNS:
            if column not in bar.index:  # curated bars drop `ignore`; it is optional
                continue
            value = bar[column]
            if isinstance(value, pd.Timestamp):
                row[column] = int(value.value // 1_000_000)
            elif column in ("open_time", "close_time", "count"):
                row[column] = int(value)
            else:
                row[column] = float(value)
        out.append(row)
    return out


def registry_probabilities(served: Served, matrix: np.ndarray) -> np.ndarray:
    import mlflow.sklearn

    from pipelines.ml.tracking import configure
    from pipelines.settings import Settings

    configure(Settings(home=served.home))
    model = mlflow.sklearn.load_model("models:/market-direction@champion")
    frame = pd.DataFrame(matrix, columns=served.summary["steps"]["features"]["features"])
    return np.asarray(model.predict_proba(frame)[:, 1])


def test_the_run_packages_the_new_version(served: Served) -> None:
    package = served.summary["steps"]["package"]
    assert package["status"] == "succeeded" and package["model_version"] == 1
    assert package["bento"].startswith("market-direction:v1-")
    key = package["archive"].removeprefix(str(served.home / "data") + "/")
    assert served.storage.exists(key)


def test_the_generated_dockerfile_is_pinned_minimal_and_non_root(served: Served) -> None:
    bento = Path(served.built["path"])
    dockerfile = (bento / "env/docker/Dockerfile").read_text()
    lines = [line.strip() for line in dockerfile.splitlines()]
    assert f"FROM {PYTHON_IMAGE} AS base-container" in lines
    assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+", PYTHON_IMAGE), "Python pinned to a patch"
    assert "apt-get" not in dockerfile and "build-essential" not in dockerfile
    assert f"RUN pip install --no-cache-dir uv=={UV_VERSION}" in lines
    last = [line for line in lines if line][-2:]
    assert last == ["USER bentoml", 'ENTRYPOINT [ "/home/bentoml/bento/env/docker/entrypoint.sh" ]']
    assert "ARG BENTO_USER_UID=1034" in lines  # non-root uid, matched by the pod securityContext
    for name, value in [(e["name"], e["value"]) for e in SERVICE_ENVS]:
        assert f"ARG {name}={value}" in lines and f"ENV {name}=${name}" in lines
    assert "ARG MLFLOW_ALLOW_PICKLE_DESERIALIZATION=false" in lines
    assert "ARG OMP_NUM_THREADS=1" in lines
    pins = (bento / "env/python/requirements.txt").read_text().split("\n")
    pins = [p for p in pins if p and not p.startswith("#")]
    ours = [p for p in REQUIREMENTS.read_text().split("\n") if p and not p.startswith("#")]

    def pin(line: str) -> str:  # BentoML rewrites environment markers' quoting
        return line.split(";")[0].strip()

    assert [pin(p) for p in pins[: len(ours)]] == [pin(p) for p in ours]
    assert all("==" in p for p in pins), [p for p in pins if "==" not in p]


def test_serving_requirements_are_fresh_from_the_lock() -> None:
    done = run_cli(["bento", "requirements", "--check"])
    assert done.returncode == 0, done.stderr


def test_metadata_describes_the_served_version(served: Served) -> None:
    meta = httpx.get(f"{served.url}/metadata").json()
    features = served.summary["steps"]["features"]
    assert meta["model_name"] == "market-direction" and meta["model_version"] == "1"
    assert "champion" in meta["aliases"]
    assert meta["features"] == features["features"]
    assert meta["dataset_hash"] == features["dataset_hash"]
    assert meta["interval"] == "1m" and meta["horizon"] == 12
    assert meta["eval_start"] == served.summary["steps"]["evaluate"]["eval_start"]
    assert set(meta["feature_types"]) == set(features["features"])


def test_predict_and_predict_batch_answer_what_the_registry_model_says(served: Served) -> None:
    features = served.summary["steps"]["features"]["features"]
    frame = feature_rows(served, 50)
    expected = registry_probabilities(served, frame[features].to_numpy())
    for endpoint in ("predict", "predict_batch"):
        answer = post(f"{served.url}/{endpoint}", {"rows": as_rows(frame, features)})
        assert answer.status_code == 200, answer.text
        got = answer.json()
        assert [p["model_version"] for p in got] == ["1"] * 50
        np.testing.assert_allclose([p["probability_up"] for p in got], expected, rtol=1e-12)
        assert [p["direction"] for p in got] == ["up" if p >= 0.5 else "down" for p in expected]


def test_concurrent_batched_requests_each_get_their_own_rows(served: Served) -> None:
    features = served.summary["steps"]["features"]["features"]
    frame = feature_rows(served, 64)
    expected = registry_probabilities(served, frame[features].to_numpy())
    rows = as_rows(frame, features)

    def one(k: int) -> list[float]:
        answer = post(f"{served.url}/predict_batch", {"rows": rows[k * 4 : k * 4 + 4]})
        assert answer.status_code == 200, answer.text
        return [p["probability_up"] for p in answer.json()]

    with ThreadPoolExecutor(16) as pool:
        got = list(pool.map(one, range(16)))
    np.testing.assert_allclose(np.concatenate(got), expected, rtol=1e-12)


def test_predict_klines_computes_the_training_features(served: Served, mirror_root: Path) -> None:
    """Raw klines in → the same features the training dataset has for that bar (no skew)."""
    bars = load_curated(served.storage, "BTCUSDT", "1m", END, END).tail(60)
    klines = kline_dicts(bars)
    answer = post(f"{served.url}/predict_klines", {"symbol": "btcusdt", "klines": klines})
    assert answer.status_code == 200, answer.text
    got = answer.json()
    assert got["symbol"] == "BTCUSDT" and got["open_time"] == klines[-1]["open_time"]
    features = served.summary["steps"]["features"]["features"]
    prefix = served.summary["steps"]["features"]["prefix"]
    scoring = read_dataset(served.storage, prefix, "scoring")
    last = scoring[
        (scoring["symbol"] == "BTCUSDT") & (scoring["open_time"] == bars["open_time"].iloc[-1])
    ]
    assert len(last) == 1, "the last bar of the range is a scoring row of the dataset"
    expected = registry_probabilities(served, last[features].to_numpy())
    assert got["probability_up"] == pytest.approx(float(expected[0]), rel=1e-9)
    offline = compute_features(
        bars.reset_index(drop=True), FeatureConfig(interval="1m", horizon=12)
    )
    # the dataset keeps features as float32 (memory): serving's float64 features round to them,
    # within one float32 ulp (an unrounded skew would be far larger)
    eps = float(np.finfo(np.float32).eps)
    np.testing.assert_allclose(offline[features].iloc[-1], last[features].iloc[0], rtol=eps)


def bad_inputs(features: list[str]) -> list[tuple[str, Any, str, int, list[Any] | None]]:
    """(case, body, content type, status, loc named in the answer)."""
    good = dict.fromkeys(features, 0.1)
    first = features[0]
    klines = {"symbol": "BTCUSDT", "klines": []}
    return [
        (
            "missing feature",
            {"rows": [{k: v for k, v in good.items() if k != first}]},
            "application/json",
            400,
            ["rows", 0, first],
        ),
        (
            "unknown field",
            {"rows": [good, {**good, "colour": 1}]},
            "application/json",
            400,
            ["rows", 1, "colour"],
        ),
        (
            "wrong type",
            {"rows": [{**good, first: [1]}]},
            "application/json",
            400,
            ["rows", 0, first],
        ),
        (
            "string number",
            {"rows": [{**good, first: "0.1"}]},
            "application/json",
            400,
            ["rows", 0, first],
        ),
        (
            "NaN",
            json.dumps({"rows": [good]}).replace("0.1", "NaN", 1).encode(),
            "application/json",
            400,
            ["rows", 0, first],
        ),
        (
            "Infinity",
            json.dumps({"rows": [good]}).replace("0.1", "-Infinity", 1).encode(),
            "application/json",
            400,
            ["rows", 0, first],
        ),
        ("null", {"rows": [{**good, first: None}]}, "application/json", 400, ["rows", 0, first]),
        ("empty list", {"rows": []}, "application/json", 400, ["rows"]),
        ("too many rows", {"rows": [good] * 10_001}, "application/json", 400, ["rows"]),
        ("not JSON", b"rows=1", "application/json", 400, []),
        ("wrong content type", {"rows": [good]}, "text/plain", 415, ["header", "content-type"]),
        ("no content type", {"rows": [good]}, "", 415, ["header", "content-type"]),
        ("too few klines", klines, "application/json", 400, ["klines"]),
    ]


CASES = [c[0] for c in bad_inputs(["f"])]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_gets_a_4xx_naming_the_field_and_the_server_keeps_serving(
    served: Served, case: str
) -> None:
    features = served.summary["steps"]["features"]["features"]
    _, body, content_type, status, loc = next(c for c in bad_inputs(features) if c[0] == case)
    for endpoint in ("predict", "predict_batch") if "klines" not in case else ("predict_klines",):
        answer = post(f"{served.url}/{endpoint}", body, content_type)
        assert answer.status_code == status, (endpoint, answer.text[:500])
        document = answer.json()
        assert document["error"]
        assert loc in [d["loc"] for d in document["detail"]], document
    assert httpx.get(f"{served.url}/readyz").status_code == 200
    ok = post(f"{served.url}/predict", {"rows": [dict.fromkeys(features, 0.1)]})
    assert ok.status_code == 200


def test_klines_out_of_order_are_refused_naming_the_bar(served: Served) -> None:
    klines = kline_dicts(load_curated(served.storage, "BTCUSDT", "1m", END, END).head(60))
    klines[7], klines[8] = klines[8], klines[7]
    answer = post(f"{served.url}/predict_klines", {"symbol": "BTCUSDT", "klines": klines})
    assert answer.status_code == 400
    assert "bar 8: out of order" in answer.text


def test_health_and_metrics(served: Served) -> None:
    features = served.summary["steps"]["features"]["features"]
    assert post(f"{served.url}/predict", {"rows": [dict.fromkeys(features, 0.1)]}).is_success
    assert httpx.get(f"{served.url}/livez").status_code == 200
    assert httpx.get(f"{served.url}/readyz").status_code == 200
    metrics = httpx.get(f"{served.url}/metrics").text
    served_version = '{model_version="1"}'  # every series names the model version it serves
    assert 'mlops_predicted_rows_total{endpoint="predict",model_version="1"}' in metrics
    assert f"mlops_inference_log_write_failures_total{served_version} 0.0" in metrics
    assert f"mlops_inference_log_dropped_rows_total{served_version} 0.0" in metrics
    assert f"mlops_inference_log_lag_seconds{served_version} " in metrics
    assert 'mlops_serving_model_info{model_name="market-direction",model_version="1"} 1.0' in (
        metrics
    )


def test_the_inference_log_survives_a_clean_shutdown(
    trained: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    """Its own server, stopped by SIGTERM: rows wait in memory (flush interval one hour), so what
    is in its storage afterwards was written by the shutdown hook."""
    home, summary = trained
    features = summary["steps"]["features"]["features"]
    dataset = read_dataset(LocalStorage(home / "data"), summary["steps"]["features"]["prefix"])
    rows = as_rows(dataset.tail(7), features)
    storage = LocalStorage(tmp_path / "data")
    env = {**training_env(home), "MLOPS_STORAGE_URL": str(tmp_path / "data")}
    ids = [f"shutdown-{k}" for k in range(3)]
    with bento_server(env, tmp_path / "serve.log") as (url, process):
        for request_id in ids:
            answer = httpx.post(
                f"{url}/predict", json={"rows": rows}, headers={"x-request-id": request_id}
            )
            assert answer.status_code == 200 and answer.headers["x-request-id"] == request_id
        assert not storage.list("inference/"), "nothing written before shutdown"
        # as the kubelet stops a pod: SIGTERM to the server's main process only, which stops
        # its workers (each flushes its inference log) before it exits. A signal to the whole
        # process group raced the workers' flush against the supervisor's exit (a CI run under
        # load read the log before the worker had written it)
        os.kill(process.pid, signal.SIGTERM)
        assert process.wait(timeout=60) == 0, "a clean shutdown"
    table = read_inference(storage, "local", "1").to_pandas()
    # every prediction acknowledged before the shutdown is in the log, and only those
    assert len(table) == 21 and sorted(table["request_id"].unique()) == ids
    assert sorted(table["symbol"].unique()) == sorted({r["symbol"] for r in rows})
    first = table[table["request_id"] == ids[0]]
    np.testing.assert_allclose(first[features[0]].to_numpy(), [r[features[0]] for r in rows])
    assert table["model_version"].unique().tolist() == ["1"]


def test_a_failing_inference_log_never_fails_a_request_and_catches_up(
    trained: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    home, summary = trained
    blocker = tmp_path / "blocked"
    blocker.write_text("a file where the storage directory should be")
    env = {
        **training_env(home),
        "MLOPS_STORAGE_URL": str(blocker / "data"),
        "MLOPS_INFERENCE_FLUSH_SECONDS": "0.3",
    }
    features = summary["steps"]["features"]["features"]
    with bento_server(env, tmp_path / "serve.log") as (url, _):
        for _ in range(5):
            answer = post(f"{url}/predict", {"rows": [dict.fromkeys(features, 0.1)] * 3})
            assert answer.status_code == 200
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            metrics = httpx.get(f"{url}/metrics").text
            line = next(
                x
                for x in metrics.splitlines()
                if x.startswith('mlops_inference_log_write_failures_total{model_version="1"} ')
            )
            if float(line.split()[1]) > 0:
                break
            time.sleep(0.2)
        assert float(line.split()[1]) > 0
        blocker.unlink()  # the storage comes back: the kept rows are written on a retry
        storage = LocalStorage(blocker / "data")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not storage.list("inference/"):
            time.sleep(0.2)
        assert read_inference(storage, "local", "1").num_rows == 15
